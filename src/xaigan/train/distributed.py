"""One run on several processes (``torchrun``): who is who, and the few collective operations training needs.

Every rank holds the same G and D (DistributedDataParallel averages their gradients), trains on its slice of each
global batch, and draws its slice of one global noise batch from a generator every rank seeds alike: with equal
slices, N processes compute the step one process computes on the global batch (up to summation order), apart from
dropout masks, which each rank draws itself. Rank 0 owns the run folder (logs, samples, checkpoints, evaluation).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

TIMEOUT = datetime.timedelta(minutes=30)  # a rank waits this long at a collective (rank 0 evaluating) before failing


@dataclass(frozen=True)
class Dist:
    """This process's place in a run on ``world`` processes."""

    rank: int
    world: int
    local_rank: int
    comm: torch.device = torch.device("cpu")  # where collectives' tensors live (CUDA for NCCL)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """One GPU per rank on CUDA (``cuda:LOCAL_RANK``); the given device otherwise."""
        return torch.device("cuda", self.local_rank) if device.type == "cuda" else device

    def shard(self, n: int) -> slice:
        """This rank's part of ``n`` rows (contiguous; the first ``n % world`` ranks get one more)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def mean(self, values: list[float]) -> list[float]:
        """The mean over ranks of each value (one all-reduce)."""
        t = torch.tensor(values, dtype=torch.float64, device=self.comm)
        dist.all_reduce(t)
        return (t / self.world).tolist()

    def any(self, flag: bool) -> bool:
        """Whether any rank's ``flag`` is set (all ranks get the same answer)."""
        t = torch.tensor([int(flag)], device=self.comm)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """Every rank's ``rows`` (same trailing shape, any count) concatenated in rank order, on every rank."""
        count = torch.tensor([len(rows)], device=self.comm)
        counts = [torch.zeros_like(count) for _ in range(self.world)]
        dist.all_gather(counts, count)
        most = int(max(c.item() for c in counts))
        padded = torch.zeros(most, *rows.shape[1:], dtype=rows.dtype, device=self.comm)
        padded[: len(rows)] = rows.to(self.comm)
        parts = [torch.zeros_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return torch.cat([p[: int(c.item())] for p, c in zip(parts, counts)]).to(rows.device)

    def barrier(self) -> None:
        dist.barrier()


def launched() -> bool:
    """Whether this process was started by ``torchrun`` (which sets ``WORLD_SIZE`` and ``RANK``)."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def from_env(device: torch.device) -> Dist | None:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE``, ``RANK``, ...); None when
    not started by it. NCCL when training on CUDA, gloo otherwise."""
    if not launched():
        return None
    world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    comm = torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(local)
        comm = torch.device("cuda", local)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=TIMEOUT)
    return Dist(rank=rank, world=world, local_rank=local, comm=comm)


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` in DistributedDataParallel (its gradients averaged over ranks in the backward pass)."""
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


class GlobalNoise:
    """G's input for a distributed run: every rank draws the whole global batch of noise from a generator seeded
    alike on every rank, and keeps its own rows, so the global batch does not depend on the number of processes."""

    def __init__(self, dist: Dist, seed: int, noise_dim: int, device: torch.device) -> None:
        self.dist, self.noise_dim, self.device = dist, noise_dim, device
        self.generator = torch.Generator().manual_seed(seed + 104_729)
        self.global_size = 0  # rows in the global batch of the current step, set by the trainer

    def __call__(self, n: int) -> torch.Tensor:
        z = torch.randn(self.global_size, self.noise_dim, generator=self.generator)[self.dist.shard(self.global_size)]
        if len(z) != n:
            raise RuntimeError(f"rank {self.dist.rank}: local batch of {n} rows, its noise shard has {len(z)}")
        return z.to(self.device)

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def load(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def reseed_rank(dist: Dist, seed: int, step: int) -> None:
    """Give each rank its own global RNG stream (dropout masks, explainers' sampling) from (seed, rank, step)."""
    torch.manual_seed((seed * 1_000_003 + step) * 1_009 + dist.rank + 1)

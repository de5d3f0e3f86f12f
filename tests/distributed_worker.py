"""Run under torchrun by tests/test_distributed.py: a tiny GAN without dropout trained on N processes, rank 0
writing the run. ``python -m torch.distributed.run --nproc-per-node N tests/distributed_worker.py OUT [fail]``;
with ``fail`` rank 1 raises at its third step (the others must not wait for ever)."""

import sys

import torch
from torch import nn

from xaigan.config import Config
from xaigan.data import ImageData
from xaigan.train import Trainer, distributed


class Failing(nn.Module):
    """D that raises on rank 1 at its ``at``-th forward pass."""

    def __init__(self, inner: nn.Module, rank: int, at: int) -> None:
        super().__init__()
        self.inner, self.rank, self.at, self.calls = inner, rank, at, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.rank == 1 and self.calls == self.at:
            raise RuntimeError("rank 1 fails on purpose")
        return self.inner(x)


def main(out: str, fail: bool) -> None:
    cfg = Config.from_dict(
        {
            "dataset": "folder:unused",
            "model": "mlp",
            "batch_size": 24,
            "epochs": 3,
            "noise_dim": 8,
            "log_every": 1,
            "tensorboard": False,
            "progress": False,
            "seed": 5,
            "g_clip": 1.0,
            "g_ema": 0.9,  # every rank keeps the same average of the synchronised G
        }
    )
    dist = distributed.from_env(torch.device("cpu"))
    torch.manual_seed(0)
    images = torch.randint(0, 256, (100, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    G = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16), nn.Tanh(), nn.Unflatten(1, (1, 4, 4)))
    D = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
    if fail:
        D = Failing(D, dist.rank, at=3)
    trainer = Trainer(G, D, ImageData(images, torch.zeros(100, dtype=torch.long)), cfg, out, dist=dist)
    trainer.fit()
    distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], len(sys.argv) > 2 and sys.argv[2] == "fail")

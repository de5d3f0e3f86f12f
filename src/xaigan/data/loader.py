"""In-memory batching: the whole dataset lives as one uint8 tensor; a batch is one index + one cast."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The data order of one epoch: a function of (seed, epoch) alone, so resuming needs no RNG state."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator)


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1]."""
    return batch.float().div_(127.5).sub_(1.0)


class Loader:
    """Shuffled batches in [-1, 1] from a uint8 ``(N, C, H, W)`` tensor, resumable mid-epoch."""

    def __init__(
        self,
        images: torch.Tensor,
        batch_size: int,
        seed: int,
        drop_last: bool = False,
        device: torch.device | str = "cpu",
        shard: Callable[[int], slice] | None = None,
        min_last: int = 1,
    ) -> None:
        """``shard(n)``: the rows of each ``n``-row global batch this process trains on (all of them by default);
        ``min_last``: a last batch smaller than this is dropped (one row per process of a distributed run)."""
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"Loader wants uint8 (N, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
        if len(images) == 0:
            raise ValueError("Loader got an empty dataset")
        self.images = images.to(device)
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last and len(images) >= batch_size
        self.shard = shard
        self.min_last = min_last

    def __len__(self) -> int:
        n = len(self.images)
        full, rest = divmod(n, self.batch_size)
        return full + (0 < rest and rest >= self.min_last and not self.drop_last)

    def batches(self, epoch: int, start: int = 0) -> Iterator[torch.Tensor]:
        """Batches of ``epoch`` from batch index ``start`` on."""
        order = epoch_permutation(len(self.images), self.seed, epoch).to(self.images.device)
        for i in range(start, len(self)):
            index = order[i * self.batch_size : (i + 1) * self.batch_size]
            if self.shard is not None:
                index = index[self.shard(len(index))]
            yield to_float(self.images[index])

    def global_size(self, i: int) -> int:
        """Rows in global batch ``i`` (all processes together)."""
        return min(self.batch_size, len(self.images) - i * self.batch_size)

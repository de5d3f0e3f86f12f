"""Trainer overhead: seconds per step of ``xaigan.train.Trainer`` vs a minimal hand-written PyTorch loop.

Both train the same paper MLP GAN (the plain loop trains the trainer's own G, D and optimisers, so weights and
arithmetic are identical) on the same real images (Fashion-MNIST when installed, else random), interleaved epoch by
epoch in one process so machine noise hits both alike. The trainer's time includes
everything it does per epoch: logging every step, the sample grid and the atomic checkpoint.

    python bench/bench_trainer.py [--rounds 4] [--images 12800] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from xaigan import config, data, models
from xaigan.train import Trainer


def plain_epoch(G, D, opt_g, opt_d, images: torch.Tensor, batch: int, epoch: int) -> int:
    """The minimal loop: float images in memory, index, two Adam steps, nothing else."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(epoch))
    steps = 0
    for i in range(0, len(images), batch):
        real = images[order[i : i + batch]]
        n = len(real)
        fake = G(torch.randn(n, 100)).detach()
        d_real, d_fake = D(real), D(fake)
        loss_d = F.binary_cross_entropy_with_logits(d_real, torch.full_like(d_real, 0.9))
        loss_d = loss_d + F.binary_cross_entropy_with_logits(d_fake, torch.full_like(d_fake, 0.1))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        out = D(G(torch.randn(n, 100)))
        loss_g = F.binary_cross_entropy_with_logits(out, torch.full_like(out, 0.9))
        opt_g.zero_grad()
        loss_g.backward()
        nn.utils.clip_grad_norm_(G.parameters(), 10.0)
        opt_g.step()
        steps += 1
    return steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--images", type=int, default=12800)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        full = data.load("fashion-mnist", download=False)
        source = "fashion-mnist"
    except data.DataUnavailableError:
        full = data.ImageData(torch.randint(0, 256, (args.images, 1, 32, 32), dtype=torch.uint8), torch.zeros(0))
        source = "random uint8"
    subset = data.ImageData(full.images[: args.images], full.labels[: args.images], {"dataset": source})
    cfg = config.resolve({"epochs": args.rounds + 1, "progress": False, "tensorboard": False})

    floats = data.to_float(subset.images.clone())

    with tempfile.TemporaryDirectory() as tmp:
        G, D = models.build(cfg.model, subset.channels, subset.image_size, cfg.noise_dim)
        trainer = Trainer(G, D, subset, cfg, Path(tmp) / "run")
        ours: list[float] = []
        plain: list[float] = []
        steps = len(trainer.loader)
        marks = {"t": time.perf_counter()}

        def interleave(tr: Trainer, epoch: int) -> None:
            if epoch > 0:  # epoch 0 is warm-up for both
                ours.append((time.perf_counter() - marks["t"]) / steps)
            t0 = time.perf_counter()
            # The plain loop trains the trainer's own G, D and optimisers: same weights, same arithmetic.
            n = plain_epoch(tr.G, tr.D, tr.opt_g, tr.opt_d, floats, cfg.batch_size, epoch)
            if epoch > 0:
                plain.append((time.perf_counter() - t0) / n)
            marks["t"] = time.perf_counter()

        trainer.callbacks.append(interleave)
        trainer.fit()

    o, p = statistics.median(ours), statistics.median(plain)
    print(f"data: {source}, {args.images} images, batch 128, {steps} steps/epoch, {args.threads} threads")
    print("| loop | median s/step | per-round s/step |")
    print("|---|---|---|")
    print(f"| plain PyTorch | {p:.4f} | {', '.join(f'{v:.4f}' for v in plain)} |")
    print(f"| xaigan Trainer | {o:.4f} | {', '.join(f'{v:.4f}' for v in ours)} |")
    print(f"ratio ours/plain = {o / p:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()

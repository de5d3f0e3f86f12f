"""Is a killed-and-resumed run equal to the same run uninterrupted on this device? With and without
``deterministic: true``, for the paper MLP and the DCGAN, and what the deterministic algorithms cost.

    python bench/check_resume.py [--device cuda] [--models mlp dcgan] [--steps 60] [--stop 25]

Each case trains the same seed twice from scratch into fresh folders: once straight through, once stopped at step
``--stop`` (checkpointed as SIGINT would) and resumed to the end; then compares G's and D's weights bit for bit and
prints the largest difference. On a CPU both settings give equal weights; on a GPU only the deterministic run is
expected to.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from xaigan import train
from xaigan.config import Config
from xaigan.train import Trainer


def weights(trainer: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().float().flatten().cpu() for net in (trainer.G, trainer.D) for p in net.parameters()])


def trained(cfg: Config, folder: Path, stop: int | None) -> tuple[torch.Tensor, float]:
    trainer = train.from_config(cfg, folder, progress=False)
    t0 = time.perf_counter()
    trainer.fit(stop_at_step=stop)
    if stop is not None:
        trainer = train.resume(folder, progress=False)
        trainer.fit()
    return weights(trainer), time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=["mlp", "dcgan"])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--stop", type=int, default=25)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    fraction = min(1.0, args.steps * args.batch / 2 / 5000)  # two epochs of the 5,000 offline MNIST digits' part
    print(f"torch {torch.__version__}, device {args.device}", end="")
    print(f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
    print("| model | deterministic | resumed == uninterrupted | max abs difference | s (uninterrupted) |")
    print("|---|---|---|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for det in (False, True):
                cfg = Config(
                    model=model,
                    dataset="mnist",
                    fraction=fraction,
                    epochs=2,
                    batch_size=args.batch,
                    device=args.device,
                    deterministic=det,
                    progress=False,
                    tensorboard=False,
                    sample_every=100,
                )
                whole, seconds = trained(cfg, Path(tmp) / f"{model}-{det}-whole", None)
                resumed, _ = trained(cfg, Path(tmp) / f"{model}-{det}-resumed", args.stop)
                same = torch.equal(whole, resumed)
                print(f"| {model} | {det} | {same} | {float((whole - resumed).abs().max()):.3g} | {seconds:.1f} |")


if __name__ == "__main__":
    main()

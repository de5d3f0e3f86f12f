"""The paper's standard GAN trainer, with two extension points: a guidance transform on G's fakes (xAI) and an
augmentation on every input of D (DiffAugment)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from xaigan import config as config_mod
from xaigan import data as data_mod
from xaigan import models
from xaigan.io import atomic_write_text, make_grid, save_image_grid
from xaigan.train import checkpoint, hooks
from xaigan.train.logging import RunLogger, read_metrics

log = logging.getLogger(__name__)

Augment = Callable[[torch.Tensor], torch.Tensor]
# A guidance hook gets (fake, D) and returns the tensor to feed D in the G step; it may wrap ``fake`` in an autograd
# op that reshapes G's gradient (see xaigan.guidance). ``last_stats`` (optional) holds per-step numbers to log.
Guidance = Callable[[torch.Tensor, nn.Module], torch.Tensor]


class RunExistsError(RuntimeError):
    """The run folder already holds a run and neither resume nor overwrite was asked for."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise config_mod.ConfigError("device cuda requested but CUDA is not available")
    return torch.device(name)


def gan_step(
    G: nn.Module,
    D: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    real: torch.Tensor,
    cfg: dict[str, Any],
    augment: Augment | None = None,
    guidance: Guidance | None = None,
) -> dict[str, float]:
    """One D step and one G step of the paper's standard GAN (BCE, label smoothing, G gradient clipping)."""
    batch = len(real)
    aug = augment or (lambda x: x)
    device = real.device
    for _ in range(cfg["d_steps"]):
        fake = G(torch.randn(batch, cfg["noise_dim"], device=device)).detach()
        d_real, d_fake = D(aug(real)), D(aug(fake))
        loss_d = F.binary_cross_entropy_with_logits(
            d_real, torch.full_like(d_real, cfg["label_real"])
        ) + F.binary_cross_entropy_with_logits(d_fake, torch.full_like(d_fake, cfg["label_fake"]))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

    fake = G(torch.randn(batch, cfg["noise_dim"], device=device))
    if guidance is not None:
        fake = guidance(fake, D)
    d_gen = D(aug(fake))
    loss_g = F.binary_cross_entropy_with_logits(d_gen, torch.full_like(d_gen, cfg["g_target"]))
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    if cfg["g_clip"] > 0:
        nn.utils.clip_grad_norm_(G.parameters(), cfg["g_clip"])
    opt_g.step()
    return {
        "d_loss": loss_d.item(),
        "g_loss": loss_g.item(),
        "d_real": torch.sigmoid(d_real).mean().item(),
        "d_fake": torch.sigmoid(d_fake).mean().item(),
    }


class Trainer:
    """Trains one run into ``run_dir``; ``Trainer(...).fit()`` or resume with ``Trainer.resume(run_dir)``."""

    def __init__(
        self,
        cfg: dict[str, Any],
        run_dir: str | Path,
        *,
        dataset: data_mod.ImageData | None = None,
        augment: Augment | None = None,
        guidance: Guidance | None = None,
        overwrite: bool = False,
        _resuming: bool = False,
    ) -> None:
        self.cfg = config_mod.validate(cfg)
        self.run_dir = Path(run_dir)
        if not _resuming:
            self._claim_folder(overwrite)
        self.device = pick_device(self.cfg["device"])
        checkpoint.seed_everything(self.cfg["seed"])
        self.data = dataset or data_mod.load(
            self.cfg["dataset"],
            data_dir=self.cfg["data_dir"],
            split=self.cfg["split"],
            fraction=self.cfg["fraction"],
            subset=self.cfg["subset"],
            seed=self.cfg["seed"],
        )
        self.loader = data_mod.Loader(
            self.data.images, self.cfg["batch_size"], self.cfg["seed"], self.cfg["drop_last"], self.device
        )
        self.G, self.D = models.build(
            self.cfg["model"], self.data.channels, self.data.image_size, self.cfg["noise_dim"]
        )
        self.G.to(self.device)
        self.D.to(self.device)
        betas = (self.cfg["beta1"], self.cfg["beta2"])
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=self.cfg["lr_g"], betas=betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=self.cfg["lr_d"], betas=betas)
        noise_gen = torch.Generator().manual_seed(self.cfg["seed"] + 7919)
        self.fixed_noise = torch.randn(64, self.cfg["noise_dim"], generator=noise_gen).to(self.device)
        self.augment = augment if augment is not None else hooks.build_augment(self.cfg)
        self.guidance = (
            guidance
            if guidance is not None
            else hooks.build_guidance(self.cfg, self.data.images, self.augment, self.device)
        )
        self.epoch, self.position, self.step = 0, 0, 0
        self.wall_s = 0.0
        self.callbacks: list[Callable[[Trainer], None]] = []  # called at each epoch end (evaluation, ...)
        self.extra: dict[str, Any] = {}  # small numbers callbacks keep across resumes (best FID, ...)
        self._logger: RunLogger | None = None
        self._writer = checkpoint.AsyncWriter()
        if not _resuming:
            config_mod.dump(self.cfg, self.run_dir / "config.yaml")
            atomic_write_text(self.run_dir / "data.json", json.dumps(self.data.meta, indent=2))

    # -- run folder -------------------------------------------------------------------------------------------
    def _claim_folder(self, overwrite: bool) -> None:
        markers = [self.run_dir / n for n in ("config.yaml", "metrics.jsonl", "checkpoints", "summary.json")]
        if any(m.exists() for m in markers):
            if not overwrite:
                raise RunExistsError(
                    f"{self.run_dir} already holds a run; use --resume {self.run_dir} to continue it, "
                    "--overwrite to replace it, or --out to pick another folder"
                )
            import shutil

            for m in markers + [self.run_dir / n for n in ("samples", "explanations", "tensorboard", "data.json")]:
                if m.is_dir():
                    shutil.rmtree(m)
                elif m.exists():
                    m.unlink()
        self.run_dir.mkdir(parents=True, exist_ok=True)

    @classmethod
    def resume(cls, run_dir: str | Path, **kwargs: Any) -> Trainer:
        """Rebuild a run from its ``config.yaml`` and ``checkpoints/last.pt``."""
        run_dir = Path(run_dir)
        ckpt_path = run_dir / "checkpoints" / "last.pt"
        if not (run_dir / "config.yaml").is_file() or not ckpt_path.is_file():
            raise FileNotFoundError(f"{run_dir} holds no resumable run (needs config.yaml and checkpoints/last.pt)")
        cfg = config_mod.load_yaml(run_dir / "config.yaml")
        trainer = cls(cfg, run_dir, _resuming=True, **kwargs)
        trainer.load_state(checkpoint.load(ckpt_path))
        return trainer

    # -- state ------------------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "epoch": self.epoch,
            "position": self.position,
            "step": self.step,
            "wall_s": self.wall_s,
            "fixed_noise": self.fixed_noise.cpu(),
            "rng": checkpoint.rng_state(),
            "config": json.dumps(self.cfg),
            "extra": json.dumps(self.extra),
        }
        if hasattr(self.guidance, "state_dict"):
            payload["guidance"] = self.guidance.state_dict()  # type: ignore[union-attr]
        return payload

    def load_state(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.epoch, self.position, self.step = state["epoch"], state["position"], state["step"]
        self.wall_s = state.get("wall_s", 0.0)
        self.extra = json.loads(state.get("extra", "{}"))
        self.fixed_noise = state["fixed_noise"].to(self.device)
        if "guidance" in state and hasattr(self.guidance, "load_state_dict"):
            self.guidance.load_state_dict(state["guidance"])  # type: ignore[union-attr]
        checkpoint.set_rng_state(state["rng"])
        # Records logged after this checkpoint belong to steps that will be trained again.
        records = [r for r in read_metrics(self.run_dir) if r.get("step", 0) <= self.step]
        atomic_write_text(self.run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))

    def save_checkpoint(self, name: str = "last.pt", wait: bool = True) -> Path:
        """Write ``checkpoints/NAME`` atomically; with ``wait=False`` it is written in the background."""
        path = self.run_dir / "checkpoints" / name
        self._writer.submit(path, self.state())
        if wait:
            self._writer.wait()
        return path

    # -- training ---------------------------------------------------------------------------------------------
    def guidance_active(self, epoch: int) -> bool:
        return self.guidance is not None and epoch >= int(self.cfg["xai_start"] * self.cfg["epochs"])

    def save_samples(self, epoch: int) -> torch.Tensor:
        """Write ``samples/epoch_NNNN.png`` from the fixed noise (G in eval mode); return the images."""
        was_training = self.G.training
        self.G.eval()
        with torch.no_grad():
            images = self.G(self.fixed_noise)
        self.G.train(was_training)
        save_image_grid(images, self.run_dir / "samples" / f"epoch_{epoch:04d}.png", nrow=8)
        return images

    def fit(self, stop_at_step: int | None = None) -> dict[str, Any]:
        """Train to ``epochs``; with ``stop_at_step`` (or Ctrl-C) checkpoint there and return early."""
        cfg = self.cfg
        logger = self._logger = RunLogger(self.run_dir, tensorboard=cfg["tensorboard"])
        steps_per_epoch = len(self.loader)
        self.G.train()
        self.D.train()
        interrupted = False
        bar = tqdm(
            total=cfg["epochs"] * steps_per_epoch,
            initial=self.epoch * steps_per_epoch + self.position,
            disable=not cfg["progress"],
            desc=self.run_dir.name,
            dynamic_ncols=True,
        )
        try:
            while self.epoch < cfg["epochs"]:
                guide = self.guidance if self.guidance_active(self.epoch) else None
                for real in self.loader.batches(self.epoch, self.position):
                    t0 = time.perf_counter()
                    stats = gan_step(self.G, self.D, self.opt_g, self.opt_d, real, cfg, self.augment, guide)
                    seconds = time.perf_counter() - t0
                    self.wall_s += seconds
                    self.position += 1
                    self.step += 1
                    xai_stats = getattr(guide, "last_stats", None)
                    if xai_stats:
                        stats.update(
                            xai_explained=xai_stats["explained"],
                            xai_mask_mean=xai_stats["mask_mean"],
                            xai_seconds=xai_stats["seconds"],
                        )
                    if self.step % cfg["log_every"] == 0:
                        logger.log({"epoch": self.epoch, "step": self.step, **stats, "sec_per_step": seconds})
                    bar.update(1)
                    if self.step % 10 == 0:
                        bar.set_postfix(d=f"{stats['d_loss']:.3f}", g=f"{stats['g_loss']:.3f}", refresh=False)
                    if stop_at_step is not None and self.step >= stop_at_step:
                        interrupted = True
                        break
                if interrupted:
                    break
                self._end_epoch(logger)
        except KeyboardInterrupt:
            interrupted = True
            log.warning("interrupted at step %d; checkpointing so --resume continues here", self.step)
        finally:
            bar.close()
            logger.close()
            self._logger = None
            self._writer.wait()
        if interrupted:
            self.save_checkpoint()
            return {"interrupted": True, "step": self.step, "epoch": self.epoch}
        return self._finish()

    def log_record(self, record: dict[str, Any]) -> None:
        """Append a record (e.g. an evaluation) to ``metrics.jsonl`` while training."""
        if self._logger is None:
            raise RuntimeError("log_record is only available while fit() runs")
        self._logger.log(record)

    def _end_epoch(self, logger: RunLogger) -> None:
        finished = self.epoch
        if (finished + 1) % self.cfg["sample_every"] == 0 or finished + 1 == self.cfg["epochs"]:
            images = self.save_samples(finished)
            logger.image("samples", make_grid(images), self.step)
            if self.guidance_active(finished) and hasattr(self.guidance, "explain_kwargs"):
                path = self.run_dir / "explanations" / f"epoch_{finished:04d}.png"
                pairs = hooks.save_explanations(self.guidance, self.G, self.D, self.fixed_noise[:32], path)
                logger.image("explanations", make_grid(pairs), self.step)
        for callback in self.callbacks:
            callback(self)
        self.epoch += 1
        self.position = 0
        if self.epoch % self.cfg["checkpoint_every"] == 0 or self.epoch == self.cfg["epochs"]:
            self.save_checkpoint(wait=False)  # fit() waits for it before returning

    def _finish(self) -> dict[str, Any]:
        records = [r for r in read_metrics(self.run_dir) if "d_loss" in r]
        last = records[-1] if records else {}
        summary = {
            "run": self.run_dir.name,
            "epochs": self.epoch,
            "steps": self.step,
            "train_seconds": round(self.wall_s, 3),
            "sec_per_step": self.wall_s / max(self.step, 1),
            "final": {k: last.get(k) for k in ("d_loss", "g_loss", "d_real", "d_fake")},
            "data": self.data.meta,
            "xai": self.cfg["xai"],
            **self.extra,
            "device": str(self.device),
            "samples": str(self.run_dir / "samples"),
        }
        atomic_write_text(self.run_dir / "summary.json", json.dumps(summary, indent=2))
        return summary

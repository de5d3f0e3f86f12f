"""The trainer: the paper's standard GAN loop over already-built parts, with two extension points (a guidance on G's
fakes, an augmentation on every input of D), run logging, samples and exact-resume checkpoints.

Build one from parts (``Trainer(G, D, data, cfg, run)``) or from a config with :func:`xaigan.train.from_config`;
continue a run with :func:`xaigan.train.resume`.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xaigan.config import Config
from xaigan.data import ImageData, Loader
from xaigan.errors import RunError
from xaigan.guidance import Guidance, XAIGuidance
from xaigan.io import make_grid, save_image_grid
from xaigan.rundir import LAST, PREVIOUS, RunDir, RunLock
from xaigan.train import checkpoint, distributed
from xaigan.train.determinism import deterministic, set_cublas_workspace
from xaigan.train.distributed import Dist, GlobalNoise
from xaigan.train.ema import WeightAverage
from xaigan.train.figures import save_explanations
from xaigan.train.logging import NullLogger, RunLogger, run_log
from xaigan.train.progress import ProgressMeter, StepProgress
from xaigan.train.provenance import provenance
from xaigan.train.runtime import resolve_runtime
from xaigan.train.signals import deferred_stop_signals
from xaigan.train.step import Augment, gan_step, make_optimizers
from xaigan.train.weights import sample_weights

log = logging.getLogger(__name__)


class NonFiniteLossError(RunError):
    """A loss became NaN or infinite: training stops there (the message names the step), the last good checkpoint
    is kept."""


class Trainer:
    """Trains ``G`` and ``D`` on ``data`` into the run folder ``run`` with the settings of ``cfg``.

    ``opt_g``/``opt_d`` default to the paper's Adam; ``guidance`` (see :class:`xaigan.guidance.Guidance`) owns when
    it switches on; ``augment`` is applied to every input of D. What ``cfg`` leaves to the machine and to D
    (precision, ``d_output``, ``explain_mode``) is resolved here (:func:`xaigan.train.resolve_runtime`) and ``cfg``
    records the result. The constructor builds nothing from names and writes no file: the factories do.

    Args:
        G: the generator.
        D: the discriminator.
        data: the training images (:class:`xaigan.data.ImageData`).
        cfg: the run's config.
        run: the run folder.
        opt_g: G's optimiser (default: the paper's Adam).
        opt_d: D's optimiser (default: the paper's Adam).
        guidance: reshapes G's gradient at the fakes, or None for the standard GAN.
        augment: applied to every input of D, or None.
        device: where to train.
        dist: this process's rank in a distributed run, or None.
        progress: show the progress here (None: as ``cfg.progress`` says).

    Example:
        >>> import torch
        >>> from xaigan import models
        >>> from xaigan.config import Config
        >>> from xaigan.data import ImageData
        >>> data = ImageData(torch.randint(0, 256, (256, 1, 32, 32), dtype=torch.uint8), torch.full((256,), -1))
        >>> G, D = models.build("mlp")
        >>> trainer = Trainer(G, D, data, Config(epochs=1, progress=False), "/tmp/xaigan-example-trainer")
        >>> trainer.fit()["steps"]
        2
    """

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        data: ImageData,
        cfg: Config,
        run: RunDir | str | Path,
        *,
        opt_g: torch.optim.Optimizer | None = None,
        opt_d: torch.optim.Optimizer | None = None,
        guidance: Guidance | None = None,
        augment: Augment | None = None,
        device: torch.device | str = "cpu",
        dist: Dist | None = None,
        progress: bool | None = None,
    ) -> None:
        self.dist = dist
        self.device = dist.device(torch.device(device)) if dist else torch.device(device)
        self.runtime = resolve_runtime(cfg, D, self.device, progress=progress)
        self.cfg = self.runtime.recorded(cfg)
        if self.cfg.deterministic:
            set_cublas_workspace()  # before the first matmul on the GPU; fit() switches on the rest
        self.run = RunDir(run)
        self.data = data
        self.G, self.D = G.to(self.device), D.to(self.device)
        self.ema = WeightAverage(self.G, self.cfg.g_ema) if self.cfg.g_ema > 0 else None
        shard, min_last = (dist.shard, dist.world) if dist else (None, 1)
        self.loader = Loader(
            data.images, self.cfg.batch_size, self.cfg.seed, self.cfg.drop_last, self.device, shard, min_last
        )
        default_g, default_d = make_optimizers(self.G, self.D, self.cfg)
        self.opt_g, self.opt_d = opt_g or default_g, opt_d or default_d
        noise_gen = torch.Generator().manual_seed(self.cfg.seed + 7919)
        self.fixed_noise = torch.randn(64, self.cfg.noise_dim, generator=noise_gen).to(self.device)
        self.augment = augment
        self.guidance = guidance
        self.epoch, self.position, self.step = 0, 0, 0
        self.wall_s = 0.0
        # Called as callback(trainer, finished_epoch) at each epoch end (evaluation, ...), after that epoch's
        # checkpoint: a callback that fails or is killed costs no training, and resume runs it again first.
        self.callbacks: list[Callable[[Trainer, int], None]] = []
        self.pending_epoch: int | None = None  # an epoch whose callbacks have not finished yet
        self.extra: dict[str, Any] = {}  # small numbers callbacks keep across resumes (best FID, ...)
        self._logger: RunLogger | None = None
        self._writer = checkpoint.AsyncWriter()
        self.lock: RunLock | None = None  # the run folder's lock, set by the factories, released when fit() ends
        self.last_unreadable = False  # resumed from previous.pt: the next save must not rotate last.pt over it
        # What the step trains: G and D, compiled and/or in DistributedDataParallel (checkpoints etc. use G and D).
        self._train_G, self._train_D = (torch.compile(n) if self.cfg.compile == "true" else n for n in (self.G, self.D))
        self.noise: GlobalNoise | None = None
        # Where a grid's worker sends its progress (its parent shows it); None: shown here if cfg.progress.
        self.progress_sink: Callable[[StepProgress], None] | None = None
        if dist is not None:
            self._train_G, self._train_D = (
                distributed.wrap(net, self.device) for net in (self._train_G, self._train_D)
            )
            self.noise = GlobalNoise(dist, self.cfg.seed, self.cfg.noise_dim, self.device)
            distributed.reseed_rank(dist, self.cfg.seed, 0)

    @property
    def generator(self) -> nn.Module:
        """The generator that samples and evaluations use: G's weight average with ``g_ema``, else G."""
        return self.ema.module if self.ema is not None else self.G

    @property
    def main(self) -> bool:
        """Whether this process writes the run folder (always, unless it is a distributed run's rank > 0)."""
        return self.dist is None or self.dist.main

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
            "config": json.dumps(self.cfg.to_dict()),
            "extra": json.dumps(self.extra),
            "pending_epoch": -1 if self.pending_epoch is None else self.pending_epoch,
        }
        if self.guidance is not None:
            payload["guidance"] = json.dumps(self.guidance.state_dict())
        if self.ema is not None:
            payload["G_ema"] = self.ema.state_dict()
        if self.noise is not None:
            payload["noise_rng"] = self.noise.state()
        return payload

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state` (as read from a checkpoint); writes nothing."""
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if self.ema is not None:
            self.ema.load_state_dict(state["G_ema"])
        self.epoch, self.position, self.step = state["epoch"], state["position"], state["step"]
        self.wall_s = state.get("wall_s", 0.0)
        self.extra = json.loads(state.get("extra", "{}"))
        pending = int(state.get("pending_epoch", -1))
        self.pending_epoch = None if pending < 0 else pending
        self.fixed_noise = state["fixed_noise"].to(self.device)
        if self.guidance is not None and "guidance" in state:
            self.guidance.load_state_dict(json.loads(state["guidance"]))
        checkpoint.set_rng_state(state["rng"])
        if self.dist is not None:
            distributed.reseed_rank(self.dist, self.cfg.seed, self.step)
            if "noise_rng" in state:  # a checkpoint of a single-process run starts the global noise stream here
                self.noise.load(state["noise_rng"])

    def save_checkpoint(self, name: str = LAST, wait: bool = True) -> Path:
        """Write ``checkpoints/NAME`` atomically; with ``wait=False`` it is written in the background. The
        checkpoint ``last.pt`` replaces is kept as ``previous.pt`` (resume falls back to it if ``last.pt`` is
        damaged)."""
        for net_name, net in (("G", self.G), ("D", self.D)):  # a finite loss can still leave NaN weights behind
            if not all(bool(torch.isfinite(p).all()) for p in net.parameters()):
                raise NonFiniteLossError(
                    f"step {self.step} (epoch {self.epoch}): non-finite weights in {net_name}; not checkpointed, "
                    f"the last good checkpoint is {self.run.checkpoint(LAST)} (lower the learning rates?)"
                )
        path = self.run.checkpoint(name)
        previous = self.run.checkpoint(PREVIOUS) if name == LAST and not self.last_unreadable else None
        self.last_unreadable = self.last_unreadable and name != LAST
        self._writer.submit(path, self.state(), previous=previous)
        if wait:
            self._writer.wait()
        return path

    # -- training ---------------------------------------------------------------------------------------------
    def guidance_active(self, epoch: int) -> bool:
        return self.guidance is not None and self.guidance.active(epoch)

    def save_samples(self, epoch: int) -> torch.Tensor:
        """Write ``samples/epoch_NNNN.png`` from the fixed noise (:attr:`generator` in eval mode); return them."""
        G = self.generator
        was_training = G.training
        G.eval()
        with torch.no_grad():
            images = G(self.fixed_noise)
        G.train(was_training)
        save_image_grid(images, self.run.sample_path(epoch), nrow=8)
        return images

    def fit(self, stop_at_step: int | None = None) -> dict[str, Any]:
        """Train to ``epochs``. With ``stop_at_step``, SIGINT or SIGTERM: finish the step, checkpoint, return early
        (``{"interrupted": True, "signal": NAME or None, ...}``). A non-finite loss raises
        :class:`NonFiniteLossError` without checkpointing the broken state."""
        try:
            with deferred_stop_signals() as received, deterministic(self.cfg.deterministic):
                if not self.main:
                    return self._fit(stop_at_step, received)
                self.run.path.mkdir(parents=True, exist_ok=True)
                with run_log(self.run.log_path):
                    return self._fit(stop_at_step, received)
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None

    def _fit(self, stop_at_step: int | None, received: list[int]) -> dict[str, Any]:
        cfg = self.cfg
        if self.main:
            self.run.path.mkdir(parents=True, exist_ok=True)
            # Records after the checkpoint belong to steps trained again (and to epoch-end callbacks run again).
            self.run.truncate_metrics(self.step, epoch_end_too=self.pending_epoch is not None)
        logger = self._logger = RunLogger(self.run, tensorboard=cfg.tensorboard) if self.main else NullLogger()
        if self.pending_epoch is not None:  # stopped while evaluating the epoch before the checkpoint
            self._run_callbacks()  # on every rank: a distributed evaluation needs them all
            if self.main:
                self.save_checkpoint(wait=False)
        steps_per_epoch = len(self.loader)
        self.G.train()
        self.D.train()
        interrupted = False
        bar = ProgressMeter(
            self.run.name,
            cfg.epochs * steps_per_epoch,
            self.epoch * steps_per_epoch + self.position,
            cfg.epochs,
            show=self.runtime.progress and self.main,
            sink=self.progress_sink if self.main else None,
        )
        try:
            while self.epoch < cfg.epochs and not interrupted:
                guide = self.guidance if self.guidance_active(self.epoch) else None
                if isinstance(guide, XAIGuidance):
                    guide.at_epoch(self.epoch)  # the strength's schedule
                weights = sample_weights(cfg, self.runtime.d_output, self.epoch)  # top-k, acceptance weighting
                for real in self.loader.batches(self.epoch, self.position):
                    t0 = time.perf_counter()
                    if self.noise is not None:
                        self.noise.global_size = self.loader.global_size(self.position)
                    G, D = self._train_G, self._train_D
                    stats = gan_step(G, D, self.opt_g, self.opt_d, real, cfg, self.augment, guide, self.noise, weights)
                    if self.ema is not None:
                        self.ema.update(self.G)
                    stop = bool(received) or (stop_at_step is not None and self.step + 1 >= stop_at_step)
                    if self.dist is not None:  # every rank sees the global means and stops at the same step
                        *values, flag = self.dist.mean([*stats.values(), float(stop)])
                        stats, stop = dict(zip(stats, values)), flag > 0
                    seconds = time.perf_counter() - t0
                    bad = {k: v for k, v in stats.items() if not math.isfinite(v)}
                    if bad:
                        raise NonFiniteLossError(
                            f"step {self.step + 1} (epoch {self.epoch}): non-finite {bad}; stopped before saving it, "
                            f"the last good checkpoint is {self.run.checkpoint(LAST)} (lower the learning rates?)"
                        )
                    self.wall_s += seconds
                    self.position += 1
                    self.step += 1
                    if guide is not None:
                        xai = guide.stats
                        stats.update(
                            xai_explained=xai["explained"], xai_mask_mean=xai["mask_mean"], xai_seconds=xai["seconds"]
                        )
                        if isinstance(guide, XAIGuidance):
                            stats["xai_alpha"] = guide.alpha_now
                        for event in guide.drain_events():
                            logger.log({"epoch": self.epoch, "step": self.step, **event})
                    if self.step % cfg.log_every == 0:
                        logger.log({"epoch": self.epoch, "step": self.step, **stats, "sec_per_step": seconds})
                    bar.update(self.step, self.epoch, stats)
                    if stop:
                        interrupted = True
                        break
                if not interrupted:
                    self._end_epoch(logger)
                    interrupted = self.dist.any(bool(received)) if self.dist else bool(received)
        finally:
            bar.close(finished=self.epoch >= cfg.epochs)
            logger.close()
            self._logger = None
            self._writer.wait()
        if interrupted:
            if self.main:
                self.save_checkpoint()
            if self.dist is not None:
                self.dist.barrier()  # the checkpoint is written before any rank reports the stop
            name = signal.Signals(received[0]).name if received else None
            if name:
                log.warning("%s: checkpointed at step %d; --resume continues here", name, self.step)
            return {"interrupted": True, "signal": name, "step": self.step, "epoch": self.epoch}
        return self._finish()

    def log_record(self, record: dict[str, Any]) -> None:
        """Append a record (e.g. an evaluation) to ``metrics.jsonl`` while training."""
        if self._logger is None:
            raise RuntimeError("log_record is only available while fit() runs")
        if self.pending_epoch is not None:  # dropped when resume runs the epoch's callbacks again
            record = {**record, "epoch_end": self.pending_epoch}
        self._logger.log(record)

    def _end_epoch(self, logger: RunLogger) -> None:
        if not self.main:  # rank 0 writes samples and checkpoints; the others share the evaluation, then wait
            self.pending_epoch = self.epoch if self.callbacks else None
            self.epoch += 1
            self.position = 0
            if self.pending_epoch is not None:
                self._run_callbacks()
            self.dist.barrier()
            return
        finished = self.epoch
        if (finished + 1) % self.cfg.sample_every == 0 or finished + 1 == self.cfg.epochs:
            images = self.save_samples(finished)
            logger.image("samples", make_grid(images), self.step)
            if self.guidance is not None and self.guidance_active(finished):
                path = self.run.explanation_path(finished)
                pairs = save_explanations(self.guidance, self.G, self.D, self.fixed_noise[:32], path)
                logger.image("explanations", make_grid(pairs), self.step)
        self.epoch += 1
        self.position = 0
        due = self.epoch % self.cfg.checkpoint_every == 0 or self.epoch == self.cfg.epochs
        if self.callbacks:
            self.pending_epoch = finished
            if due:
                self.save_checkpoint(wait=False)
            self._run_callbacks()
        if due:
            self.save_checkpoint(wait=False)  # fit() waits for it before returning
        if self.dist is not None:
            self.dist.barrier()

    def _run_callbacks(self) -> None:
        assert self.pending_epoch is not None
        for callback in self.callbacks:
            callback(self, self.pending_epoch)
        self.pending_epoch = None

    def _finish(self) -> dict[str, Any]:
        records = [r for r in self.run.read_metrics() if "d_loss" in r]
        last = records[-1] if records else {}
        summary = {
            "run": self.run.name,
            "epochs": self.epoch,
            "steps": self.step,
            "train_seconds": round(self.wall_s, 3),
            "sec_per_step": self.wall_s / max(self.step, 1),
            "final": {k: last.get(k) for k in ("d_loss", "g_loss", "d_real", "d_fake")},
            "data": self.data.meta,
            "xai": self.cfg.xai,
            **({"xai_regimes": self.guidance.regimes()} if isinstance(self.guidance, XAIGuidance) else {}),
            **self.extra,
            "device": str(self.device),
            "processes": self.dist.world if self.dist else 1,
            "provenance": provenance(self.device, self.cfg.precision, self.cfg.model),
            "samples": str(self.run.samples_dir),
        }
        if not self.main:
            return summary
        self.run.write_summary(summary)
        self.run.checkpoint(PREVIOUS).unlink(missing_ok=True)  # finished: last.pt is the result, halve the disk
        return summary

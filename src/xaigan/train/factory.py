"""Trainers from a config: a new run (:func:`from_config`) or a stopped one continued (:func:`resume`).

These are the only places that turn names into parts (dataset, models, guidance, augmentation) and that claim a run
folder. Loading a checkpoint never rewrites a file; a resumed run's metrics are trimmed when it trains again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from xaigan import data as data_mod
from xaigan import explain, models
from xaigan.augment import DiffAugment, ExplainedCutout
from xaigan.config import Config, ConfigError
from xaigan.errors import InputError, MissingFileError, RunError
from xaigan.guidance import XAIGuidance
from xaigan.io import UnreadableFileError
from xaigan.rundir import LAST, PREVIOUS, RunDir
from xaigan.train import checkpoint
from xaigan.train.distributed import Dist
from xaigan.train.runtime import pick_device
from xaigan.train.trainer import Trainer

log = logging.getLogger(__name__)


class RunExistsError(InputError):
    """The run folder already holds a run and neither resume nor overwrite was asked for.

    Example:
        >>> from xaigan.config import Config
        >>> try:
        ...     trainer = from_config(Config(dataset="mnist"), "runs/mnist")
        ... except RunExistsError:
        ...     trainer = resume("runs/mnist")  # or from_config(..., overwrite=True) to start it again
    """


class DataChangedError(InputError):
    """A run would resume on other data than it started with.

    Example:
        >>> try:
        ...     trainer = resume("runs/mnist")
        ... except DataChangedError as exc:
        ...     print(exc)  # e.g. started on the offline 5,000 digits, full MNIST found now
    """


def _refuse_existing(run: RunDir) -> None:
    raise RunExistsError(
        f"{run.path} already holds a run; use --resume {run.path} to continue it, "
        "--overwrite to replace it, or --out to pick another folder"
    )


def build_augment(cfg: Config, D: torch.nn.Module | None = None) -> DiffAugment | ExplainedCutout | None:
    """DiffAugment with the config's policy, after the explanation-guided cutout when ``xai_cutout`` asks (of D)."""
    diff = DiffAugment(cfg.diffaugment) if cfg.diffaugment else None
    if cfg.xai_cutout > 0:
        if D is None:
            raise ValueError("xai_cutout needs the discriminator it explains")
        return ExplainedCutout(D, cfg.xai_cutout, then=diff)
    return diff


def baseline_batch(images: torch.Tensor, k: int, seed: int, device: torch.device) -> torch.Tensor:
    """``k`` real images drawn once with a seeded generator: DeepLIFT-SHAP's fixed references (the paper: one batch)."""
    generator = torch.Generator().manual_seed(seed + 31337)
    index = torch.randperm(len(images), generator=generator)[: min(k, len(images))]
    return data_mod.to_float(images[index.to(images.device)]).to(device)


def build_guidance(
    cfg: Config, images: torch.Tensor, augment: DiffAugment | ExplainedCutout | None, device: torch.device
) -> XAIGuidance | None:
    """The guidance the config asks for (``None`` for ``xai: none``); the explainer declares its own settings
    (:class:`xaigan.explain.ExplainerInfo`).

    Args:
        cfg: the run's config.
        images: the training images, uint8 ``(N, C, H, W)``: where reference images come from (deeplift-shap,
            integrated-gradients-real: ``xai_baselines`` of them, drawn once with the run's seed).
        augment: the augmentation D sees (the explanation is then of D after it), or None.
        device: where the reference images go.

    Returns:
        The guidance, or None.

    Example:
        >>> import torch
        >>> from xaigan.config import Config
        >>> images = torch.zeros(16, 1, 32, 32, dtype=torch.uint8)
        >>> guide = build_guidance(Config(xai="saliency", alpha=0.5), images, None, torch.device("cpu"))
        >>> guide.method, guide.alpha
        ('saliency', 0.5)
    """
    if cfg.xai == "none":
        return None
    info = explain.info(cfg.xai)
    kwargs = info.kwargs(cfg.to_dict(), references=lambda k: baseline_batch(images, k, cfg.seed, device))
    if cfg.xai_use == "signed":
        kwargs.update(info.signed)  # the signed use needs the sign some explainers drop by default
    return XAIGuidance(
        cfg.xai, settings=cfg.guidance(), d_output=cfg.d_output, transform=augment, explain_kwargs=kwargs
    )


def build_parts(cfg: Config, run: RunDir, dist: Dist | None = None, progress: bool | None = None) -> Trainer:
    """A trainer with every part built from ``cfg``: seed, data, models, augmentation and guidance, in the order
    that fixes every random draw. The run folder is neither claimed nor written (:func:`from_config` does that).
    ``progress``: show it here (None: as ``cfg.progress`` says)."""
    device = dist.device(pick_device(cfg.device)) if dist else pick_device(cfg.device)
    checkpoint.seed_everything(cfg.seed)
    data = data_mod.load(
        cfg.dataset, data_dir=cfg.data_dir, split=cfg.split, fraction=cfg.fraction, subset=cfg.subset, seed=cfg.seed
    )
    G, D = models.build(cfg.model, data.channels, data.image_size, cfg.noise_dim, cfg.spectral_norm)
    augment = build_augment(cfg, D)
    trainer = Trainer(G, D, data, cfg, run, augment=augment, device=device, dist=dist, progress=progress)
    trainer.guidance = build_guidance(trainer.cfg, data.images, augment, device)  # as the trainer resolved it
    return trainer


def _on_main(dist: Dist | None, claim: Callable[[], Any]) -> Any:
    """Run ``claim`` (take the run folder) on rank 0 only, once every rank has checked and built what it needs;
    if it fails there, every rank fails."""
    if dist is None:
        return claim()
    dist.barrier()
    result, error = None, None
    if dist.main:
        try:
            result = claim()
        except BaseException as exc:
            error = exc
    if dist.any(error is not None):
        if error is not None:
            raise error
        raise RunError("rank 0 could not take the run folder (its error is above)")
    return result


def from_config(
    cfg: Config,
    run_dir: str | RunDir,
    *,
    overwrite: bool = False,
    dist: Dist | None = None,
    progress: bool | None = None,
) -> Trainer:
    """A new run of ``cfg`` in ``run_dir``: seeds, loads the data, builds the models, augmentation and guidance,
    then takes the folder (writes its config and data description, and holds its lock until ``fit`` ends).

    Args:
        cfg: a validated :class:`xaigan.config.Config`.
        run_dir: the run folder.
        overwrite: replace a run the folder already holds.
        dist: this process's rank in a distributed run (rank 0 takes the folder).
        progress: show the progress in this process (None: as ``cfg.progress`` says).

    Returns:
        The trainer, at step 0; call ``fit()`` on it.

    Raises:
        RunExistsError: the folder holds a run and ``overwrite`` is not set.
        xaigan.config.ConfigError: ``cfg`` is not a Config.

    Example:
        >>> from xaigan.config import Config
        >>> trainer = from_config(Config(dataset="mnist", epochs=1, xai="saliency"), "runs/mnist-saliency")
        >>> summary = trainer.fit()  # writes metrics.jsonl, samples/, checkpoints/ and summary.json
        >>> summary["epochs"]
        1
    """
    run = RunDir(run_dir)
    if not isinstance(cfg, Config):
        raise ConfigError(f"from_config wants a validated Config, got {type(cfg).__name__}")
    if run.holds_run() and not overwrite:
        _refuse_existing(run)  # before loading anything: fail fast
    trainer = build_parts(cfg, run, dist, progress)  # data and models first: a bad dataset must not cost the old run
    trainer.lock = _on_main(dist, lambda: _claim_new(run, trainer, overwrite))
    return trainer


def _claim_new(run: RunDir, trainer: Trainer, overwrite: bool) -> Any:
    lock = run.lock()
    try:
        run.remove_stale_temps()
        if run.holds_run() and not overwrite:
            _refuse_existing(run)  # another process claimed it while we were loading
        if overwrite:
            run.clear()
        run.write_config(trainer.cfg.to_dict())
        run.write_data_meta(trainer.data.meta)
    except BaseException:
        lock.release()
        raise
    return lock


def resume(run_dir: str | RunDir, dist: Dist | None = None, progress: bool | None = None) -> Trainer:
    """The run in ``run_dir`` rebuilt from its ``config.yaml`` and positioned at its last checkpoint (or, if that
    is missing or damaged, at the one before it, with a warning).

    Args:
        run_dir: the folder of a run that wrote at least one checkpoint.
        dist: this process's rank in a distributed run, on any number of processes (the checkpoint does not
            depend on how many wrote it).
        progress: show the progress in this process (None: as the run's config says).

    Returns:
        The trainer, positioned where the run stopped; ``fit()`` continues it bit-for-bit.

    Raises:
        FileNotFoundError: the folder holds no resumable run.
        DataChangedError: the data found now differs from the data the run started on.

    Example:
        >>> trainer = resume("runs/mnist-saliency")
        >>> summary = trainer.fit()
    """
    run = RunDir(run_dir)
    if run.state() == "started":
        raise MissingFileError(f"{run.path} stopped before its first checkpoint: start it again with --overwrite")
    if not run.config_path.is_file() or run.state() == "new":
        raise MissingFileError(f"{run.path} holds no resumable run (needs {run.CONFIG} and a last checkpoint)")
    lock = _on_main(dist, lambda: _claim_existing(run))
    try:
        state, fell_back = _load_last_good(run)
        trainer = build_parts(Config.from_dict(run.read_config()), run, dist, progress)
        _check_same_data(run, trainer.data.meta)
        trainer.load_state(state)
        trainer.last_unreadable = fell_back
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    trainer.lock = lock
    return trainer


def _claim_existing(run: RunDir) -> Any:
    lock = run.lock()
    try:
        run.remove_stale_temps()
    except BaseException:
        lock.release()
        raise
    return lock


def _load_last_good(run: RunDir) -> tuple[dict, bool]:
    """The last checkpoint's state (the previous one's if the last is missing or damaged), and whether it fell back."""
    try:
        return checkpoint.load(run.checkpoint(LAST)), False
    except (FileNotFoundError, UnreadableFileError) as exc:
        if not run.checkpoint(PREVIOUS).is_file():
            raise
        state = checkpoint.load(run.checkpoint(PREVIOUS))
        log.warning("%s; resuming from %s (step %d) instead", exc, run.checkpoint(PREVIOUS), state["step"])
        return state, True


def _check_same_data(run: RunDir, now: dict) -> None:
    """Refuse to continue a run on data whose content differs from what it started on (e.g. the offline 5k subset
    then, full MNIST now)."""
    if not run.data_path.is_file():
        return
    then = run.read_data_meta()
    if then.get("content_sha256") and then["content_sha256"] != now.get("content_sha256"):

        def describe(m: dict) -> str:
            return f"{m.get('n', '?')} images from {m.get('source', '?')} {m.get('location', '')}".strip()

        raise DataChangedError(
            f"{run.path} started on other data ({describe(then)}) than is found now ({describe(now)}); "
            "resuming would mix them. Restore the original data or start a new run"
        )

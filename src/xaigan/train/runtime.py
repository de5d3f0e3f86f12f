"""What a run's settings mean on this machine with these networks, worked out in one place: :func:`resolve_runtime`
turns ``device``, ``precision``, ``d_output``, ``explain_mode`` and ``progress`` into the values that run, and
:meth:`Runtime.recorded` is the configuration the run folder records (``config.yaml`` holds what ran, not "auto")."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from xaigan.config import Config, ConfigError
from xaigan.explain import resolve_mode, resolve_output
from xaigan.process import log_once
from xaigan.train.losses import check_loss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    """The resolved settings of one run.

    Attributes:
        device: where it trains (None: resolved for a run that does not train here, e.g. to compare records).
        precision: ``"fp32"`` or ``"bf16"`` (``"auto"`` only when ``device`` is None).
        d_output: what D returns, ``"logit"`` or ``"prob"``.
        explain_mode: D's mode while explained, as :func:`xaigan.explain.resolve_mode` decides for this D.
        progress: whether this process shows the run's progress.
        adam: Adam's implementation, ``"foreach"`` or ``"fused"`` (``"auto"`` only while ``precision`` is).
        compile: whether G's and D's training passes are compiled, ``"true"`` or ``"false"`` (``"auto"`` only when
            ``device`` is None).
    """

    device: torch.device | None
    precision: str
    d_output: str
    explain_mode: str
    progress: bool
    adam: str = "foreach"
    compile: str = "false"

    def recorded(self, cfg: Config) -> Config:
        """``cfg`` with the resolved values in place of what asked for them."""
        return cfg.replace(
            precision=self.precision,
            d_output=self.d_output,
            explain_mode=self.explain_mode,
            adam=self.adam,
            compile=self.compile,
        )


def resolve_runtime(
    cfg: Config, D: nn.Module, device: torch.device | None = None, *, progress: bool | None = None
) -> Runtime:
    """The values ``cfg`` resolves to with discriminator ``D`` on ``device``.

    Args:
        cfg: the run's configuration.
        D: the discriminator (any device, the meta device included: only its modules are read).
        device: where the run trains; None resolves only what depends on D (``precision`` stays as asked).
        progress: show the progress here (None: as ``cfg.progress`` says; a grid's worker passes False).

    Returns:
        The :class:`Runtime`. Asking for bf16 on a device without fast bf16 warns once per process.

    Example:
        >>> from xaigan import models
        >>> _, D = models.build("mlp")
        >>> rt = resolve_runtime(Config(), D, torch.device("cpu"))
        >>> rt.d_output, rt.explain_mode, rt.precision
        ('logit', 'eval', 'fp32')
    """
    precision = cfg.precision
    if device is not None:
        if precision == "bf16" and not fast_bf16(device):
            log_once(
                log,
                logging.WARNING,
                f"precision bf16 on a {device.type} without fast bf16 (no AMX on a CPU): the step may be several "
                "times slower than fp32 (docs/benchmarks.md); precision auto picks fp32 here",
            )
        precision = pick_precision(precision, device)
    d_output = resolve_output(D, cfg.d_output)
    adam = pick_adam(cfg.adam, precision)
    compiled = cfg.compile
    if compiled == "auto" and device is not None:
        compiled = "true" if device.type == "cuda" else "false"
    check_loss(cfg.loss, d_output)
    return Runtime(
        device=device,
        precision=precision,
        d_output=d_output,
        explain_mode=resolve_mode(D, cfg.explain_mode),
        progress=cfg.progress if progress is None else progress,
        adam=adam,
        compile=compiled,
    )


def pick_device(name: str) -> torch.device:
    """The device a run's ``device`` setting names: ``auto`` is CUDA, else MPS, else the CPU.

    Args:
        name: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"mps"``.

    Returns:
        The device.

    Raises:
        xaigan.config.ConfigError: ``cuda`` asked for where CUDA is not available.

    Example:
        >>> pick_device("cpu")
        device(type='cpu')
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda requested but CUDA is not available")
    return torch.device(name)


def fast_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices faster than fp32: a CUDA GPU with bf16, or a CPU with AMX tiles
    (without them, CPU bf16 runs through AVX-512 and was slower than fp32 for the paper MLP's step,
    docs/benchmarks.md)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
        return bool(amx()) if amx is not None else False
    return False


def pick_precision(name: str, device: torch.device) -> str:
    """The step's arithmetic: ``auto`` is bf16 where :func:`fast_bf16`, fp32 elsewhere; other names as given.

    Args:
        name: ``"fp32"``, ``"bf16"`` or ``"auto"``.
        device: where the run trains.

    Returns:
        ``"fp32"`` or ``"bf16"`` (``name`` itself unless it is ``"auto"``).

    Example:
        >>> import torch
        >>> pick_precision("fp32", torch.device("cpu"))
        'fp32'
        >>> pick_precision("auto", torch.device("cpu")) in ("fp32", "bf16")  # bf16 on a CPU with AMX
        True
    """
    if name != "auto":
        return name
    return "bf16" if fast_bf16(device) else "fp32"


def pick_adam(name: str, precision: str) -> str:
    """Adam's implementation: ``auto`` is ``fused`` with bf16 and ``foreach`` with fp32 (and stays ``auto`` while
    ``precision`` does); other names as given.

    Example:
        >>> pick_adam("auto", "fp32"), pick_adam("auto", "bf16"), pick_adam("fused", "fp32")
        ('foreach', 'fused', 'fused')
    """
    if name != "auto" or precision == "auto":
        return name
    return "fused" if precision == "bf16" else "foreach"

"""Shared plumbing for the explainers: D's output kind, the explained model, D protection, batched input gradients.

Every explainer receives an :class:`ExplainedModel` (D, optionally preceded by a transform and followed by a
sigmoid or a logit) that maps ``(N, C, H, W)`` to ``(N, 1)``, and explains output column 0 for each sample.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from xaigan.settings import MODES, OUTPUTS, TARGETS  # the allowed values, declared with the settings


def _last_module(d: nn.Module) -> nn.Module:
    while isinstance(d, nn.Sequential) and len(d):
        d = d[-1]
    return [m for m in d.modules() if next(m.children(), None) is None][-1]  # d itself when it has no children


def detect_output(D: nn.Module) -> str:
    """``"prob"`` when D's last module is an ``nn.Sigmoid``, else ``"logit"``.

    The last module of an ``nn.Sequential`` is its last child (followed recursively); of any other module, its
    last registered leaf module (registration order is a guess at call order: pass ``d_output`` when it is wrong).

    Args:
        D: the discriminator.

    Returns:
        ``"prob"`` or ``"logit"``.

    Example:
        >>> from torch import nn
        >>> detect_output(nn.Sequential(nn.Flatten(), nn.Linear(1024, 1), nn.Sigmoid()))
        'prob'
        >>> detect_output(nn.Sequential(nn.Flatten(), nn.Linear(1024, 1)))
        'logit'
    """
    return "prob" if isinstance(_last_module(D), nn.Sigmoid) else "logit"


def resolve_output(D: nn.Module, d_output: str) -> str:
    """What D returns: ``"auto"`` -> :func:`detect_output`; ``"logit"``/``"prob"`` as declared.

    Args:
        D: the discriminator.
        d_output: ``"auto"``, ``"logit"`` or ``"prob"``.

    Returns:
        ``"logit"`` or ``"prob"``.

    Raises:
        ValueError: any other ``d_output``.

    Example:
        >>> from xaigan import models
        >>> _, D = models.build("mlp")
        >>> resolve_output(D, "auto")
        'logit'
    """
    if d_output == "auto":
        return detect_output(D)
    if d_output in OUTPUTS:
        return d_output
    raise ValueError(f"d_output must be one of {('auto', *OUTPUTS)}, got {d_output!r}")


def resolve_mode(D: nn.Module, mode: str) -> str:
    """``"auto"`` -> ``"batch"`` when D has BatchNorm, else ``"eval"``.

    A BatchNorm D in eval mode normalises with running statistics that mix all-real and all-fake batches: it is not
    the function whose gradient G receives (the G step runs D in train mode on a batch of fakes). Measured on
    DCGAN/MNIST (``scripts/bn_explain_mode.py``, ``docs/reliability.md``), eval mode rated real digits 0.15-0.25
    in the first epochs where train mode rated them 0.67-0.90. ``"batch"`` normalises with the statistics of the
    batch of fakes, frozen, so each sample's verdict is the G step's while explanations stay per-sample (train mode
    would also mix the baselines, perturbations or interpolations of DeepLIFT, LIME and IG into the statistics).
    Without BatchNorm, ``"batch"`` equals ``"eval"``: dropout off, deterministic maps of the expected D.

    ``"step"``: D as in G's own step (train mode: dropout on). A saliency guidance then reads its selection and
    maps from the G step's own forward and backward pass of D (see :func:`xaigan.train.step.gan_step`); elsewhere it
    is ``"train"``. A BatchNorm D couples the samples of that pass, so for one ``"step"`` resolves to ``"batch"``.

    Args:
        D: the discriminator.
        mode: ``"auto"``, ``"eval"``, ``"train"``, ``"batch"`` or ``"step"``.

    Returns:
        The mode D is explained in (``"auto"`` resolved; ``"step"`` becomes ``"batch"`` for a BatchNorm D).

    Raises:
        ValueError: an unknown ``mode``.

    Example:
        >>> from xaigan import models
        >>> resolve_mode(models.build("mlp")[1], "auto"), resolve_mode(models.build("dcgan")[1], "auto")
        ('eval', 'batch')
    """
    if mode == "auto":
        return "batch" if has_batchnorm(D) else "eval"
    if mode == "step" and has_batchnorm(D):
        return "batch"
    if mode in MODES:
        return mode
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _batchnorms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` normalises by batch statistics anywhere (its outputs then depend on the whole batch).

    Args:
        model: any module.

    Returns:
        True if any submodule is a BatchNorm layer.

    Example:
        >>> from xaigan import models
        >>> has_batchnorm(models.build("mlp")[1]), has_batchnorm(models.build("dcgan")[1])
        (False, True)
    """
    return bool(_batchnorms(model))


def _freeze_batch_statistics(model: nn.Module, batch: Tensor) -> None:
    """Set every BatchNorm's running statistics to those its input has when ``batch`` goes through ``model``
    (biased variance, as train mode normalises), layer by layer, so eval mode then computes train mode's outputs."""

    def take(module: nn.Module, inputs: tuple[Tensor, ...]) -> None:
        x = inputs[0]
        dims = [0, *range(2, x.dim())]
        module.running_mean.copy_(x.mean(dims))
        module.running_var.copy_(x.var(dims, unbiased=False))

    norms = [m for m in _batchnorms(model) if m.track_running_stats]
    hooks = [m.register_forward_pre_hook(take) for m in norms]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for h in hooks:
            h.remove()


def _plain_sequential(m: nn.Module) -> bool:
    return isinstance(m, nn.Sequential) and type(m).forward is nn.Sequential.forward


def without_final_sigmoid(d: nn.Module) -> nn.Module | None:
    """D's chain without its final ``nn.Sigmoid`` (new containers, the same layers), or ``None`` if not a chain."""
    if not _plain_sequential(d) or not len(d):
        return None
    layers = list(d)
    if isinstance(layers[-1], nn.Sigmoid):
        return nn.Sequential(*layers[:-1])
    inner = without_final_sigmoid(layers[-1])
    return None if inner is None else nn.Sequential(*layers[:-1], inner)


class Logit(nn.Module):
    """``torch.logit`` of a probability, clamped to ``[eps, 1 - eps]`` of its dtype so it stays finite."""

    def forward(self, p: Tensor) -> Tensor:
        return torch.logit(p, eps=torch.finfo(p.dtype).eps)


class ExplainedModel(nn.Module):
    """``x -> target(D(T(x)))`` shaped ``(N, 1)``, correct for both kinds of D.

    ``target``: ``"output"`` (what D returns, as captum explains it), ``"prob"`` (probability of real) or
    ``"logit"``. ``d_output``: what D returns, ``"auto"`` (:func:`detect_output`), ``"logit"`` or ``"prob"``.

    * logit D: ``"prob"`` appends an ``nn.Sigmoid`` module, so that DeepLIFT applies its rescale rule to it as it
      did to the paper's D (whose last layer was a Sigmoid); ``"output"``/``"logit"`` is D itself.
    * prob D: ``"output"``/``"prob"`` is D itself; ``"logit"`` is D's chain without its final Sigmoid when D is an
      ``nn.Sequential`` ending in one (exact, DeepLIFT's fast path still applies), else a clamped ``torch.logit``.

    ``transform`` (e.g. DiffAugment) is applied first, so explanations are of ``D o T`` with respect to the
    un-augmented image.

    Args:
        d: the discriminator.
        target: ``"output"``, ``"prob"`` or ``"logit"`` (see above).
        transform: a callable applied to the images before D, or None.
        d_output: what D returns, ``"auto"``, ``"logit"`` or ``"prob"``.

    Raises:
        ValueError: an unknown ``target`` or ``d_output``.

    Example:
        >>> import torch
        >>> from xaigan import models
        >>> _, D = models.build("mlp")
        >>> model = ExplainedModel(D.eval(), target="prob")
        >>> p = model(torch.zeros(4, 1, 32, 32))
        >>> p.shape, bool(((p > 0) & (p < 1)).all())
        (torch.Size([4, 1]), True)
    """

    def __init__(
        self,
        d: nn.Module,
        target: str = "output",
        transform: Callable[[Tensor], Tensor] | None = None,
        d_output: str = "auto",
    ):
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        self.d = d
        self.target = target
        self.d_output = resolve_output(d, d_output)
        self.transform = transform  # registered as a submodule when it is an nn.Module
        self.body = d
        self.head: nn.Module | None = None
        if self.d_output == "logit" and target == "prob":
            self.head = nn.Sigmoid()
        elif self.d_output == "prob" and target == "logit":
            stripped = without_final_sigmoid(d)
            if stripped is None:
                self.head = Logit()
            else:
                self.body = stripped

    def forward(self, x: Tensor) -> Tensor:
        if self.transform is not None:
            x = self.transform(x)
        out = self.body(x).view(-1, 1)
        if self.head is not None:
            out = self.head(out)
        return out


def target_of_output(out: Tensor, target: str, d_output: str) -> Tensor:
    """What :class:`ExplainedModel` explains, computed from D's raw outputs ``out`` (``d_output`` resolved):
    the probability of real, the logit or the output itself.

    Args:
        out: D's raw outputs.
        target: ``"prob"`` (the probability of real), ``"logit"``, or what D returns.
        d_output: whether D returns a ``"logit"`` or a ``"prob"`` (resolved, not ``"auto"``).

    Returns:
        The explained quantity, shaped like ``out``.

    Example:
        >>> import torch
        >>> target_of_output(torch.zeros(2, 1), "prob", "logit")
        tensor([[0.5000],
                [0.5000]])
    """
    if d_output == "logit" and target == "prob":
        return torch.sigmoid(out)
    if d_output == "prob" and target == "logit":
        return torch.logit(out, eps=torch.finfo(out.dtype).eps)
    return out


@contextlib.contextmanager
def protected(model: nn.Module, mode: str = "eval", batch: Tensor | None = None) -> Iterator[nn.Module]:
    """Run an explanation without leaving any trace on ``model``.

    Inside the block the model is in ``mode`` (``"eval"``: dropout off, BatchNorm uses running statistics;
    ``"train"``/``"step"``: as the original xAI-GAN explained, dropout on and BatchNorm using the statistics of
    whatever batch goes through; ``"batch"``: dropout off, BatchNorm using the statistics of ``batch``, frozen;
    ``"auto"``: see :func:`resolve_mode`) and its parameters do not require gradients (so no parameter gradient is
    computed or accumulated, which is also faster). On exit every module's ``training`` flag, every parameter's
    ``requires_grad`` and ``.grad`` (the same tensor object) and every buffer's value (BatchNorm running statistics,
    ``num_batches_tracked``, spectral norm vectors...) are restored, whatever happened inside.

    Args:
        model: the module to explain (D, or an :class:`ExplainedModel` around it).
        mode: ``"eval"``, ``"train"``, ``"step"``, ``"batch"`` or ``"auto"`` (see above).
        batch: the images whose BatchNorm statistics ``"batch"`` mode uses (required then, for a BatchNorm model).

    Returns:
        A context manager that yields ``model`` itself.

    Raises:
        ValueError: ``mode="batch"`` on a BatchNorm model without ``batch``, or an unknown ``mode``.

    Example:
        >>> import torch
        >>> from xaigan import models
        >>> _, D = models.build("mlp")
        >>> with protected(D, "eval") as d:
        ...     maps = saliency(d, torch.zeros(2, 1, 32, 32))
        >>> D.training, all(p.requires_grad for p in D.parameters())
        (True, True)
    """
    mode = resolve_mode(model, mode)
    flags = [(m, m.training) for m in model.modules()]
    params = list(model.parameters())
    requires = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        model.train(mode in ("train", "step"))
        for p in params:
            p.requires_grad_(False)
        if mode == "batch" and has_batchnorm(model):
            if batch is None:
                raise ValueError("explain mode 'batch' needs the batch whose BatchNorm statistics to use")
            _freeze_batch_statistics(model, batch)
        yield model
    finally:
        for m, flag in flags:
            m.training = flag
        for p, req, grad in zip(params, requires, grads):
            p.requires_grad_(req)
            p.grad = grad
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)


def chunks(n: int, size: int | None) -> Iterator[slice]:
    """Slices covering ``range(n)`` in pieces of at most ``size`` (all at once when ``size`` is None)."""
    step = n if not size or size <= 0 else int(size)
    for start in range(0, n, max(step, 1)):
        yield slice(start, min(start + step, n))


def input_gradients(model: nn.Module, x: Tensor, internal_batch_size: int | None = None) -> Tensor:
    """``d model(x)[:, 0] / dx`` for every sample, in chunks of ``internal_batch_size`` samples.

    The gradient of the summed output: each sample's gradient is its own as long as samples do not interact
    (true in eval mode; in train mode BatchNorm couples the samples of a chunk through the batch statistics).
    """
    out = torch.empty_like(x)
    with torch.enable_grad():
        for sl in chunks(x.shape[0], internal_batch_size):
            xi = x[sl].detach().requires_grad_(True)
            y = model(xi)[:, 0]
            (g,) = torch.autograd.grad(y.sum(), xi)
            out[sl] = g
    return out

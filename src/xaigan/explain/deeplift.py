"""DeepLIFT (rescale rule) and DeepLIFT-SHAP, computed for a whole batch in one pass.

For a chain of supported layers (see :data:`LINEAR` / :data:`RESCALE`) we run DeepLIFT ourselves:

* one forward pass over the B inputs and one over the K references (B + K rows, not B * K);
* a backward pass over the (sample, reference) pairs in which every linear layer is its own transpose (shared by
  all pairs; no forward over the pairs is needed) and every nonlinearity multiplies by the rescale multiplier
  ``(f(z) - f(z0)) / (z - z0)``, or ``f'(z)`` where ``|z - z0| < eps``, exactly captum's rule;
* attribution ``(x - x0) * multiplier``, averaged over the K references for DeepLIFT-SHAP.

This is the same arithmetic as captum's ``DeepLift`` / ``DeepLiftShap`` (tested equal to 1e-5), and faster,
because captum runs forward and backward over 2 * B * K rows with hooks (docs/benchmarks.md).

Anything else falls back to captum's implementation (correct, slower): models that are not a plain chain (skip
connections, functional activations, a ``transform`` fx cannot trace), unsupported layers (max-pooling, softmax,
GELU, ...), and dropout or BatchNorm in training mode (``explain_mode="train"``): captum then also sees the
dropout masks of its doubled batch, which is what the original xAI-GAN got.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xaigan.explain._base import Logit, chunks
from xaigan.explain._chain import Step, trace_chain

RESCALE = (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softplus)
"""Element-wise nonlinearities that get the rescale rule (the same set as captum's)."""
LINEAR = (
    nn.Linear,
    nn.Conv2d,
    nn.ConvTranspose2d,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.AlphaDropout,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
)
"""Affine layers (in eval mode): their DeepLIFT multiplier is their transpose, the same as the gradient."""
EPS = 1e-10
_PAIR_ELEMENTS = 1 << 20  # default chunk: elements of the widest per-pair activation (~4 MB, cache-friendly)


def _supported(step: Step) -> bool:
    m = step.module
    if m is None:
        return True
    if type(m) in RESCALE:
        return True
    if type(m) not in LINEAR:
        return False
    if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)):
        return not m.training
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return not m.training and m.running_mean is not None and m.running_var is not None
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        return m.padding_mode == "zeros" and not isinstance(m.padding, str)
    return True


def _transpose(step: Step, g: Tensor, in_shape: torch.Size) -> Tensor:
    """Apply the transpose of a linear step to the pair gradients ``g``."""
    m = step.module
    n = g.shape[0]
    if isinstance(m, nn.Linear):
        return g @ m.weight
    if isinstance(m, nn.Conv2d):
        return torch.nn.grad.conv2d_input((n, *in_shape), m.weight, g, m.stride, m.padding, m.dilation, m.groups)
    if isinstance(m, nn.ConvTranspose2d):
        out = F.conv2d(g, m.weight, None, m.stride, m.padding, m.dilation, m.groups)
        if out.shape[1:] != in_shape:
            raise RuntimeError("ConvTranspose2d transpose gave the wrong shape")
        return out
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        scale = torch.rsqrt(m.running_var + m.eps)
        if m.weight is not None:
            scale = scale * m.weight
        return g * scale.view(1, -1, *([1] * (g.dim() - 2)))
    if m is None or isinstance(m, (nn.Flatten, nn.Unflatten)):
        return g.reshape(n, *in_shape)
    return g  # dropout (eval), identity


def _slope(module: nn.Module, z: Tensor) -> Tensor:
    """``f'(z)`` of an element-wise module, by autograd (the gradient captum falls back to)."""
    with torch.enable_grad():
        zz = z.detach().clone().requires_grad_(True)
        y = module(zz)
        (d,) = torch.autograd.grad(y, zz, torch.ones_like(y))
    return d


def fast_plan(model: nn.Module) -> list[Step] | None:
    """The model's chain when every layer is supported by the fast path, else ``None`` (use captum)."""
    steps = trace_chain(model)
    if steps is None or not all(_supported(s) for s in steps):
        return None
    return steps


def _pair_multipliers(
    steps: list[Step],
    x: Tensor,
    refs: Tensor,
    K: int,
    paired: bool,
    internal_batch_size: int | None,
    eps: float,
) -> Tensor:
    """Mean over references of ``(x_i - r) * m(x_i, r)``; ``paired``: reference i goes with sample i only."""
    B = x.shape[0]
    records = []
    hx, hr = x, refs
    # The rescale rule divides differences of activations: keep them fp32 under bf16 autocast (only the transposed
    # products below, the bulk of the work, run in bf16).
    with torch.no_grad(), torch.autocast(x.device.type, enabled=False):
        for step in steps:
            rec: dict = {"in_shape": hx.shape[1:]}
            ox, orf = step.fn(hx), step.fn(hr)
            if step.module is not None and type(step.module) in RESCALE:
                rec.update(zx=hx, zr=hr, ox=ox, orf=orf)
            records.append(rec)
            hx, hr = ox, orf
    if hx.dim() != 2 or hx.shape[1] != 1:
        raise ValueError(f"the explained model must give one output per sample, got shape {tuple(hx.shape)}")
    if internal_batch_size is None:
        widest = max(int(torch.Size(r["in_shape"]).numel()) for r in records)
        internal_batch_size = max(1, _PAIR_ELEMENTS // max(widest, 1))
    per = 1 if paired else K
    samples_per_chunk = max(1, int(internal_batch_size) // per)
    out = torch.empty_like(x)
    with torch.no_grad():
        for sl in chunks(B, samples_per_chunk):
            n = sl.stop - sl.start
            g = x.new_ones(n * per, 1)
            for step, rec in zip(reversed(steps), reversed(records)):
                if "zx" in rec:
                    if paired:
                        dz = rec["zx"][sl] - rec["zr"][sl]
                        ratio = rec["ox"][sl] - rec["orf"][sl]
                    else:
                        dz = (rec["zx"][sl].unsqueeze(1) - rec["zr"].unsqueeze(0)).flatten(0, 1)
                        ratio = (rec["ox"][sl].unsqueeze(1) - rec["orf"].unsqueeze(0)).flatten(0, 1)
                    ratio.mul_(g).div_(dz)  # captum's order: (grad * delta_out) / delta_in, in place
                    small = dz.abs_() < eps
                    if bool(small.any()):  # rare: fall back to the gradient f'(z) where z and z0 (nearly) agree
                        if "slope" not in rec:
                            rec["slope"] = _slope(step.module, rec["zx"])
                        slope = rec["slope"][sl] if paired else rec["slope"][sl].repeat_interleave(K, dim=0)
                        ratio = torch.where(small, g * slope, ratio)
                    g = ratio
                else:
                    g = _transpose(step, g, rec["in_shape"])
            if paired:
                out[sl] = (x[sl] - refs[sl]) * g
            else:
                diff = x[sl].unsqueeze(1) - refs.unsqueeze(0)
                out[sl] = (diff * g.view(n, K, *x.shape[1:])).mean(1)
    return out


def captum_deeplift() -> tuple[type, type]:
    """captum's DeepLift classes, with the rescale rule also for our clamped-logit head (see ExplainedModel).

    captum picks the rule by module type; registering :class:`Logit` makes DeepLIFT of ``logit(sigmoid(z))`` give
    exactly DeepLIFT of ``z`` (the two multipliers cancel), as the plain-gradient default would not.
    """
    from captum.attr import DeepLift, DeepLiftShap
    from captum.attr._core import deep_lift

    deep_lift.SUPPORTED_NON_LINEAR.setdefault(Logit, deep_lift.nonlinear)
    return DeepLift, DeepLiftShap


def _plan_or_warn(model: nn.Module, use_captum: bool, name: str) -> list[Step] | None:
    """:func:`fast_plan` of ``model`` (None when ``use_captum``). When the fast path does not apply unasked, say so
    once per call site, with the usual reason, since captum's path then runs several times slower."""
    if use_captum:
        return None
    steps = fast_plan(model)
    if steps is None:
        why = (
            "D has dropout or BatchNorm in training mode (explain_mode train/step)"
            if any(m.training for m in model.modules())
            else "D is not a plain chain of supported layers"
        )
        warnings.warn(
            f"{name}: {why}, so the fast batched path does not apply and captum's implementation runs (several "
            "times slower); explain_mode eval keeps the fast path",
            RuntimeWarning,
            stacklevel=3,
        )
    return steps


def _check_refs(x: Tensor, refs: Tensor, name: str) -> Tensor:
    refs = refs.detach().to(device=x.device, dtype=x.dtype)
    if refs.shape[1:] != x.shape[1:]:
        raise ValueError(f"{name} must have shape (K, {', '.join(map(str, x.shape[1:]))}), got {tuple(refs.shape)}")
    return refs


def deeplift_shap(
    model: nn.Module,
    x: Tensor,
    baselines: Tensor | None = None,
    internal_batch_size: int | None = None,
    eps: float = EPS,
    use_captum: bool = False,
) -> Tensor:
    """DeepLIFT-SHAP: DeepLIFT attributions averaged over K reference images ``baselines`` ``(K, C, H, W)``.

    The paper used one fixed batch of real images as references. ``internal_batch_size`` bounds the number of
    (sample, reference) pairs processed at once (default: chosen so that one per-pair activation tensor holds at
    most 2**20 elements, ~800 pairs for the paper's MLP: small chunks stay in cache and are fastest).
    Deterministic: no random numbers are drawn (in eval mode). ``use_captum`` forces the captum path.

    Args:
        model: maps images ``(N, C, H, W)`` to ``(N, 1)`` (an :class:`ExplainedModel`, or D itself).
        x: the images ``(B, C, H, W)`` to explain.
        baselines: the ``K`` reference images ``(K, C, H, W)`` (required).
        internal_batch_size: the most (sample, reference) pairs processed at once (default: see above).
        eps: below this ``|z - z0|`` the rescale multiplier is the gradient ``f'(z)`` (captum's rule).
        use_captum: run captum's ``DeepLiftShap`` instead of the batched path.

    Returns:
        The attributions, shaped like ``x``.

    Raises:
        ValueError: no ``baselines``, or baselines not shaped like ``x``'s images.

    Example:
        >>> import torch
        >>> from xaigan import models
        >>> _, D = models.build("mlp")
        >>> x, real = torch.rand(4, 1, 32, 32) * 2 - 1, torch.rand(16, 1, 32, 32) * 2 - 1
        >>> deeplift_shap(D.eval(), x, baselines=real).shape
        torch.Size([4, 1, 32, 32])
    """
    if baselines is None:
        raise ValueError("deeplift-shap needs baselines=(K, C, H, W) reference images, e.g. a batch of real images")
    refs = _check_refs(x, baselines, "baselines")
    steps = _plan_or_warn(model, use_captum, "deeplift-shap")
    if steps is not None:
        return _pair_multipliers(steps, x, refs, refs.shape[0], False, internal_batch_size, eps)
    DeepLift, DeepLiftShap = captum_deeplift()

    out = torch.empty_like(x)
    per = max(1, (internal_batch_size or 4096) // refs.shape[0])
    for sl in chunks(x.shape[0], per):
        if refs.shape[0] == 1:  # captum's DeepLiftShap wants at least two references
            xs = x[sl]
            out[sl] = DeepLift(model, eps=eps).attribute(xs, refs.expand_as(xs), target=0)
        else:
            out[sl] = DeepLiftShap(model).attribute(x[sl], refs, target=0)
    return out


def deeplift(
    model: nn.Module,
    x: Tensor,
    baselines: Tensor | float | None = None,
    internal_batch_size: int | None = None,
    eps: float = EPS,
    use_captum: bool = False,
) -> Tensor:
    """DeepLIFT (rescale rule) against one reference per sample. Deterministic in eval mode.

    Args:
        model: maps images ``(N, C, H, W)`` to ``(N, 1)`` (an :class:`ExplainedModel`, or D itself).
        x: the images ``(B, C, H, W)`` to explain.
        baselines: ``None``/a number (constant image, default 0 = mid-grey in [-1, 1]), one image ``(1, C, H, W)``
            shared by all samples, or one per sample ``(B, C, H, W)``.
        internal_batch_size: the most samples processed at once.
        eps: below this ``|z - z0|`` the rescale multiplier is the gradient ``f'(z)`` (captum's rule).
        use_captum: run captum's ``DeepLift`` instead of the batched path.

    Returns:
        The attributions, shaped like ``x``.

    Raises:
        ValueError: baselines that are neither one image nor one per sample.

    Example:
        >>> import torch
        >>> from xaigan import models
        >>> _, D = models.build("mlp")
        >>> deeplift(D.eval(), torch.rand(4, 1, 32, 32) * 2 - 1, baselines=0.0).shape
        torch.Size([4, 1, 32, 32])
    """
    if baselines is None or isinstance(baselines, (int, float)):
        refs = torch.full_like(x, float(baselines or 0.0))
    else:
        refs = _check_refs(x, torch.as_tensor(baselines), "baselines")
        if refs.shape[0] == 1:
            refs = refs.expand_as(x)
        elif refs.shape[0] != x.shape[0]:
            raise ValueError("deeplift baselines must hold 1 or B images")
    steps = _plan_or_warn(model, use_captum, "deeplift")
    if steps is not None:
        return _pair_multipliers(steps, x, refs, 1, True, internal_batch_size, eps)
    DeepLift, _ = captum_deeplift()

    out = torch.empty_like(x)
    for sl in chunks(x.shape[0], internal_batch_size):
        out[sl] = DeepLift(model, eps=eps).attribute(x[sl], refs[sl], target=0)
    return out

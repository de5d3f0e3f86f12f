"""Gradient-based explainers: input x gradient, integrated gradients, SmoothGrad."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from xaigan.explain._base import chunks, input_gradients
from xaigan.explain._chain import flattens_to_linear, run_steps, trace_chain


def input_x_gradient(model: nn.Module, x: Tensor, internal_batch_size: int | None = None) -> Tensor:
    """``x * d out / dx`` (captum's ``InputXGradient``), one batched backward pass. No random numbers (eval).

    Args:
        model: maps images ``(N, C, H, W)`` to ``(N, 1)`` (an :class:`ExplainedModel`, or D itself).
        x: the images to explain.
        internal_batch_size: the most samples per backward pass (all at once by default).

    Returns:
        The attributions, shaped like ``x``.

    Example:
        >>> import torch
        >>> from xaigan import models
        >>> _, D = models.build("mlp")
        >>> input_x_gradient(D.eval(), torch.rand(4, 1, 32, 32) * 2 - 1).shape
        torch.Size([4, 1, 32, 32])
    """
    return x * input_gradients(model, x, internal_batch_size)


def _ig_first_linear(model: nn.Module, x: Tensor, refs: Tensor, n_steps: int, method: str, ibs: int | None):
    """Integrated gradients through a first ``Flatten -> Linear`` computed once instead of once per step.

    The first layer is linear, so at ``b + a (x - b)`` its output is ``(W b + c) + a W (x - b)``, and the
    step-weighted sum of input gradients is ``W^T`` of the step-weighted sum of its output gradients. Same
    arithmetic as captum (same quadrature), without running the largest layer ``n_steps`` times forwards and
    backwards. Returns ``None`` when the model does not start that way.
    """
    from captum.attr._utils.approximation_methods import approximation_parameters

    steps = trace_chain(model)
    k = flattens_to_linear(steps, x.shape[1:]) if steps is not None else None
    if k is None:
        return None
    step_sizes_fn, alphas_fn = approximation_parameters(method)
    sizes, alphas = list(step_sizes_fn(n_steps)), list(alphas_fn(n_steps))
    lin, rest = steps[k].module, steps[k + 1 :]
    B = x.shape[0]
    with torch.no_grad():
        start = lin(run_steps(steps[:k], refs))
        delta = run_steps(steps[:k], x - refs) @ lin.weight.T
    total = torch.zeros_like(start)
    per = max(1, (ibs or len(alphas) * B) // B)
    for sl in chunks(len(alphas), per):
        a = torch.tensor(alphas[sl], dtype=x.dtype, device=x.device).view(-1, 1, 1)
        w = torch.tensor(sizes[sl], dtype=x.dtype, device=x.device).view(-1, 1, 1)
        with torch.enable_grad():
            h = (start.unsqueeze(0) + a * delta.unsqueeze(0)).reshape(-1, start.shape[1]).requires_grad_(True)
            out = run_steps(rest, h)[:, 0]
            (g,) = torch.autograd.grad(out.sum(), h)
        total += (g.view(-1, B, start.shape[1]) * w).sum(0)
    return (x - refs) * (total @ lin.weight).view_as(x)


def integrated_gradients(
    model: nn.Module,
    x: Tensor,
    n_steps: int = 16,
    baselines: Tensor | float | None = None,
    method: str = "gausslegendre",
    internal_batch_size: int | None = None,
    use_captum: bool = False,
) -> Tensor:
    """Integrated gradients along the straight line from ``baselines`` to ``x``, batched.

    ``baselines``: ``None``/a number (constant image, default 0 = mid-grey) or a tensor broadcastable to ``x``
    (one image or one per sample). ``n_steps`` points of captum's quadrature ``method`` (default Gauss-Legendre);
    ``internal_batch_size`` bounds the number of (sample, step) rows per forward pass. When D starts with
    ``Flatten -> Linear`` (the paper's MLP) the first layer is evaluated once, not once per step (see
    :func:`_ig_first_linear`; equal to captum to 1e-5 in the tests); otherwise, or with ``use_captum``, captum's
    ``IntegratedGradients``. No random numbers in eval mode.

    Args:
        model: maps images ``(N, C, H, W)`` to ``(N, 1)`` (an :class:`ExplainedModel`, or D itself).
        x: the images to explain.
        n_steps: points of the quadrature along the line.
        baselines: where the line starts (see above).
        method: captum's quadrature rule (``"gausslegendre"``, ``"riemann_trapezoid"``, ...).
        internal_batch_size: the most (sample, step) rows per forward pass.
        use_captum: always run captum's ``IntegratedGradients``.

    Returns:
        The attributions, shaped like ``x``.

    Example:
        >>> import torch
        >>> from xaigan import models
        >>> _, D = models.build("mlp")
        >>> integrated_gradients(D.eval(), torch.rand(4, 1, 32, 32) * 2 - 1, n_steps=8).shape
        torch.Size([4, 1, 32, 32])
    """
    if baselines is None or isinstance(baselines, (int, float)):
        refs = torch.full_like(x, float(baselines or 0.0))
    else:
        refs = torch.as_tensor(baselines).to(device=x.device, dtype=x.dtype).expand_as(x)
    if not use_captum:
        out = _ig_first_linear(model, x, refs, n_steps, method, internal_batch_size)
        if out is not None:
            return out
    from captum.attr import IntegratedGradients

    with torch.enable_grad():
        return IntegratedGradients(model).attribute(
            x, baselines=refs, target=0, n_steps=n_steps, method=method, internal_batch_size=internal_batch_size
        )


def smoothgrad_noise(x: Tensor, nt_samples: int, stdevs: float, generator: torch.Generator | None = None) -> Tensor:
    """The noisy copies SmoothGrad explains: ``(B * nt_samples, ...)``, copies of sample i at rows ``i*n .. i*n+n-1``.

    Noise is ``stdevs * N(0, 1)`` drawn in one call from ``generator`` (torch's global RNG when ``None``).
    """
    device = generator.device if generator is not None else x.device
    noise = torch.randn((x.shape[0] * nt_samples, *x.shape[1:]), generator=generator, dtype=x.dtype, device=device)
    noise = noise.to(x.device)
    return x.repeat_interleave(nt_samples, dim=0) + stdevs * noise


def smoothgrad(
    model: nn.Module,
    x: Tensor,
    nt_samples: int = 16,
    stdevs: float = 0.2,
    abs: bool = True,
    generator: torch.Generator | None = None,
    nt_samples_batch_size: int | None = None,
) -> Tensor:
    """SmoothGrad: the mean over ``nt_samples`` noisy copies (Gaussian, std ``stdevs``) of the saliency.

    As captum's ``NoiseTunnel(Saliency)`` with ``nt_type="smoothgrad"``: with ``abs=True`` (default) the absolute
    gradients are averaged; ``abs=False`` averages signed gradients (the SmoothGrad paper). The default std 0.2 is
    10% of the [-1, 1] pixel range (the paper suggests 10-20%). RNG: the noise is drawn with ``generator`` when
    given, else from torch's global RNG, which it then advances. ``nt_samples_batch_size`` bounds the number of
    noisy images per backward pass.

    Args:
        model: maps images ``(N, C, H, W)`` to ``(N, 1)`` (an :class:`ExplainedModel`, or D itself).
        x: the images to explain.
        nt_samples: noisy copies per image.
        stdevs: the noise's standard deviation, in pixel units of [-1, 1].
        abs: average absolute gradients (default) or signed ones.
        generator: the random generator of the noise (torch's global one when None).
        nt_samples_batch_size: the most noisy images per backward pass.

    Returns:
        The maps, shaped like ``x``.

    Example:
        >>> import torch
        >>> from xaigan import models
        >>> _, D = models.build("mlp")
        >>> g = torch.Generator().manual_seed(0)
        >>> smoothgrad(D.eval(), torch.rand(4, 1, 32, 32) * 2 - 1, nt_samples=8, generator=g).shape
        torch.Size([4, 1, 32, 32])
    """
    noisy = smoothgrad_noise(x, nt_samples, stdevs, generator)
    grads = input_gradients(model, noisy, nt_samples_batch_size)
    if abs:
        grads = grads.abs()
    return grads.view(x.shape[0], nt_samples, *x.shape[1:]).mean(1)


__all__ = ["input_x_gradient", "integrated_gradients", "smoothgrad", "smoothgrad_noise"]


def integrated_gradients_real(
    model: nn.Module, x: Tensor, baselines: Tensor, n_steps: int = 16, internal_batch_size: int | None = None
) -> Tensor:
    """Integrated gradients from a real image to each sample ("what makes this sample look fake compared with real
    data"): sample ``i`` starts from ``baselines[i % k]`` of the ``k`` real reference images. No random numbers.

    Args:
        model: maps images ``(N, C, H, W)`` to ``(N, 1)`` (an :class:`ExplainedModel`, or D itself).
        x: the images to explain.
        baselines: ``k`` real images ``(k, C, H, W)``.
        n_steps: points of the quadrature along each line.
        internal_batch_size: the most (sample, step) rows per forward pass.

    Returns:
        The attributions, shaped like ``x``.

    Raises:
        ValueError: ``baselines`` empty or not shaped like ``x``'s images.

    Example:
        >>> import torch
        >>> from xaigan import models
        >>> _, D = models.build("mlp")
        >>> x, real = torch.rand(4, 1, 32, 32) * 2 - 1, torch.rand(2, 1, 32, 32) * 2 - 1
        >>> integrated_gradients_real(D.eval(), x, real, n_steps=8).shape
        torch.Size([4, 1, 32, 32])
    """
    refs = torch.as_tensor(baselines).to(device=x.device, dtype=x.dtype)
    if refs.dim() != x.dim() or refs.shape[1:] != x.shape[1:] or not len(refs):
        raise ValueError(f"baselines must be real images shaped like x's samples, got {tuple(refs.shape)}")
    index = torch.arange(len(x), device=refs.device) % len(refs)
    return integrated_gradients(
        model, x, n_steps=n_steps, baselines=refs[index], internal_batch_size=internal_batch_size
    )

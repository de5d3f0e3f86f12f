"""The paper's guidance as a trainer uses it: :class:`XAIGuidance` explains D on the fakes, selects, normalises and
wraps them with :func:`xaigan.guidance.gradient.apply`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from xaigan import explain as _explain
from xaigan.errors import InputError
from xaigan.explain import (
    ExplainedModel,
    has_batchnorm,
    protected,
    resolve_output,
    target_of_output,
)
from xaigan.guidance.gradient import apply, broadcasts, scale
from xaigan.guidance.health import HealthCheck
from xaigan.guidance.masks import (
    combine_prior,
    flatten_explained,
    load_prior,
    normalize,
    shuffle_pixels,
)
from xaigan.guidance.protocol import describe
from xaigan.guidance.regimes import Regimes
from xaigan.guidance.uses import factor, scheduled_alpha, signed_unit
from xaigan.settings import OUTPUTS, ConfigError, GuidanceSettings

SHARED_KWARGS = ("abs", "internal_batch_size")  # saliency settings a shared step honours (the latter is moot)
_SETTING_NAMES = frozenset(GuidanceSettings().to_dict())


class XAIGuidance:
    """Explain D on the generated batch, turn the explanations into a mask and attach it with :func:`apply`.

    Every setting is recorded by :meth:`config`; the defaults follow the paper / original code.

    After each call: ``last_mask`` ``(B, C, H, W)``, ``last_selected`` ``(B,)`` bool, ``last_maps`` (raw maps of
    the selected samples) and ``stats`` (``explained``: fraction of the batch explained, ``n_explained``,
    ``mask_mean``, ``seconds``: wall time of scoring, explaining and normalising).

    RNG: see :mod:`xaigan.explain` (lime/smoothgrad take ``generator`` in ``explain_kwargs``; train-mode dropout
    uses the global RNG). Selection draws none in eval mode, unless ``transform`` is random (DiffAugment draws from
    the global RNG in the selection pass and in every forward pass of the explanation).

    Args:
        method: an explainer name (:func:`xaigan.explain.available`).
        settings: the guidance's settings (:class:`xaigan.settings.GuidanceSettings`; the paper's by default).
        d_output: what D returns (``"auto"``), see :func:`xaigan.explain.resolve_output` (resolved for each D
            passed).
        transform: a callable applied before D (DiffAugment): the explanation is of ``D o T`` at ``G(z)``.
        explain_kwargs: go to the explainer (e.g. ``baselines=real_images`` for ``deeplift-shap``,
            ``n_samples``/``segmentation`` for ``lime``).
        changes: settings by name that replace those of ``settings`` (``alpha=0.5, select="all"``). Each is
            readable as an attribute (``guide.alpha``).

    Raises:
        xaigan.config.ConfigError: a setting outside its allowed values, or settings that do not go together
            (see :class:`xaigan.settings.GuidanceSettings`); also a ValueError.
        TypeError: a name in ``changes`` that is not a setting.
        KeyError: an unknown ``method``.

    Example:
        >>> import torch
        >>> from xaigan import models
        >>> G, D = models.build("mlp")
        >>> guide = XAIGuidance("saliency", alpha=0.2, select="all")
        >>> fake = guide(G(torch.randn(8, 100)), D)  # the same images; G's gradient at them is reshaped
        >>> guide.stats["n_explained"], tuple(guide.last_mask.shape)
        (8, (8, 1, 32, 32))
    """

    def __init__(
        self,
        method: str = "saliency",
        *,
        settings: GuidanceSettings | None = None,
        d_output: str = "auto",
        transform: Callable[[Tensor], Tensor] | None = None,
        explain_kwargs: dict | None = None,
        **changes: Any,
    ) -> None:
        self.settings = (settings or GuidanceSettings()).replace(**changes)
        if self.settings.prior_mode != "replace":
            _explain.get(method)
        if d_output not in ("auto", *OUTPUTS):
            raise ConfigError(f"d_output must be one of auto, {', '.join(OUTPUTS)}; got {d_output!r}")
        self.method = method
        self.d_output = d_output
        self.transform = transform
        self.explain_kwargs = dict(explain_kwargs or {})
        self.alpha_now = self.alpha  # alpha in the current epoch (see schedule)
        self._health = HealthCheck(self.patience, self.strict)
        self._prior_cache: dict[tuple, Tensor] = {}
        self.last_mask: Tensor | None = None
        self.last_selected: Tensor | None = None
        self.last_maps: Tensor | None = None
        self.stats: dict = {}
        self._scores: Tensor | None = None  # D's raw outputs on the last batch, when they were known
        self._regimes = Regimes()

    def __getattr__(self, name: str) -> Any:
        settings = self.__dict__.get("settings")
        if settings is not None and name in _SETTING_NAMES:
            return getattr(settings, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def config(self) -> dict:
        """The settings, JSON-friendly (tensors appear as their shapes)."""
        given = {"method": self.method, "d_output": self.d_output, "transform": self.transform}
        values = {**given, "explain_kwargs": self.explain_kwargs, **self.settings.to_dict()}
        return {name: describe(value) for name, value in values.items()}

    def active(self, epoch: int) -> bool:
        """Whether the guidance is used in ``epoch`` (0-based): from ``start_epoch`` on."""
        return epoch >= self.start_epoch

    def at_epoch(self, epoch: int) -> None:
        """Set the strength for 0-based ``epoch`` from the schedule (:func:`xaigan.guidance.uses.scheduled_alpha`)."""
        end = self.end_epoch if self.end_epoch is not None else epoch + 1
        self.alpha_now = scheduled_alpha(self.alpha, self.schedule, epoch, self.start_epoch, end)

    def _prior_for(self, x: Tensor) -> Tensor:
        key = (tuple(x.shape[1:]), x.device, x.dtype)
        if key not in self._prior_cache:
            if isinstance(self.prior, (str, Path)):
                prior = load_prior(self.prior, tuple(x.shape[2:]))
            else:
                prior = torch.as_tensor(self.prior).detach()
            prior = prior.to(device=x.device, dtype=x.dtype)
            if not broadcasts(prior.shape, x.shape[1:]):
                raise InputError(
                    f"prior of shape {tuple(prior.shape)} does not broadcast to one image {tuple(x.shape[1:])}"
                )
            self._prior_cache[key] = prior
        return self._prior_cache[key]

    def selection(self, x: Tensor, D: nn.Module, scores: Tensor | None = None) -> Tensor:
        """Boolean ``(B,)``: which samples get explained. ``scores``: D's raw outputs on ``x``, if known."""
        self._scores = None if scores is None else scores.detach().reshape(-1)
        if self.select == "all" and scores is None:
            return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        kind = resolve_output(D, self.d_output)
        if self._scores is None:
            model = ExplainedModel(D, target="output", transform=self.transform, d_output=kind)
            with protected(model, self.explain_mode, batch=x), torch.no_grad():
                self._scores = model(x).reshape(-1)
        s = self._scores
        if kind == "prob" and s.numel() and not bool(((s >= 0) & (s <= 1)).all()):
            raise InputError(
                f"D was taken to return probabilities (d_output={self.d_output!r}) but its outputs range over "
                f"[{float(s.min()):.4g}, {float(s.max()):.4g}]: pass d_output='logit' if D returns logits"
            )
        if self.select == "all":
            return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        prob = s if kind == "prob" else torch.sigmoid(s)
        return prob < self.threshold

    def masks(self, x: Tensor, D: nn.Module, scores: Tensor | None = None, maps: Tensor | None = None) -> Tensor:
        """The ``(B, ...)`` mask for the batch ``x`` (also stored with the stats, see the class docstring).

        ``maps``: this method's explanations of every sample of ``x``, when already computed (a shared step);
        the selected samples' maps are then taken from it instead of explaining them.
        """
        start = time.perf_counter()
        x = x.detach()
        selected = self.selection(x, D, scores)
        n = int(selected.sum())
        all_maps, maps = maps, x.new_zeros((0, *x.shape[1:]))
        mask = x.new_zeros(x.shape)
        if n and self.prior_mode == "replace":
            mask[selected] = self._prior_for(x)
        elif n:
            maps = self.explain_maps(x[selected], D, batch=x) if all_maps is None else all_maps.detach()[selected]
            maps = shuffle_pixels(maps) if self.shuffle else maps
            if self.use == "signed":
                mask[selected] = signed_unit(maps)
            else:
                mask = normalize(maps, selected, self.normalize, self.clip, self.temperature)
            if self.prior is not None:
                mask[selected] = combine_prior(mask[selected], self._prior_for(x), self.prior_mode)
            mask = flatten_explained(mask, selected) if self.flat else mask
        self.last_mask, self.last_selected, self.last_maps = mask, selected, maps
        self._regimes.update(mask, selected)
        self.stats = {
            "explained": n / max(x.shape[0], 1),
            "n_explained": n,
            "mask_mean": float(mask.mean()) if mask.numel() else 0.0,
            "seconds": time.perf_counter() - start,
        }
        return mask

    def explain_maps(self, x: Tensor, D: nn.Module, batch: Tensor | None = None) -> Tensor:
        """Explanations of every sample of ``x`` with this guidance's method and settings (heat-map figures);
        ``batch``: the whole batch ``x`` came from, whose BatchNorm statistics ``explain_mode="batch"`` uses."""
        return _explain.explain(
            self.method,
            D,
            x.detach(),
            target=self.target,
            d_output=self.d_output,
            mode=self.explain_mode,
            transform=self.transform,
            batch=batch,
            precision=self.precision,
            **self.explain_kwargs,
        )

    def __call__(self, fake: Tensor, D: nn.Module, scores: Tensor | None = None) -> Tensor:
        """``fake`` wrapped by :func:`apply` with this batch's mask (``fake`` itself when nothing is explained).

        ``scores``: D's raw outputs on ``fake`` (as D returns them) if already computed, e.g. by the training
        forward pass, as the original selected with them; used for selection only.
        """
        mask = self.masks(fake, D, scores)
        self._check_health(D, mask)
        if self.stats["n_explained"] == 0 or self.use == "weight":  # weight: G's loss is weighted instead
            return fake
        if self.use == "amplify":
            return apply(fake, mask, self.alpha_now)
        return scale(fake, factor(self.use, mask, self.alpha_now, self.last_selected))

    def loss_weights(self) -> Tensor | None:
        """For ``use="weight"``: the weight of each sample's share of G's loss in the last call, ``1 + alpha *
        mean(M_i)`` for explained samples and 1 for the others (None for the other uses). The trainer's G step
        weights the loss with it, which a BatchNorm D (samples coupled by batch statistics) needs; with a D whose
        outputs depend on each sample alone it equals scaling each sample's gradient (the shared step does that)."""
        if self.use != "weight" or self.last_mask is None:
            return None
        m = self.last_mask
        return factor("weight", m, self.alpha_now, self.last_selected).flatten(1)[:, 0]

    def _check_health(self, D: nn.Module, mask: Tensor) -> None:
        context = dict(threshold=self.threshold, d_output=self.d_output, method=self.method)
        context["kind"] = resolve_output(D, self.d_output)
        self._health.update(self.stats["n_explained"], mask, self._scores, self.select == "fake", context)

    def shares_step(self, D: nn.Module) -> bool:
        """Whether G's step may compute this guidance from its own pass of D (then it calls :meth:`scale_gradient`
        instead of ``__call__``): saliency in ``explain_mode="step"`` on a D without BatchNorm, so that each
        sample's output depends on that sample alone and one backward pass of the summed outputs gives every
        sample's input gradient."""
        return (
            self.method == "saliency"
            and self.explain_mode == "step"
            and self.prior_mode != "replace"
            and set(self.explain_kwargs) <= set(SHARED_KWARGS)
            and not has_batchnorm(D)
        )

    def scale_gradient(self, grad: Tensor, fake: Tensor, D: nn.Module, scores: Tensor, jacobian: Tensor) -> Tensor:
        """G's gradient ``grad`` at ``fake`` reshaped by this batch's mask, from G's own step (see :meth:`shares_step`).

        ``scores``: D's raw outputs on ``fake`` in that step; ``jacobian``: ``d scores_i / d fake_i`` per sample.
        The saliency of each sample is ``|d target / d score| * |jacobian|``, as :func:`xaigan.explain.saliency`
        computes it from a pass of its own. Returns ``grad`` reshaped as ``use`` says (the paper's
        amplify: ``grad * (1 + alpha * mask)``), or ``grad`` when nothing is explained.
        """
        kind = resolve_output(D, self.d_output)
        o = scores.detach().float().reshape(-1).requires_grad_(True)
        with torch.enable_grad():
            (dt,) = torch.autograd.grad(target_of_output(o, self.target, kind).sum(), o)
        maps = dt.view(-1, *([1] * (jacobian.dim() - 1))) * jacobian
        if self.explain_kwargs.get("abs", True):
            maps = maps.abs()
        mask = self.masks(fake, D, scores.detach().reshape(-1), maps=maps)
        self._check_health(D, mask)
        if self.stats["n_explained"] == 0 or (self.alpha_now == 0 and self.use == "amplify"):
            return grad
        if self.use == "amplify":
            return grad * (1 + self.alpha_now * mask)
        return grad * factor(self.use, mask, self.alpha_now, self.last_selected)

    def regimes(self) -> dict:
        """How many calls explained none, some or all of the batch (see :mod:`xaigan.guidance.regimes`)."""
        return self._regimes.summary()

    def drain_events(self) -> list[dict]:
        """Health events since the last drain (``{"event": "xai_health", "check", "steps", "message"}``)."""
        return self._health.drain()

    def state_dict(self) -> dict:
        """``health``: per check, the current streak's ``steps``, D's output ``range`` and whether it was ``said``;
        ``regimes``: the counts behind :meth:`regimes`."""
        return {"health": self._health.state_dict(), "regimes": self._regimes.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if "health" not in state:  # written before the regime counts: the health state alone
            self._health.load_state_dict(state)
            return
        self._health.load_state_dict(state["health"])
        self._regimes.load_state_dict(state["regimes"])

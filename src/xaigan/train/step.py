"""One step of the paper's standard GAN, as a pure function of the networks, optimisers, batch and config."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from xaigan.config import Config, ConfigError
from xaigan.explain import has_batchnorm, resolve_output
from xaigan.guidance import Guidance, XAIGuidance
from xaigan.train.losses import d_loss, g_loss, prob_real
from xaigan.train.runtime import pick_adam

Augment = Callable[[torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """``model``'s parameters do not require gradients inside the block (restored after, whatever happens)."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def make_optimizers(G: nn.Module, D: nn.Module, cfg: Config) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """The paper's Adam for G and D in ``cfg.adam``'s implementation: ``foreach`` (several tensors per kernel,
    bit-identical to the per-parameter loop) or ``fused`` (one kernel per step; not bit-identical, so opt-in);
    ``auto`` is fused with bf16 and foreach with fp32 (the trainer resolves it first)."""
    implementation = {"fused": True} if pick_adam(cfg.adam, cfg.precision) == "fused" else {"foreach": True}
    betas = (cfg.beta1, cfg.beta2)
    return (
        torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=betas, **implementation),
        torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=betas, **implementation),
    )


def unwrapped(model: nn.Module) -> nn.Module:
    """The module inside ``model``'s DistributedDataParallel and ``torch.compile`` wrappers (``model`` itself when it
    has none): what explainers hook into and what checkpoints hold."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def step_autocast(cfg: Config, device: torch.device) -> contextlib.AbstractContextManager:
    if cfg.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def gan_step(
    G: nn.Module,
    D: nn.Module,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    real: torch.Tensor,
    cfg: Config,
    augment: Augment | None = None,
    guidance: Guidance | None = None,
    noise: Callable[[int], torch.Tensor] | None = None,
    weights: Callable[[torch.Tensor], torch.Tensor | None] | None = None,
) -> dict[str, float]:
    """One D step and one G step of a GAN with ``cfg.loss`` (the paper's BCE with label smoothing by default) and
    G gradient clipping.

    ``cfg.d_output`` says whether D returns logits or probabilities (``auto``: detected from D's last module).
    ``noise(n)`` draws G's input (default: ``n`` standard normal rows from the global generator). G and D may be
    wrapped in DistributedDataParallel: D's wrapper trains D; G's step and the guidance use the module inside it
    (they need D's input gradients, not its weight gradients). They may be ``torch.compile`` d too: the training
    passes run compiled, the guidance explains the module inside (explainers hook into its layers).

    Args:
        G: the generator.
        D: the discriminator.
        opt_g: G's optimiser.
        opt_d: D's optimiser.
        real: a batch of real images, float in [-1, 1], on the training device.
        cfg: the run's config (``d_steps``, labels, ``g_clip``, ``precision``, ``noise_dim``, ``d_output``).
        augment: applied to every input of D (DiffAugment), or None.
        guidance: reshapes G's gradient at the fakes (:class:`xaigan.guidance.Guidance`), or None.
        noise: ``noise(n)`` draws G's input (default: ``n`` standard normal rows from the global generator).
        weights: ``weights(scores)`` gives ``(B,)`` weights of G's per-sample loss terms from D's raw outputs on the
            generated batch, or None (top-k, acceptance weighting: :mod:`xaigan.train.weights`).

    Returns:
        ``d_loss``, ``g_loss`` and D's mean probability of real on the real (``d_real``) and fake (``d_fake``)
        images of its last step.

    Example:
        >>> import torch
        >>> from xaigan import models
        >>> from xaigan.config import Config
        >>> from xaigan.train.step import make_optimizers
        >>> cfg = Config()
        >>> G, D = models.build("mlp")
        >>> opt_g, opt_d = make_optimizers(G, D, cfg)
        >>> sorted(gan_step(G, D, opt_g, opt_d, torch.rand(16, 1, 32, 32) * 2 - 1, cfg))
        ['d_fake', 'd_loss', 'd_real', 'g_loss']
    """
    batch = len(real)
    aug = augment or (lambda x: x)
    device = real.device
    if noise is None:

        def noise(n: int) -> torch.Tensor:
            return torch.randn(n, cfg.noise_dim, device=device)

    inner = D.module if isinstance(D, nn.parallel.DistributedDataParallel) else D  # compiled, if D was
    plain = unwrapped(D)
    d_output = resolve_output(plain, cfg.d_output)  # "logit" or "prob"
    autocast = step_autocast(cfg, device)
    fast = cfg.precision != "fp32"
    for _ in range(cfg.d_steps):
        with torch.no_grad(), autocast:  # D's step needs no graph through G
            fake = G(noise(batch))
        with autocast:
            if fast and not has_batchnorm(plain):  # one pass of twice the rows: better matmuls, same loss
                d_real, d_fake = D(aug(torch.cat([real, fake.to(real.dtype)]))).float().split(batch)
            else:  # separately (a BatchNorm D normalises each batch by its own statistics)
                d_real, d_fake = D(aug(real)).float(), D(aug(fake)).float()
        loss_d = d_loss(cfg.loss, d_real, d_fake, (cfg.label_real, cfg.label_fake), d_output)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

    with autocast:
        fake = G(noise(batch))
    g_step = GStep(plain, cfg, d_output, aug, autocast, opt_g, weights, forward=inner)
    if isinstance(guidance, XAIGuidance) and guidance.shares_step(plain):
        loss_g = g_step.shared(fake, guidance)
    else:
        loss_g = g_step(fake, guidance)
    if cfg.g_clip > 0:
        nn.utils.clip_grad_norm_(G.parameters(), cfg.g_clip)
    opt_g.step()
    return {
        "d_loss": loss_d.item(),
        "g_loss": loss_g.item(),
        "d_real": prob_real(d_real, d_output).mean().item(),
        "d_fake": prob_real(d_fake, d_output).mean().item(),
    }


@dataclass(frozen=True)
class GStep:
    """G's half of a step: what it needs besides the fakes and the guidance.

    Attributes:
        D: the discriminator (the module itself, not a DistributedDataParallel wrapper: G's step needs its input
            gradients only).
        cfg: the run's config (``g_target``).
        d_output: what D returns, ``"logit"`` or ``"prob"``.
        aug: applied to every input of D (the identity when there is no augmentation).
        autocast: the step's autocast context (a null context in fp32).
        opt_g: G's optimiser (its gradients are zeroed here; the caller clips and steps).
        weights: per-sample weights of G's loss terms from D's raw outputs, or None (see :func:`gan_step`).
        forward: what G's step passes the fakes through: ``D`` compiled, or None for ``D`` itself (the guidance
            always explains ``D``).
    """

    D: nn.Module
    cfg: Config
    d_output: str
    aug: Augment
    autocast: contextlib.AbstractContextManager
    opt_g: torch.optim.Optimizer
    weights: Callable[[torch.Tensor], torch.Tensor | None] | None = None
    forward: nn.Module | None = None

    @property
    def net(self) -> nn.Module:
        """The module G's loss runs through (:attr:`forward`, else :attr:`D`)."""
        return self.forward if self.forward is not None else self.D

    def weigh(self, scores: torch.Tensor, guided: torch.Tensor | None) -> torch.Tensor | None:
        """The product of the guidance's weights (``guided``) and :attr:`weights` of ``scores``; None: all 1."""
        mine = self.weights(scores.detach()) if self.weights is not None else None
        if mine is None or guided is None:
            return guided if mine is None else mine
        return guided * mine

    def __call__(self, fake: torch.Tensor, guidance: Guidance | None) -> torch.Tensor:
        """G's loss and its backward pass, with ``guidance`` reshaping G's gradient at ``fake`` (None: plain)."""
        weights = None
        if guidance is not None:
            fake = guidance(fake.float(), self.D)
            if isinstance(guidance, XAIGuidance):
                weights = guidance.loss_weights()  # per-sample weights of G's loss (use="weight"), else None
        with frozen(self.D):  # G's step needs D's input gradients only, not its weight gradients (a third of D's)
            with self.autocast:
                d_gen = self.net(self.aug(fake)).float()
            weights = self.weigh(d_gen, weights)
            loss_g = g_loss(self.cfg.loss, d_gen, self.cfg.g_target, self.d_output, weights)
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
        return loss_g

    def shared(self, fake: torch.Tensor, guidance: XAIGuidance) -> torch.Tensor:
        """G's backward pass with a saliency guidance read from this step's own pass of D (``explain_mode="step"``).

        D's outputs depend on each sample alone (no BatchNorm), so one backward pass of their sum gives each sample's
        ``d out_i / d x_i``. G's loss gradient at the image is ``d loss / d out_i`` times it, and the saliency is
        ``|d target / d out_i|`` times it: selection, explanation and G's gradient from one forward and one backward of
        D, where the plain G step also needs one of each.
        """
        D, aug, autocast = self.D, self.aug, self.autocast
        x = fake.detach().float().requires_grad_(True)
        with frozen(D), torch.enable_grad():
            with autocast:
                out = self.net(aug(x))
            out = out.float()
            if out.numel() != len(x):
                raise ConfigError(
                    f"explain_mode 'step' needs one output per sample from D, got shape {tuple(out.shape)}"
                )
            (jacobian,) = torch.autograd.grad(out.sum(), x)
            o = out.detach().requires_grad_(True)
            loss_g = g_loss(self.cfg.loss, o, self.cfg.g_target, self.d_output, self.weigh(o, None))
            (d_out,) = torch.autograd.grad(loss_g, o)
        grad = d_out.reshape(-1, *([1] * (x.dim() - 1))) * jacobian
        grad = guidance.scale_gradient(grad, x.detach(), D, out.detach(), jacobian)
        self.opt_g.zero_grad(set_to_none=True)
        fake.backward(grad.to(fake.dtype))
        return loss_g.detach()

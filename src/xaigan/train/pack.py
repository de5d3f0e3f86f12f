"""Many seeds of one cell in one process: K members' G and D trained as one batched model.

Parameters are stacked along a new leading dimension ``(K, ...)``, inputs are ``(K, B, ...)``, a Linear layer is one
batched product. Member ``k`` draws its noise and dropout masks from its own ``torch.Generator`` in the order and
shapes the lone step (:func:`xaigan.train.step.gan_step`) draws them from the global one; the gradient of the sum of
the members' losses is each member's own, and Adam is elementwise: member ``k`` trains as its seed trains alone (on
a CPU within float rounding; on CUDA its dropout masks come from ``bernoulli_``, not a lone run's fused kernel).

Supported: nets that are a ``Sequential`` of Linear, elementwise activations, Dropout, Flatten and Unflatten (the
paper's MLP pair), fp32, no guidance, no augmentation. :meth:`Pack.member_state` and :meth:`Pack.load_member`
speak a lone run's checkpoint format, so a lone checkpoint can join a pack and a member can continue alone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from xaigan.config import Config
from xaigan.errors import InputError
from xaigan.explain import resolve_output
from xaigan.models import MLPDiscriminator, MLPGenerator
from xaigan.train.losses import d_loss, g_loss, prob_real
from xaigan.train.step import frozen, make_optimizers, unwrapped

Weights = Callable[[torch.Tensor], torch.Tensor | None]  # per-sample weights of G's loss from D's scores
# Parameter-free layers that act on each element alone: they run on (K, B, ...) as they are.
ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.GELU, nn.SiLU, nn.Identity)
SUPPORTED = (nn.Linear, nn.Dropout, nn.Flatten, nn.Unflatten, *ELEMENTWISE)
# Module classes whose forward is ``self.net(x)`` and nothing else.
NET_WRAPPERS = (MLPGenerator, MLPDiscriminator)
UNSUPPORTED = "--pack supports Sequential nets of Linear, activations, Dropout, Flatten/Unflatten"


def sequential_of(model: nn.Module) -> nn.Sequential:
    """The ``Sequential`` that ``model`` runs: ``model`` itself, or the ``.net`` of the MLP classes.

    Args:
        model: a generator or discriminator (inside any ``torch.compile`` or DistributedDataParallel wrapper).

    Returns:
        The Sequential whose layers :class:`PackedNet` runs.

    Raises:
        InputError: not such a net, or a layer, buffer, hook or parametrisation the pack cannot run (named).
    """
    model = unwrapped(model)
    if type(model).forward is nn.Sequential.forward:
        seq = model
    elif any(type(model).forward is cls.forward for cls in NET_WRAPPERS) and isinstance(model.net, nn.Sequential):
        seq = model.net
    else:
        raise InputError(f"{UNSUPPORTED}; got {type(model).__name__}, whose forward is not a Sequential's")
    outside = {id(p) for p in model.parameters()} - {id(p) for p in seq.parameters()}
    if outside:
        raise InputError(f"{UNSUPPORTED}; {type(model).__name__} has parameters outside its Sequential")
    for name, module in model.named_modules():
        where = f"{type(model).__name__}.{name}" if name else type(model).__name__
        if parametrize.is_parametrized(module):
            raise InputError(f"{UNSUPPORTED}; {where} is parametrised (spectral normalisation?)")
        if module._forward_hooks or module._forward_pre_hooks:
            raise InputError(f"{UNSUPPORTED}; {where} has forward hooks")
    if any(True for _ in model.buffers()):
        raise InputError(f"{UNSUPPORTED}; {type(model).__name__} has buffers (running statistics?)")
    for layer in seq:
        if type(layer) not in SUPPORTED:
            raise InputError(f"{UNSUPPORTED}; got {type(layer).__name__}")
    return seq


def check_packable(cfg: Config) -> None:
    """Refuse the settings a pack cannot train.

    Args:
        cfg: the cell's config (``precision`` and ``compile`` resolved, as the trainer does first).

    Raises:
        InputError: guidance, augmentation, a precision other than fp32, or compiled training passes.
    """
    if cfg.xai != "none":
        raise InputError(f"--pack trains standard GANs only (xai none); got xai {cfg.xai}")
    if cfg.diffaugment or cfg.xai_cutout > 0:
        raise InputError("--pack trains without augmentation; got diffaugment or xai_cutout set")
    if cfg.precision != "fp32":
        raise InputError(f"--pack trains in fp32 only; got precision {cfg.precision}")
    if cfg.compile == "true":
        raise InputError("--pack does not compile its training passes; got compile true")


class PackedNet(nn.Module):
    """K members' copies of one Sequential net, each parameter stacked to ``(K, *shape)``; a Linear weight is stored
    transposed, ``(K, in, out)``, so that its batched gradient needs no copy to match its layout.

    Attributes:
        names: the lone module's parameter names (its ``state_dict`` keys), in parameter order.
        stacked: the stacked parameters, in the same order (the optimiser's parameter order too).
        transposed: the indices of the parameters stored transposed.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise InputError("a pack needs at least one member")
        seq = sequential_of(members[0])
        template = unwrapped(members[0])
        self.names = [name for name, _ in template.named_parameters()]
        shapes = [tuple(p.shape) for p in template.parameters()]
        rows = []
        for k, member in enumerate(members):
            sequential_of(member)
            named = dict(unwrapped(member).named_parameters())
            if list(named) != self.names or [tuple(p.shape) for p in named.values()] != shapes:
                raise InputError(f"pack member {k} is not the same net as member 0 (parameter names or shapes)")
            rows.append(list(named.values()))
        index = {id(p): i for i, p in enumerate(template.parameters())}
        self.transposed = {index[id(layer.weight)] for layer in seq if isinstance(layer, nn.Linear)}
        self.stacked = nn.ParameterList(
            nn.Parameter(torch.stack([self.member(i, row[i].detach()) for row in rows]).contiguous())
            for i in range(len(self.names))
        )
        self._plan: list[tuple[Any, ...]] = []
        for layer in seq:
            if isinstance(layer, nn.Linear):
                bias = index[id(layer.bias)] if layer.bias is not None else None
                self._plan.append(("linear", index[id(layer.weight)], bias))
            elif isinstance(layer, nn.Dropout):
                self._plan.append(("dropout", float(layer.p)))
            elif isinstance(layer, nn.Flatten):  # dimensions past the member dimension (negative ones stay)
                start, end = layer.start_dim + (layer.start_dim >= 0), layer.end_dim + (layer.end_dim >= 0)
                self._plan.append(("map", partial(torch.flatten, start_dim=start, end_dim=end)))
            elif isinstance(layer, nn.Unflatten):
                dim = layer.dim + (layer.dim >= 0)
                self._plan.append(("map", partial(torch.unflatten, dim=dim, sizes=tuple(layer.unflattened_size))))
            else:
                self._plan.append(("map", layer))
        self.train(template.training)

    def forward(self, x: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """Every member's net on its own rows: ``(K, B, ...)`` in, ``(K, B, ...)`` out.

        Args:
            x: the members' inputs stacked along the first dimension.
            generators: member ``k``'s dropout masks come from ``generators[k]`` (in training mode).

        Returns:
            The members' outputs stacked along the first dimension.
        """
        for step in self._plan:
            kind = step[0]
            if kind == "linear":
                x = self._linear(x, self.stacked[step[1]], None if step[2] is None else self.stacked[step[2]])
            elif kind == "dropout":
                x = self._dropout(x, step[1], generators)
            else:
                x = step[1](x)
        return x

    def member(self, i: int, t: torch.Tensor, k: int | slice = slice(None)) -> torch.Tensor:
        """Member ``k``'s slice of ``t`` (parameter ``i`` stacked, or its gradient or Adam state) as the lone module
        lays it out (a view). With ``k`` left out: one member's tensor, lone layout in, the pack's layout out."""
        return t[k].t() if i in self.transposed else t[k]

    @staticmethod
    def _linear(x: torch.Tensor, wt: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        if wt.shape[2] == 1:
            # One output (D's last layer): F.linear takes a matrix-vector path that the batched product does not
            # round like; K tiny products instead keep each member bit-identical to its lone run on a CPU.
            return torch.stack([F.linear(x[k], wt[k].t(), None if b is None else b[k]) for k in range(len(wt))])
        flat = x.reshape(len(x), -1, x.shape[-1])
        if b is None:
            out = torch.bmm(flat, wt)
        else:  # F.linear's addmm, batched (bit-identical to it on a CPU in our checks; bmm + bias is not)
            out = torch.baddbmm(b.unsqueeze(1), flat, wt)
        return out.reshape(*x.shape[:-1], wt.shape[2])

    def _dropout(self, x: torch.Tensor, p: float, generators: Sequence[torch.Generator]) -> torch.Tensor:
        # ATen's CPU dropout: no draw when p is 0 or in eval mode; else mask = bernoulli_(1 - p), mask /= 1 - p,
        # x * mask. Drawing each member's mask with its own generator gives the numbers F.dropout would draw.
        if p == 0 or not self.training:
            return x
        if p == 1:
            return x * torch.zeros((), dtype=x.dtype, device=x.device)
        masks = [
            torch.empty(x.shape[1:], dtype=x.dtype, device=x.device).bernoulli_(1 - p, generator=g) for g in generators
        ]
        return x * torch.stack(masks).div_(1 - p)

    def member_state_dict(self, k: int) -> OrderedDict[str, torch.Tensor]:
        """Member ``k``'s parameters as the lone module's ``state_dict`` (copies)."""
        return OrderedDict(
            (name, self.member(i, p, k).detach().clone(memory_format=torch.contiguous_format))
            for i, (name, p) in enumerate(zip(self.names, self.stacked))
        )

    def load_member_state_dict(self, k: int, state: dict[str, torch.Tensor]) -> None:
        """Set member ``k``'s parameters from a lone module's ``state_dict`` (the same keys, no others)."""
        if set(state) != set(self.names):
            raise InputError(f"pack member state has keys {sorted(state)}; the net's are {self.names}")
        with torch.no_grad():
            for i, (name, p) in enumerate(zip(self.names, self.stacked)):
                self.member(i, p, k).copy_(state[name])


class Pack:
    """K members of one cell (same nets and config, each its own seed) trained in lockstep as one batched model.

    Args:
        Gs: the members' generators (the same architecture, each initialised from its own seed); the pack trains
            copies of their parameters, read back with :meth:`member_state`.
        Ds: the members' discriminators.
        generators: member ``k``'s RNG: its noise and dropout masks (seed it with the global state a lone run would
            have right after building its nets), on the nets' device.
        cfg: the cell's config (:func:`check_packable`).

    Example:
        >>> import torch
        >>> from xaigan import models
        >>> cfg = Config()
        >>> members = []
        >>> for seed in (1, 2):
        ...     _ = torch.manual_seed(seed)
        ...     members.append((*models.build("mlp"), torch.Generator().set_state(torch.get_rng_state())))
        >>> pack = Pack(*zip(*members), cfg=cfg)
        >>> stats = pack.step(torch.rand(2, 8, 1, 32, 32) * 2 - 1)
        >>> len(stats), sorted(stats[0])
        (2, ['d_fake', 'd_loss', 'd_real', 'g_loss'])
    """

    def __init__(
        self,
        Gs: Sequence[nn.Module],
        Ds: Sequence[nn.Module],
        generators: Sequence[torch.Generator],
        cfg: Config,
    ) -> None:
        check_packable(cfg)
        if not len(Gs) == len(Ds) == len(generators):
            raise InputError(
                f"a pack needs one G, D and generator per member; got {len(Gs)}, {len(Ds)}, {len(generators)}"
            )
        self.cfg = cfg
        self.G = PackedNet(Gs)
        self.D = PackedNet(Ds)
        self.generators = list(generators)
        self.d_output = resolve_output(unwrapped(Ds[0]), cfg.d_output)
        self.opt_g, self.opt_d = make_optimizers(self.G, self.D, cfg)  # elementwise: K lone Adams in one

    def __len__(self) -> int:
        return len(self.generators)

    def noise(self, batch: int) -> torch.Tensor:
        """``(K, batch, noise_dim)``: each member's G input from its own generator."""
        device = self.G.stacked[0].device
        rows = [torch.randn(batch, self.cfg.noise_dim, generator=g, device=device) for g in self.generators]
        return torch.stack(rows)

    def step(self, reals: torch.Tensor, weights: Weights | None = None) -> list[dict[str, float]]:
        """One D step (``cfg.d_steps`` of them) and one G step of every member, as :func:`gan_step` takes them.

        Args:
            reals: ``(K, B, C, H, W)``: member ``k``'s batch of real images is ``reals[k]``.
            weights: ``weights(scores)`` gives ``(B,)`` weights of G's per-sample loss terms from one member's D
                outputs on its generated batch, or None (:func:`xaigan.train.weights.sample_weights`).

        Returns:
            Per member, what :func:`gan_step` returns: ``d_loss``, ``g_loss``, ``d_real`` and ``d_fake``.
        """
        if len(reals) != len(self):
            raise InputError(f"a pack of {len(self)} members needs {len(self)} real batches; got {len(reals)}")
        cfg, gens, members = self.cfg, self.generators, range(len(self))
        batch = reals.shape[1]
        labels = (cfg.label_real, cfg.label_fake)
        for _ in range(cfg.d_steps):
            with torch.no_grad():
                fake = self.G(self.noise(batch), gens)
            d_real, d_fake = self.D(reals, gens), self.D(fake, gens)  # separately: the lone fp32 step's mask order
            losses_d = torch.stack([d_loss(cfg.loss, d_real[k], d_fake[k], labels, self.d_output) for k in members])
            self.opt_d.zero_grad(set_to_none=True)
            losses_d.sum().backward()  # members share no parameter: each gets its own loss's gradient
            self.opt_d.step()

        fake = self.G(self.noise(batch), gens)
        with frozen(self.D):
            d_gen = self.D(fake, gens)
            terms = []
            for k in members:
                w = weights(d_gen[k].detach()) if weights is not None else None
                terms.append(g_loss(cfg.loss, d_gen[k], cfg.g_target, self.d_output, w))
            losses_g = torch.stack(terms)
            self.opt_g.zero_grad(set_to_none=True)
            losses_g.sum().backward()
        if cfg.g_clip > 0:
            self._clip_g(cfg.g_clip)
        self.opt_g.step()
        p_real, p_fake = ([prob_real(d[k], self.d_output).mean() for k in members] for d in (d_real, d_fake))
        columns = {"d_loss": losses_d, "g_loss": losses_g, "d_real": torch.stack(p_real), "d_fake": torch.stack(p_fake)}
        values = {name: col.detach().tolist() for name, col in columns.items()}
        return [{name: values[name][k] for name in columns} for k in members]

    def _clip_g(self, max_norm: float) -> None:
        """``clip_grad_norm_`` for each member over its own G gradients: the same norm (summed in another order, so
        equal within rounding), coefficient and product, in one reduction per parameter for all members."""
        grads = [p.grad for p in self.G.stacked if p.grad is not None]
        if not grads:
            return
        norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads], dim=1)
        coef = torch.clamp(max_norm / (torch.linalg.vector_norm(norms, dim=1) + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef.reshape(-1, *([1] * (g.dim() - 1))))

    def member_state(self, k: int) -> dict[str, Any]:
        """Member ``k`` as a lone run holds it: copies, in the format of a lone checkpoint's entries.

        Args:
            k: the member.

        Returns:
            ``"G"``, ``"D"``: the lone modules' ``state_dict`` s; ``"opt_g"``, ``"opt_d"``: what the lone optimisers'
            ``state_dict()`` would be after the same steps; ``"rng"``: the member generator's state (a ByteTensor:
            the ``"torch"`` entry of :func:`xaigan.train.checkpoint.rng_state` for a member continuing alone).
        """
        return {
            "G": self.G.member_state_dict(k),
            "D": self.D.member_state_dict(k),
            "opt_g": _member_optimizer_state(self.opt_g, self.G, k),
            "opt_d": _member_optimizer_state(self.opt_d, self.D, k),
            "rng": self.generators[k].get_state(),
        }

    def load_member(self, k: int, state: dict[str, Any]) -> None:
        """Set member ``k`` from :meth:`member_state`'s format (a lone checkpoint's ``G``, ``D``, ``opt_g``,
        ``opt_d`` and ``rng``; ``rng`` may also be :func:`~xaigan.train.checkpoint.rng_state`'s dict).

        Adam counts its steps once for all members, so every member must be at the same step: load each member of
        a fresh pack before its first :meth:`step`.

        Args:
            k: the member.
            state: the member's state.

        Raises:
            InputError: parameter names or an Adam step count that do not fit the pack.
        """
        self.G.load_member_state_dict(k, state["G"])
        self.D.load_member_state_dict(k, state["D"])
        _load_member_optimizer_state(self.opt_g, self.G, k, state["opt_g"])
        _load_member_optimizer_state(self.opt_d, self.D, k, state["opt_d"])
        rng = state["rng"]
        self.generators[k].set_state(rng["torch"] if isinstance(rng, dict) else rng)


def _member_optimizer_state(opt: torch.optim.Optimizer, net: PackedNet, k: int) -> dict[str, Any]:
    packed = opt.state_dict()
    contiguous = torch.contiguous_format
    state = {
        i: {
            key: v.clone() if key == "step" else net.member(i, v, k).clone(memory_format=contiguous)
            for key, v in entry.items()
        }
        for i, entry in packed["state"].items()
    }
    groups = [{**group, "params": list(group["params"])} for group in packed["param_groups"]]
    return {"state": state, "param_groups": groups}


def _load_member_optimizer_state(opt: torch.optim.Optimizer, net: PackedNet, k: int, member: dict[str, Any]) -> None:
    params = [p for group in opt.param_groups for p in group["params"]]
    n = sum(len(group["params"]) for group in member["param_groups"])
    if n != len(params):
        raise InputError(f"optimiser state for {n} parameters; this pack's net has {len(params)}")
    with torch.no_grad():
        for i, p in enumerate(params):
            entry = member["state"].get(i)
            mine = opt.state.get(p)
            if entry is None:
                if mine:
                    raise InputError(f"pack member {k} has no Adam state, the pack is at step {int(mine['step'])}")
                continue
            if not mine:  # a fresh pack: zeros for the members not loaded yet
                mine = opt.state[p] = {key: torch.zeros_like(p) for key in entry if key != "step"}
                mine["step"] = entry["step"].clone()
            elif float(mine["step"]) != float(entry["step"]):
                raise InputError(
                    f"pack member {k} is at Adam step {int(entry['step'])}, the pack at {int(mine['step'])}: "
                    "pack members at the same step"
                )
            for key, value in entry.items():
                if key != "step":
                    net.member(i, mine[key], k).copy_(value)

"""Read a model as a plain chain of layers (``torch.fx``), for the fast DeepLIFT and LIME paths.

A model is a *chain* when its traced graph is ``input -> op_1 -> op_2 -> ... -> output`` where every op takes
the previous op's result as its only tensor argument and nothing else uses it (no skip connections). Ops are
``torch.nn`` leaf modules or shape-only calls (``view``, ``reshape``, ``flatten``, ...). Anything else (control
flow fx cannot trace, functional activations, residuals, randomness) means "not a chain": callers then use
the general (captum / plain forward) path instead, which is always correct, just slower.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, fx, nn

_SHAPE_METHODS = {"view", "reshape", "flatten", "squeeze", "unsqueeze", "contiguous"}
_SHAPE_FUNCTIONS = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze}


@dataclass
class Step:
    """One op of a chain: ``module`` for an ``nn.Module`` call, ``None`` for a shape-only op."""

    fn: Callable[[Tensor], Tensor]
    module: nn.Module | None = None

    @property
    def is_shape(self) -> bool:
        return self.module is None or isinstance(self.module, (nn.Flatten, nn.Unflatten))


def _method(name: str, args: tuple, kwargs: dict) -> Callable[[Tensor], Tensor]:
    return lambda t: getattr(t, name)(*args, **kwargs)


def _function(fn: Callable, args: tuple, kwargs: dict) -> Callable[[Tensor], Tensor]:
    return lambda t: fn(t, *args, **kwargs)


def _mentions_node(value: object) -> bool:
    found = []
    fx.node.map_arg(value, lambda n: found.append(n))
    return bool(found)


def trace_chain(model: nn.Module) -> list[Step] | None:
    """The model's ops in order, or ``None`` when it is not a plain chain (see the module docstring).

    The steps call the model's own submodules (the same objects), so they always use the current weights and
    the current train/eval flags; trace under the mode you will run in (fx resolves ``if self.training``).
    """
    try:
        gm = fx.symbolic_trace(model)
    except Exception:
        return None
    steps: list[Step] = []
    prev: fx.Node | None = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if prev is not None:
                return None
            prev = node
            continue
        if prev is None or len(prev.users) != 1:
            return None
        if node.op == "output":
            return steps if node.args[0] is prev else None
        if not node.args or node.args[0] is not prev or _mentions_node((node.args[1:], node.kwargs)):
            return None
        args, kwargs = tuple(node.args[1:]), dict(node.kwargs)
        if node.op == "call_module":
            if args or kwargs:
                return None
            module = gm.get_submodule(node.target)
            steps.append(Step(module, module))
        elif node.op == "call_method" and node.target in _SHAPE_METHODS:
            steps.append(Step(_method(node.target, args, kwargs)))
        elif node.op == "call_function" and node.target in _SHAPE_FUNCTIONS:
            steps.append(Step(_function(node.target, args, kwargs)))
        else:
            return None
        prev = node
    return None


def run_steps(steps: list[Step], x: Tensor) -> Tensor:
    for step in steps:
        x = step.fn(x)
    return x


def flattens_to_linear(steps: list[Step], sample_shape: torch.Size) -> int | None:
    """Index of the first step when it is an ``nn.Linear`` fed by a row-major flatten of the image, else None.

    Checked by pushing a probe image ``0, 1, 2, ...`` through the shape-only steps before the Linear.
    """
    k = 0
    while k < len(steps) and steps[k].is_shape:
        k += 1
    if k == len(steps) or type(steps[k].module) is not nn.Linear:
        return None
    numel = int(torch.Size(sample_shape).numel())
    probe = torch.arange(numel, dtype=torch.float64).view(1, *sample_shape)
    try:
        flat = run_steps(steps[:k], probe)
    except Exception:
        return None
    if flat.shape != (1, numel) or not torch.equal(flat.view(-1), probe.view(-1)):
        return None
    return k

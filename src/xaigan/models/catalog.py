"""The registered generator/discriminator pairs, your own (``package.module:function``), and :func:`build`."""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from xaigan.errors import InputError
from xaigan.models.dcgan import DCGANDiscriminator, DCGANGenerator
from xaigan.models.mlp import SMALL_D, SMALL_G, MLPDiscriminator, MLPGenerator
from xaigan.models.sngan import SNGANDiscriminator, SNGANGenerator, spectral_norm, without_spectral_norm
from xaigan.registry import Registry

Builder = Callable[[int, int, int], tuple[nn.Module, nn.Module]]
"""``(channels, image_size, noise_dim) -> (G, D)``."""

REGISTRY: Registry[Builder] = Registry("model")
REGISTRY.register("mlp", lambda c, s, z: (MLPGenerator(c, s, z), MLPDiscriminator(c, s)))
REGISTRY.register(
    "mlp-small", lambda c, s, z: (MLPGenerator(c, s, z, widths=SMALL_G), MLPDiscriminator(c, s, widths=SMALL_D))
)
REGISTRY.register("dcgan", lambda c, s, z: (DCGANGenerator(c, s, z), DCGANDiscriminator(c, s)))
REGISTRY.register("sngan", lambda c, s, z: (SNGANGenerator(c, s, z), SNGANDiscriminator(c, s)))
REGISTRY.register(
    "sngan-small", lambda c, s, z: (SNGANGenerator(c, s, z, width=16), SNGANDiscriminator(c, s, width=16))
)


def available() -> list[str]:
    """The registered model names, sorted."""
    return REGISTRY.names()


def is_import_path(name: str) -> bool:
    """Whether ``name`` names your own builder, ``package.module:function``."""
    module, _, function = name.partition(":")
    return bool(module) and bool(function) and all(p.isidentifier() for p in (*module.split("."), function))


def load_builder(name: str) -> Builder:
    """The callable ``package.module:function`` names, imported (the current folder is searched too, as ``python -m``
    would: a file ``mynets.py`` beside you is ``mynets:build``).

    Raises:
        xaigan.errors.InputError: the module cannot be imported, or has no such callable (one line).
    """
    module_name, _, function = name.partition(":")
    try:
        module = _import(module_name)
    except Exception as exc:  # a user's module may fail in any way while it imports
        raise InputError(f"model {name}: cannot import {module_name} ({type(exc).__name__}: {exc})") from exc
    builder = getattr(module, function, None)
    if not callable(builder):
        raise InputError(f"model {name}: {module_name} has no callable {function!r}")
    return builder


def _import(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        here = os.getcwd()
        if not (exc.name and module_name.startswith(exc.name)) or here in sys.path:
            raise
        sys.path.append(here)
        return importlib.import_module(module_name)


def source(name: str) -> dict[str, str] | None:
    """For your own builder: its import path, the module's file and that file's sha256 (what a run records)."""
    if not is_import_path(name):
        return None
    module = sys.modules.get(name.partition(":")[0]) or _import(name.partition(":")[0])
    path = getattr(module, "__file__", None)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else ""
    return {"import": name, "file": str(path or ""), "sha256": digest}


def build(
    name: str, channels: int = 1, image_size: int = 32, noise_dim: int = 100, spectral: str = "model"
) -> tuple[nn.Module, nn.Module]:
    """``(G, D)`` for a registered model name or your own builder.

    Args:
        name: a registered model (:func:`available`; another name is an
            :class:`~xaigan.registry.UnknownNameError`), or ``package.module:function``: any importable callable
            ``function(channels, image_size, noise_dim) -> (G, D)``.
        channels: image channels.
        image_size: image side in pixels (``dcgan`` needs 4 * 2^k; another size is an
            :class:`~xaigan.errors.InputError`).
        noise_dim: length of G's noise vector.
        spectral: spectral normalisation of D: ``"model"``, as the model builds it (sngan: normalised, the others
            not); ``"on"``: every convolution and dense layer of D normalised; ``"off"``: none.

    Returns:
        The generator and the discriminator.

    Example:
        >>> G, D = build("sngan-small", channels=1, image_size=32)
        >>> tuple(D(G(torch.randn(2, 100))).shape)
        (2, 1)
    """
    builder = load_builder(name) if is_import_path(name) else REGISTRY.get(name)
    built = builder(channels, image_size, noise_dim)
    if not (isinstance(built, tuple) and len(built) == 2 and all(isinstance(m, nn.Module) for m in built)):
        raise InputError(f"model {name} must return (G, D), two torch modules; got {type(built).__name__}")
    G, D = built
    if spectral == "on":
        spectral_norm(D)
    elif spectral == "off":
        without_spectral_norm(D)
    return G, D

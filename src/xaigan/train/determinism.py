"""Deterministic algorithms for a run that asks for them (``deterministic: true``).

A CPU run of ours is bit-identical when killed and resumed without this. On a CUDA GPU nothing pins the algorithms:
cuBLAS may split a matmul's reduction differently from call to call, cuDNN's autotuner may pick another convolution
algorithm after a restart, and atomics make some backward kernels order-dependent. :func:`deterministic` switches
all three off for the block and puts the process's settings back afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

# A fixed cuBLAS workspace (the value PyTorch's reproducibility notes give); read when cuBLAS first runs in the
# process, so set before the first matmul on the GPU.
CUBLAS_WORKSPACE = ":4096:8"


def set_cublas_workspace() -> None:
    """Set ``CUBLAS_WORKSPACE_CONFIG`` for this process unless the user set it (any of cuBLAS' fixed values is
    deterministic)."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


@contextlib.contextmanager
def deterministic(enabled: bool) -> Iterator[None]:
    """Inside the block: PyTorch's deterministic algorithms (an operation that has none raises), the cuBLAS
    workspace fixed, cuDNN's autotuner off and its deterministic kernels on; the previous settings come back after.

    Args:
        enabled: switch them on; False leaves everything as it is.

    Example:
        >>> with deterministic(True):
        ...     torch.are_deterministic_algorithms_enabled()
        True
        >>> torch.are_deterministic_algorithms_enabled()
        False
    """
    if not enabled:
        yield
        return
    set_cublas_workspace()
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
    )
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        algorithms, warn_only, torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before
        torch.use_deterministic_algorithms(algorithms, warn_only=warn_only)

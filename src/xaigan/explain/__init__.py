"""Explanations of the discriminator's verdict, one call per batch.

>>> maps = explain("saliency", D, x)              # maps.shape == x.shape
>>> available()
['deeplift', 'deeplift-shap', 'input-x-gradient', 'integrated-gradients', 'integrated-gradients-real', 'lime',
 'saliency', 'smoothgrad']

``D`` maps images ``(B, C, H, W)`` in [-1, 1] to one score per sample: a logit (our built-in models) or a
probability of "real" (a D ending in ``nn.Sigmoid``, the paper's own D). ``d_output`` says which (``"auto"``,
the default, detects a final Sigmoid, see :func:`detect_output`). By default :func:`explain` explains what D
returns, as captum does; ``target="prob"`` explains the probability of real and ``target="logit"`` the logit,
each computed correctly for both kinds of D (see :class:`ExplainedModel`). Every explainer leaves D as it found it
(see :func:`protected`): no parameter gradients, BatchNorm statistics or train/eval flags change. Explanations
are computed with D in eval mode unless ``mode="train"`` (the original's behaviour: dropout on, BatchNorm on the
batch's statistics, which then also couple the samples of a batch).

Explainers are registered with their settings (:mod:`xaigan.explain.catalog`); RNG use: :mod:`xaigan.explain.dispatch`.
"""

from xaigan.explain._base import (
    ExplainedModel,
    detect_output,
    has_batchnorm,
    protected,
    resolve_mode,
    resolve_output,
    target_of_output,
)
from xaigan.explain.catalog import REGISTRY, Explainer, ExplainerInfo, available, get, info, register
from xaigan.explain.deeplift import deeplift, deeplift_shap
from xaigan.explain.dispatch import explain
from xaigan.explain.gradients import input_x_gradient, integrated_gradients, integrated_gradients_real, smoothgrad
from xaigan.explain.lime import lime
from xaigan.explain.saliency import saliency
from xaigan.settings import MODES, OUTPUTS, PRECISIONS, TARGETS

__all__ = [
    "MODES",
    "OUTPUTS",
    "PRECISIONS",
    "REGISTRY",
    "TARGETS",
    "ExplainedModel",
    "Explainer",
    "ExplainerInfo",
    "available",
    "deeplift",
    "deeplift_shap",
    "detect_output",
    "explain",
    "get",
    "info",
    "input_x_gradient",
    "integrated_gradients",
    "integrated_gradients_real",
    "lime",
    "protected",
    "register",
    "has_batchnorm",
    "resolve_mode",
    "resolve_output",
    "saliency",
    "smoothgrad",
    "target_of_output",
]

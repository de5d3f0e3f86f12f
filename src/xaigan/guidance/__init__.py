"""xAI guidance: reshape the generator's gradient at the generated image with an explanation of D's verdict.

``fake = guidance.apply(fake, mask, alpha)`` is the identity in the forward pass; in the backward pass it
multiplies the incoming gradient by ``1 + alpha * mask`` (xAI-GAN, Nagisetty et al., arXiv 2002.10438).

:class:`XAIGuidance` is what a trainer uses in the generator step::

    guide = XAIGuidance("saliency", alpha=0.2)
    fake = guide(G(z), D)                 # explains, selects, normalises, wraps with apply()
    loss = bce_with_logits(D(fake), real_labels); loss.backward()
    guide.stats, guide.last_mask          # for logging and heat-maps
    guide.drain_events()                  # health warnings (e.g. nothing explained for `patience` steps)

D may return logits or probabilities (a D ending in ``nn.Sigmoid``): see ``d_output``. :class:`Guidance` is the
protocol a trainer codes against.

Fidelity notes on the original code (explainable-gan/XAIGAN, ``utils/explanation_utils.py``): it filled a
batch-shaped tensor with 1.0, wrote the explanations of the samples D scored as fake (``D(x) < 0.5``) into it,
min-max normalised that *whole* tensor (so the 1.0 fill takes part in the min and max) and turned NaN (constant
tensor) into 0. It skipped batches with fewer than two fake samples (then the mask is all 0: no change). Its hook
sat on the Tanh of G's output block and so scaled the gradient before the Tanh; the Tanh is element-wise, so this
is the same as scaling the gradient at the image, which is what we do.
"""

from xaigan.guidance.gradient import apply, scale
from xaigan.guidance.health import GuidanceHealthError
from xaigan.guidance.masks import combine_prior, load_prior, minmax, normalize
from xaigan.guidance.protocol import Guidance
from xaigan.guidance.xai import XAIGuidance

__all__ = [
    "Guidance",
    "GuidanceHealthError",
    "XAIGuidance",
    "apply",
    "combine_prior",
    "load_prior",
    "minmax",
    "normalize",
    "scale",
]

"""Allowed values of the training's own settings that code below the configuration also reads."""

LOSSES = ("bce-smoothed", "ns", "hinge")  # the GAN losses (xaigan.train.losses)
SPECTRAL_NORM = ("model", "on", "off")  # spectral normalisation of D (xaigan.models.build)
ADAM = ("auto", "foreach", "fused")  # Adam's implementation (xaigan.train.step.make_optimizers)
COMPILE = ("false", "true", "auto")  # torch.compile of G's and D's training passes (xaigan.train.runtime)

"""Allowed values of the training's own settings that code below the configuration also reads."""

LOSSES = ("bce-smoothed", "ns", "hinge")  # the GAN losses (xaigan.train.losses)

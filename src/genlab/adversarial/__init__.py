"""Adversarial training (the GAN family's math): losses and penalties, differentiable
augmentation and mode-collapse monitoring. The model is :class:`genlab.models.gan.GAN`,
its networks are in :mod:`genlab.nn.gan`.
"""

from .augment import POLICIES, diff_augment, parse_policy
from .losses import LOSSES, discriminator_loss, generator_loss, gradient_penalty, r1_penalty
from .monitor import CollapseReport, collapse_report, nearest_mode

__all__ = [
    "POLICIES",
    "LOSSES",
    "CollapseReport",
    "collapse_report",
    "diff_augment",
    "discriminator_loss",
    "generator_loss",
    "gradient_penalty",
    "nearest_mode",
    "parse_policy",
    "r1_penalty",
]

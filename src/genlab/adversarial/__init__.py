"""Adversarial training (the GAN family's math): losses and penalties, differentiable
augmentation, mode-collapse monitoring and the image clusters of self-conditioning. The model is :class:`genlab.models.gan.GAN`,
its networks are in :mod:`genlab.nn.gan`.
"""

from .augment import POLICIES, diff_augment, parse_policy
from .clusters import ImageClusters, assign_clusters, fit_clusters
from .losses import LOSSES, discriminator_loss, generator_loss, gradient_penalty, r1_penalty
from .monitor import CollapseReport, collapse_report, nearest_mode

__all__ = [
    "POLICIES",
    "LOSSES",
    "CollapseReport",
    "ImageClusters",
    "assign_clusters",
    "collapse_report",
    "diff_augment",
    "fit_clusters",
    "discriminator_loss",
    "generator_loss",
    "gradient_penalty",
    "nearest_mode",
    "parse_policy",
    "r1_penalty",
]

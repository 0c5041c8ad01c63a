"""Generative models: one contract (:mod:`.base`), a registry, one module per family."""

from .base import GenerativeModel
from .gaussian import Gaussian
from .gmm import GaussianMixture
from .kde import KernelDensity
from .registry import get_model_class, list_models, make_model, register
from .uniform import UniformNoise

__all__ = [
    "GenerativeModel",
    "UniformNoise",
    "Gaussian",
    "GaussianMixture",
    "KernelDensity",
    "make_model",
    "list_models",
    "get_model_class",
    "register",
]

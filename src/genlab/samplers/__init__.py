"""Latent samplers: where an autoencoder's codes come from when it generates.

A latent sampler is fitted on codes (N, d) and draws new codes; it knows nothing about
the model that made the codes (as in pythae), so any latent-variable model can use it:

* :class:`PriorSampler` ("prior") — the standard normal prior N(0, I);
* :class:`GaussianMixtureSampler` ("gmm") — an ex-post density: a Gaussian mixture fitted
  by EM on the training codes (Ghosh et al. 2020, "From variational to deterministic
  autoencoders"), which avoids decoding codes from prior regions the encoder never uses;
* :class:`ClassConditionalSampler` ("per_class") — one of those per class label, p(z | y),
  for class-conditional autoencoders (``fit(codes, labels)``, ``sample(n, labels=...)``).

Fitted state is a dict of JSON values and tensors (:meth:`LatentSampler.get_state`), so
a model can save it with its other fitted attributes; :func:`sampler_from_state` rebuilds it.
"""

from .base import LATENT_SAMPLERS, LatentSampler, make_latent_sampler, sampler_from_state
from .conditional import ClassConditionalSampler
from .gmm import GaussianMixtureSampler
from .prior import PriorSampler

__all__ = [
    "LATENT_SAMPLERS",
    "LatentSampler",
    "make_latent_sampler",
    "sampler_from_state",
    "ClassConditionalSampler",
    "GaussianMixtureSampler",
    "PriorSampler",
]

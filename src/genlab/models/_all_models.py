"""Importing this module registers every model family."""

from . import gaussian, gmm, kde, uniform  # noqa: F401
from . import diffusion  # noqa: F401
from . import vae, wae  # noqa: F401  (autoencoder family)
from . import gan  # noqa: F401  (adversarial family)
from . import flow, flow_matching  # noqa: F401  (normalizing flows, flow matching)

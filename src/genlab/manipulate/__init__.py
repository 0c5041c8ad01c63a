"""Latent-space manipulation for models with an encoder and a decoder (VAE, CVAE, WAE).

The functions take any fitted model with ``encode(X, y=None) -> (N, d)`` codes and
``decode(Z, y=None) -> uint8 images`` (the autoencoder family):

* :func:`interpolate` — decode codes on the line (or great circle, ``mode="slerp"``)
  between two images' codes; :func:`interpolate_codes` is the code-space part alone.
* :func:`attribute_vector` / :func:`apply_attribute` — the mean code of images with
  label A minus that of label B, added to other images' codes (White 2016,
  "Sampling generative networks").
* :func:`pick_image` — the i-th image of a dataset, or the first one with a label
  (what ``genlab interpolate --from-label 3`` needs).
"""

from .attributes import apply_attribute, attribute_vector
from .interpolation import INTERPOLATION_MODES, interpolate, interpolate_codes, pick_image, slerp

__all__ = [
    "INTERPOLATION_MODES",
    "apply_attribute",
    "attribute_vector",
    "interpolate",
    "interpolate_codes",
    "pick_image",
    "slerp",
]

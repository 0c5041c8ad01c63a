"""Reusable network blocks for the neural model families.

* :class:`ConvEncoder` / :class:`ConvDecoder` — images <-> vectors, sized from the image shape
* :class:`MLP` — fully connected block
* :class:`SinusoidalEmbedding`, :class:`TimestepEmbedding` — diffusion time steps
* :class:`LabelEmbedding` — class labels with a "null" class for classifier-free guidance
"""

from .conv import ConvBlock, ConvDecoder, ConvEncoder, ConvPlan, conv_plan
from .embeddings import LabelEmbedding, SinusoidalEmbedding, TimestepEmbedding, sinusoidal_embedding
from .layers import MLP, count_parameters, group_count, make_activation, make_norm1d, make_norm2d, zero_init_

__all__ = [
    "ConvBlock",
    "ConvDecoder",
    "ConvEncoder",
    "ConvPlan",
    "conv_plan",
    "LabelEmbedding",
    "SinusoidalEmbedding",
    "TimestepEmbedding",
    "sinusoidal_embedding",
    "MLP",
    "count_parameters",
    "group_count",
    "make_activation",
    "make_norm1d",
    "make_norm2d",
    "zero_init_",
]

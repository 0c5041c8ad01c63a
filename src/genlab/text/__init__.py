"""Text for text-to-image: an offline sentence encoder and captions for digit datasets."""

from .captions import (
    HELD_OUT_PROMPTS,
    HELD_OUT_TARGETS,
    HELD_OUT_WORDS,
    attribute_levels,
    auto_captions,
    digit_captions,
    is_digit_dataset,
    measure_digit_attributes,
)
from .encoder import DEFAULT_MODEL, TextEncoder, resolve_model

__all__ = [
    "TextEncoder",
    "DEFAULT_MODEL",
    "resolve_model",
    "measure_digit_attributes",
    "attribute_levels",
    "digit_captions",
    "auto_captions",
    "is_digit_dataset",
    "HELD_OUT_PROMPTS",
    "HELD_OUT_TARGETS",
    "HELD_OUT_WORDS",
]

"""Moved to :mod:`genlab.validation` (below every layer that checks inputs); this module
re-exports it for code that still imports ``genlab.models.validation``."""

from ..validation import (
    as_integer_array,
    check_choice,
    check_float,
    check_images,
    check_int,
    check_labels,
    check_n_samples,
    class_values,
    encode_labels,
)

__all__ = [
    "as_integer_array",
    "check_choice",
    "check_float",
    "check_images",
    "check_int",
    "check_labels",
    "check_n_samples",
    "class_values",
    "encode_labels",
]

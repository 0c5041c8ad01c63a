"""Importing this module registers every model family."""

from . import gaussian, gmm, kde, uniform  # noqa: F401

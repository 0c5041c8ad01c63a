"""``genlab serve``: a local web app over :mod:`genlab.service` — browse and compare runs,
train with live progress, generate, edit and evaluate (see :func:`create_app`)."""

from __future__ import annotations

from .app import create_app
from .limits import LIMITS

__all__ = ["create_app", "LIMITS"]

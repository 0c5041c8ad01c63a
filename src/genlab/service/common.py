"""Helpers shared by the service functions."""

from __future__ import annotations

from typing import Callable

#: receives one human-readable progress line at a time (``print``, ``click.echo``, a log, a web socket)
Echo = Callable[[str], None]


def silent(_: str = "") -> None:
    """The default ``echo``: say nothing."""


def load_data(spec: str, size: int | None = None, captions: str | None = None):
    """The dataset ``spec`` (see :func:`genlab.data.load_dataset`)."""
    from ..data import load_dataset

    return load_dataset(spec, size=size, captions=captions)

"""User-facing errors.

Anything a user can cause with bad input (a missing file, a wrong shape, an unknown
name) raises :class:`GenlabError`. The CLI prints its message as one line on stderr
and exits with code 2; library users catch it like any ``ValueError``.
"""

from __future__ import annotations


class GenlabError(ValueError):
    """Bad input or an impossible request; the message says what and where."""


class DownloadError(GenlabError):
    """A dataset file could not be fetched or failed its checksum."""


class GenlabWarning(UserWarning):
    """A result genlab computed but changed or limited in a way the user should know about
    (e.g. a prompt cut to the text encoder's token window)."""

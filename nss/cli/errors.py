"""The error every command-line check raises."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """A bad command line or an unsupported/invalid option combination.

    ``str(err)`` is a single line meant to be printed as-is on stderr.
    """

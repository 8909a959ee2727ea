"""NUIDs: the 22-character base62 unique IDs NATS and STAN use for inboxes.

A random 12-character prefix plus a 10-character sequence that advances by a
random increment, so generating one is a few integer operations rather than
a call into the OS random source for every inbox.
"""

from __future__ import annotations

import secrets

_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE = 62
_PREFIX_LEN = 12
_SEQ_LEN = 10
_MAX_SEQ = _BASE**_SEQ_LEN
_MIN_INC = 33
_MAX_INC = 333


class NUID:
    __slots__ = ("_prefix", "_seq", "_inc")

    def __init__(self) -> None:
        self._randomize_prefix()
        self._seq = secrets.randbelow(_MAX_SEQ)
        self._inc = _MIN_INC + secrets.randbelow(_MAX_INC - _MIN_INC)

    def _randomize_prefix(self) -> None:
        self._prefix = "".join(secrets.choice(_DIGITS) for _ in range(_PREFIX_LEN))

    def next(self) -> str:
        self._seq += self._inc
        if self._seq >= _MAX_SEQ:
            self._randomize_prefix()
            self._seq = secrets.randbelow(_MAX_SEQ)
            self._inc = _MIN_INC + secrets.randbelow(_MAX_INC - _MIN_INC)
        n = self._seq
        out = []
        for _ in range(_SEQ_LEN):
            n, r = divmod(n, _BASE)
            out.append(_DIGITS[r])
        return self._prefix + "".join(reversed(out))


_global = NUID()


def next_nuid() -> str:
    return _global.next()


def new_inbox() -> str:
    return "_INBOX." + _global.next()

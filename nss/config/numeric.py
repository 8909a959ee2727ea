"""Number-like tokens: integers with the NATS size suffixes, floats,
dotted IP-like strings and ISO8601 Zulu datetimes.

A token that starts like a number but turns out not to be one (``1h30m``,
``4222:x``) is read on as a bare string, exactly as ``conf/lex.go`` does;
hence these readers may return a ``str``.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

from nss.config.cursor import DIGITS, EOF, Cursor, is_blank, is_nl, show
from nss.config.strings import read_bare

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

_NUMBER_SUFFIX = frozenset("kKmMgGtTpPeE")


def _size_multipliers() -> dict[str, int]:
    """``k``=1000, ``kb``/``ki``/``kib``=1024, and so on up to ``e``."""
    mult: dict[str, int] = {"": 1}
    for i, letter in enumerate("kmgtpe", start=1):
        mult[letter] = 1000**i
        for tail in ("b", "i", "ib"):
            mult[letter + tail] = 1024**i
    return mult


_SIZE_MULT = _size_multipliers()


def ends_number(c: str) -> bool:
    return c == EOF or is_nl(c) or is_blank(c) or c in "};,]"


def read_number(cur: Cursor) -> Any:
    """``lexNumberOrDateOrStringOrIP``: at a digit."""
    start = cur.pos
    cur.advance()
    while True:
        c = cur.peek()
        if c == "-":
            if cur.pos - start != 4:
                raise cur.error("All ISO8601 dates must be in full Zulu form.")
            return _read_datetime(cur, start)
        if c in DIGITS:
            cur.advance()
            continue
        if c == ".":
            return _read_float_or_ip(cur, start)
        if c in _NUMBER_SUFFIX:
            return _read_suffixed(cur, start)
        if ends_number(c):
            return parse_integer(cur, cur.since(start))
        # 1h30m, 10s, 4222:x ...: the whole token is a string
        return read_bare(cur, cur.since(start))[0]


def read_negative_number(cur: Cursor) -> Any:
    """``lexNegNumberStart``: at the ``-``."""
    start = cur.pos
    cur.advance()  # '-'
    c = cur.peek()
    if c not in DIGITS:
        if c == ".":
            raise cur.error("Floats must start with a digit, not '.'.")
        raise cur.error(f"Expected a digit but got '{show(c)}'.")
    while True:
        c = cur.peek()
        if c in DIGITS:
            cur.advance()
            continue
        if c == ".":
            return _read_float_or_ip(cur, start)
        if c in _NUMBER_SUFFIX:
            return _read_suffixed(cur, start)
        return parse_integer(cur, cur.since(start))


def _read_suffixed(cur: Cursor, start: int) -> Any:
    """A number followed by a size suffix letter (``64MB``, ``1k``)."""
    cur.advance()  # the suffix letter
    while cur.peek() in ("b", "B", "i", "I"):
        cur.advance()
    c = cur.peek()
    if ends_number(c) or c in DIGITS:
        return parse_integer(cur, cur.since(start))
    return read_bare(cur, cur.since(start))[0]


def parse_integer(cur: Cursor, token: str) -> int:
    """An int64 with an optional size suffix; errors at the cursor's line."""
    i = 0
    while i < len(token) and (token[i] in DIGITS or token[i] == "-"):
        i += 1
    try:
        num = int(token[:i])
    except ValueError:
        raise cur.error(f"expected integer, but got '{token}'") from None
    if not INT64_MIN <= num <= INT64_MAX:
        raise cur.error(f"integer '{token}' is out of the range")
    mult = _SIZE_MULT.get(token[i:].strip().lower())
    if mult is None:
        raise cur.error(f"invalid size suffix in '{token}'")
    value = num * mult
    if not INT64_MIN <= value <= INT64_MAX:
        raise cur.error(f"integer '{token}' is out of the range")
    return value


def _read_float_or_ip(cur: Cursor, start: int) -> Any:
    cur.advance()  # '.'
    c = cur.peek()
    if c not in DIGITS:
        raise cur.error(f"Floats must have a digit after the '.', but got '{show(c)}' instead.")
    while cur.peek() in DIGITS:
        cur.advance()
    if cur.peek() == ".":
        # 127.0.0.1, 10.0.0.1:4222 ...
        while cur.peek() != EOF and (cur.peek() in DIGITS or cur.peek() in ".:-"):
            cur.advance()
        return cur.since(start)
    token = cur.since(start)
    f = float(token)
    if math.isinf(f):
        raise cur.error(f"float '{token}' is out of the range")
    return f


def _read_datetime(cur: Cursor, start: int) -> _dt.datetime:
    cur.advance()  # '-' after the year
    for f in "00-00T00:00:00Z":
        c = cur.advance()
        if f == "0":
            if c not in DIGITS:
                raise cur.error(
                    f"Expected digit in ISO8601 datetime, but found '{show(c)}' instead."
                )
        elif c != f:
            raise cur.error(f"Expected '{f}' in ISO8601 datetime, but found '{show(c)}' instead.")
    token = cur.since(start)
    try:
        dt = _dt.datetime.strptime(token, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise cur.error(f"expected Zulu formatted DateTime, but got '{token}'") from None
    return dt.replace(tzinfo=_dt.UTC)

"""Flag values read as Go's ``strconv`` reads them.

Users' scripts pass values the Go server accepted (``-p 0x1F``,
``-file_crc=T``); Python's own conversions accept and reject different
spellings.
"""

from __future__ import annotations

from nss.units import INT64_MAX, INT64_MIN

__all__ = ["parse_bool", "parse_int"]

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_bool(text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("parse error")


def parse_int(text: str) -> int:
    """``strconv.ParseInt(text, 0, 64)``: Go integer literal syntax.

    Base prefixes ``0x``/``0o``/``0b`` and a bare leading ``0`` for octal
    are accepted like in Go; Python's ``int(x, 0)`` would reject ``017`` and
    accept surrounding blanks, so we normalise first.
    """
    if not text or text != text.strip():
        raise ValueError("parse error")
    sign = ""
    body = text
    if body[0] in "+-":
        sign, body = body[0], body[1:]
    if not body or body[0] in "+-_":
        raise ValueError("parse error")
    try:
        if len(body) > 1 and body[0] == "0" and body[1] not in "xXoObB":
            # Go reads a leading 0 as an octal prefix ("017" == 15, "0_17" too).
            digits = body[2:] if body[1] == "_" else body[1:]
            if not digits or digits[0] == "_":
                raise ValueError("parse error")
            value = int(sign + digits, 8)
        else:
            value = int(sign + body, 0)
    except ValueError:
        raise ValueError("parse error") from None
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError("value out of range")
    return value

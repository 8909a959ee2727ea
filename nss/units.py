"""Value syntaxes shared by the command line and the configuration file.

The Go server leans on two parsers we must reproduce exactly so that existing
command lines and configuration files keep working unchanged:

* NATS "size" integers (``10MB``, ``1k``): the NATS configuration lexer
  accepts an integer followed by an optional unit suffix, and the streaming
  server reuses it for its size-valued flags.
* Go ``time.ParseDuration`` strings (``1h30m``, ``250ms``).

Both parsers raise ``ValueError`` on bad input; the callers turn that into
the user-facing message because the wording differs between the command
line and the configuration file.  Only the standard library is imported so
that the command line stays cheap to load.
"""

from __future__ import annotations

import math
import re

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

_K = 1000
_KI = 1024

# Decimal suffixes are powers of 1000, the "b"/"i"/"ib" variants powers of
# 1024, exactly like the NATS configuration parser.
_SIZE_SUFFIXES: dict[str, int] = {"": 1}
for _power, _letter in enumerate("kmgtpe", start=1):
    _SIZE_SUFFIXES[_letter] = _K**_power
    for _tail in ("b", "i", "ib"):
        _SIZE_SUFFIXES[_letter + _tail] = _KI**_power
del _power, _letter, _tail

_SIZE_RE = re.compile(r"\s*([+-]?[0-9]+)\s*([A-Za-z]*)\s*\Z")


def parse_size(text: str) -> int:
    """Parse a NATS size such as ``1024``, ``10k``, ``64MB`` or ``1GiB``.

    Suffixes are case-insensitive.  The result must fit in an int64, the
    type the Go server stores sizes in; a fractional or otherwise
    non-integer value is rejected because NATS would read it as a float or
    a string, which the Go server refuses for a size.
    """
    m = _SIZE_RE.match(text)
    if m is None:
        raise ValueError(f"not a size: {text!r}")
    suffix = m.group(2).lower()
    mult = _SIZE_SUFFIXES.get(suffix)
    if mult is None:
        raise ValueError(f"unknown size suffix {m.group(2)!r}")
    value = int(m.group(1)) * mult
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"size out of range: {text!r}")
    return value


# Units of Go's time.ParseDuration, in nanoseconds.  Both the micro sign
# (U+00B5) and the Greek mu (U+03BC) are accepted, as in Go.
_DURATION_UNITS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_DURATION_PART_RE = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")


def parse_duration_ns(text: str) -> int:
    """Parse a Go duration string and return integer nanoseconds.

    Integer nanoseconds keep the arithmetic exact (``0.1s`` is exactly
    100000000 ns), which matters when values are echoed back in monitoring
    output.  Rules follow Go: an optional sign, then one or more
    ``<number><unit>`` parts; a bare ``0`` is the only unit-less value; there
    is no ``d`` unit; the total must fit in an int64.
    """
    s = text
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = 0
    pos = 0
    while pos < len(s):
        m = _DURATION_PART_RE.match(s, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"invalid duration {text!r}")
        whole, frac, unit = m.group(1), m.group(2), m.group(3)
        if not whole and not frac:
            # "." alone, or a unit without a number
            raise ValueError(f"invalid duration {text!r}")
        if not unit:
            raise ValueError(f"missing unit in duration {text!r}")
        scale = _DURATION_UNITS.get(unit)
        if scale is None:
            raise ValueError(f"unknown unit {unit!r} in duration {text!r}")
        part = int(whole or "0") * scale
        if frac:
            # Go truncates towards zero when the fraction does not divide
            # the unit evenly; integer division does the same here.
            part += int(frac) * scale // (10 ** len(frac))
        total += part
        if total > INT64_MAX + (1 if neg else 0):
            raise ValueError(f"invalid duration {text!r}")
        pos = m.end()
    return -total if neg else total


def parse_duration(text: str) -> float:
    """Parse a Go duration string and return (float) seconds.

    Options keep durations as float seconds; see ``parse_duration_ns`` for
    the accepted syntax.
    """
    return parse_duration_ns(text) / 1e9


def seconds_to_ns(seconds: float) -> int:
    """Convert float seconds back to integer nanoseconds (rounded)."""
    return round(seconds * 1_000_000_000)


def format_duration_ns(ns: int) -> str:
    """Render nanoseconds the way Go's ``time.Duration.String`` does.

    Go error messages embed durations in this form (``1h0m0s``, ``1.5s``,
    ``250ms``, ``-1s``), so matching it keeps our messages identical.
    """
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000_000_000:
        # Sub-second values use the largest unit that keeps an integer part.
        if u < 1_000:
            return f"{sign}{u}ns"
        if u < 1_000_000:
            return f"{sign}{_fmt_frac(u, 1_000)}\u00b5s"
        return f"{sign}{_fmt_frac(u, 1_000_000)}ms"
    hours, rem = divmod(u, 3600 * 1_000_000_000)
    minutes, rem = divmod(rem, 60 * 1_000_000_000)
    secs = _fmt_frac(rem, 1_000_000_000)
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{sign}{minutes}m{secs}s"
    return f"{sign}{secs}s"


def format_duration(seconds: float) -> str:
    """Go-style rendering of a duration held in float seconds."""
    return format_duration_ns(seconds_to_ns(seconds))


def _fmt_frac(value: int, unit: int) -> str:
    """``value/unit`` as a decimal without trailing zeros (Go style)."""
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{frac:0{digits}d}".rstrip("0")


def friendly_bytes(n: int) -> str:
    """Go's ``util.FriendlyBytes``: ``512 B``, ``1.00 KB``, ``976.56 MB``
    (powers of 1024, two decimals), as the Go server logs sizes."""
    if n < 1024:
        return f"{n} B"
    exp = min(int(math.log(n) / math.log(1024)), 6)
    return f"{n / 1024**exp:.2f} {'KMGTPE'[exp - 1]}B"


def go_quote(s: str) -> str:
    """Quote like Go's ``%q`` so error texts match the Go server's."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # a raw byte kept by surrogateescape
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)

"""What the parser produces: positioned values, the error type, and the
Go renderings of values that option errors quote.

Kept apart from the lexer so that ``nss.config_apply`` (and anyone
reporting on a parsed file) depends on the value model only, never on how
the text was read.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from typing import Any


class ConfigError(Exception):
    """A configuration file could not be parsed or holds a bad value.

    ``str(err)`` starts with ``file:line:`` whenever a position is known, so
    it can be printed as-is.  ``file``/``line`` expose that position.
    """

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.line = line


@dataclass
class Value:
    """A parsed value and where it was defined.

    ``value`` is a ``str``, ``int``, ``float``, ``bool``,
    ``datetime.datetime``, ``dict[str, Value]`` or ``list[Value]``.
    ``used`` is set when the entry was referenced as a ``$variable``: such
    keys are variable definitions, not options, and must not be reported
    as unknown options (nats-server does the same in pedantic mode).
    """

    value: Any
    file: str
    line: int
    used: bool = field(default=False, compare=False)

    @property
    def where(self) -> str:
        """``file:line`` prefix for error messages."""
        return f"{self.file}:{self.line}"


def to_plain(v: Any) -> Any:
    """Strip the position information: ``Value`` trees to plain values."""
    if isinstance(v, Value):
        v = v.value
    if isinstance(v, dict):
        return {k: to_plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [to_plain(x) for x in v]
    return v


def go_kind(value: Any) -> str:
    """The Go ``reflect.Kind`` name of a parsed value.

    The Go server's type errors name kinds (``int64``, ``slice`` ...), so the
    Python types are mapped back to what nats-server's parser would have
    produced for the same text.
    """
    if isinstance(value, Value):
        value = value.value
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "slice"
    if isinstance(value, _dt.datetime):
        return "struct"  # time.Time
    return type(value).__name__  # pragma: no cover - parser never produces others


def go_value_str(value: Any) -> str:
    """Render a parsed value like Go's ``%v`` (used in "got %v" errors)."""
    if isinstance(value, Value):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        items = " ".join(f"{k}:{go_value_str(value[k])}" for k in sorted(value))
        return f"map[{items}]"
    if isinstance(value, list):
        return "[" + " ".join(go_value_str(x) for x in value) + "]"
    if isinstance(value, _dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S +0000 UTC")
    return str(value)  # pragma: no cover


def _go_float(f: float) -> str:
    """``strconv.FormatFloat(f, 'g', -1, 64)``: shortest digits, %e form
    when the exponent is < -4 or >= 6 (the %v rule)."""
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if math.isnan(f):
        return "NaN"
    if f == 0:
        return "0"
    r = repr(abs(f))
    mant, _, exp_s = r.partition("e")
    int_part, _, frac_part = mant.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    exp = int(exp_s or 0) + len(int_part.lstrip("0")) - 1
    if not int_part.lstrip("0"):
        # 0.000123 -> leading zeros of the fraction shift the exponent
        stripped = frac_part.lstrip("0")
        exp = int(exp_s or 0) - (len(frac_part) - len(stripped)) - 1
        digits = stripped
    digits = digits.rstrip("0") or "0"
    sign = "-" if f < 0 else ""
    if exp < -4 or exp >= 6:
        m = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{m}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if exp < 0:
        return f"{sign}0.{'0' * (-exp - 1)}{digits}"
    if len(digits) <= exp + 1:
        return sign + digits + "0" * (exp + 1 - len(digits))
    return f"{sign}{digits[: exp + 1]}.{digits[exp + 1 :]}"

"""Parser for the NATS configuration file format (config.md §2.1).

The Go streaming server reads its ``-sc``/``-c`` files with nats-server's
``conf`` package, so existing files must parse here exactly as they do
there.  This module re-implements that lexer/parser (nats-server v2.9.24,
``conf/lex.go`` and ``conf/parse.go``) character rule by character rule,
including its surprising corners, because a drop-in replacement cannot
reinterpret files users already have:

* ``key: value``, ``key = value`` and ``key value``; maps ``{ }`` (also
  without separator: ``key { ... }``), arrays ``[ ]`` separated by commas or
  newlines, ``#`` and ``//`` comments, ``;`` as an optional terminator;
* quoted keys and values: ``"..."`` with the escapes ``\\t \\n \\r \\" \\\\
  \\xHH``, ``'...'`` raw; bare strings end at blanks, newlines, ``, ; ] }``;
* numbers: integers with the NATS size suffixes (``k``=1000, ``kb``/``ki``/
  ``kib``=1024, ``m``, ``mb`` ... up to ``e``/``eb``, case-insensitive), so a
  bare ``1m`` is the *integer* 1000000 while ``1h30m``/``10s`` are strings
  (durations are strings), floats ``1.5``, ISO8601 Zulu datetimes,
  dotted values such as ``127.0.0.1:4222`` are strings;
* booleans ``true/false/yes/no/on/off`` (case-insensitive, bare only);
* ``key ( ...\\n)`` multi-line raw block strings;
* ``include file`` (relative to the including file) and ``$VAR`` references
  resolved from earlier keys of the enclosing maps, innermost first, then
  from the environment (whose value is parsed as a config value);
  ``$2a$...`` bcrypt hashes stay literal strings.

Deliberate deviations from the Go code, all for inputs Go mishandles:
include cycles are detected (Go recurses until it crashes), an absolute
include path is honoured (Go's ``filepath.Join`` makes it relative), an
unknown size suffix or an overflowing size is an error (Go silently drops or
wraps it), a key without a value is an error (Go mis-assigns it), ``]``
ends a number (Go turns the last element of ``[1, 2]`` into the string
``"2"``), a stray ``}`` at the top level is ignored, a block string
closed at EOF does not keep its ``)``, and a ``\\r\\n`` line ending may close
a block string.

Every value is kept as a :class:`Value` remembering the file and line it
came from (for a map entry: the line of its key, like nats-server's pedantic
mode) so that option errors can point at the offending line; ``parse_file``
and ``parse_string`` return plain Python values for general use.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ConfigError",
    "Value",
    "go_kind",
    "go_value_str",
    "parse_file",
    "parse_file_located",
    "parse_string",
    "parse_string_located",
    "to_plain",
]

INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


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


# ---------------------------------------------------------------------------
# Public entry points


def parse_file(path: str) -> dict[str, Any]:
    """Parse the configuration file ``path`` into plain Python values."""
    return to_plain(parse_file_located(path))


def parse_string(text: str, filename: str = "<string>") -> dict[str, Any]:
    """Parse configuration text into plain Python values.

    ``filename`` names the text in error messages; includes are resolved
    relative to its directory, or to the current directory for a name in
    angle brackets.
    """
    return to_plain(parse_string_located(text, filename))


def parse_file_located(path: str) -> dict[str, Value]:
    """Parse ``path`` keeping file:line information on every value."""
    return _parse_path(path, (), frozenset())


def parse_string_located(text: str, filename: str = "<string>") -> dict[str, Value]:
    """Parse text keeping file:line information on every value."""
    chain: tuple[str, ...] = ()
    if not _is_pseudo(filename):
        chain = (os.path.realpath(filename),)
    return _Parser(text, filename, chain, frozenset()).parse()


def _is_pseudo(filename: str) -> bool:
    return filename.startswith("<") and filename.endswith(">")


def _parse_path(path: str, chain: tuple[str, ...], env_active: frozenset[str]) -> dict[str, Value]:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"error opening config file: {path}: {reason}", path) from None
    # surrogateescape keeps arbitrary bytes (Go strings are bytes) and lets
    # them round-trip into file names.
    text = data.decode("utf-8", errors="surrogateescape")
    if text.startswith("\ufeff"):
        text = text[1:]
    real = os.path.realpath(path)
    return _Parser(text, path, (*chain, real), env_active).parse()


# ---------------------------------------------------------------------------
# Lexer/parser

_BOOLS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
_NUMBER_SUFFIX = frozenset("kKmMgGtTpPeE")
_SIZE_MULT: dict[str, int] = {"": 1}
for _i, _letter in enumerate("kmgtpe", start=1):
    _SIZE_MULT[_letter] = 1000**_i
    for _tail in ("b", "i", "ib"):
        _SIZE_MULT[_letter + _tail] = 1024**_i
del _i, _letter, _tail
_DIGITS = frozenset("0123456789")
_BCRYPT_PREFIX = "2a$"
_EOF = ""


def _is_space(c: str) -> bool:
    """``unicode.IsSpace`` (newlines included)."""
    return c != _EOF and c.isspace()


def _is_blank(c: str) -> bool:
    """The lexer's ``isWhitespace``: only space and tab."""
    return c == " " or c == "\t"


def _is_nl(c: str) -> bool:
    return c == "\n" or c == "\r"


def _show(c: str) -> str:
    """A character as the Go lexer prints it in errors."""
    return "\\n" if c == "\n" else c


class _Parser:
    """One file (or string) being parsed.

    ``chain`` holds the real paths of the files currently being parsed
    (outermost first) to detect include cycles; ``env_active`` the
    environment variables being expanded, to stop ``A=$A`` recursion.
    """

    def __init__(
        self, text: str, filename: str, chain: tuple[str, ...], env_active: frozenset[str]
    ) -> None:
        self.text = text
        self.file = filename
        self.chain = chain
        self.env_active = env_active
        self.pos = 0
        self.line = 1
        # maps under construction, outermost first: the scopes of $VAR
        self.scopes: list[dict[str, Value]] = []

    # -- character helpers -------------------------------------------------

    def peek(self, offset: int = 0) -> str:
        i = self.pos + offset
        return self.text[i] if i < len(self.text) else _EOF

    def advance(self) -> str:
        c = self.peek()
        if c:
            self.pos += 1
            if c == "\n":
                self.line += 1
        return c

    def error(self, message: str, line: int | None = None) -> ConfigError:
        ln = self.line if line is None else line
        return ConfigError(f"{self.file}:{ln}: {message}", self.file, ln)

    def skip_space(self) -> None:
        while _is_space(self.peek()):
            self.advance()

    def skip_blank(self) -> None:
        while _is_blank(self.peek()):
            self.advance()

    def at_comment(self) -> bool:
        c = self.peek()
        return c == "#" or (c == "/" and self.peek(1) == "/")

    def skip_comment(self) -> None:
        """Skip up to (not including) the end of the line."""
        while True:
            c = self.peek()
            if c == _EOF or _is_nl(c):
                return
            self.advance()

    # -- document ------------------------------------------------------------

    def parse(self) -> dict[str, Value]:
        root: dict[str, Value] = {}
        self.scopes.append(root)
        while True:
            c = self.peek()
            if c == _EOF:
                break
            if _is_space(c) or c in "{}":
                # A top-level "{ ... }" wrapper (JSON style) is ignored.
                self.advance()
                continue
            if self.at_comment():
                self.skip_comment()
                continue
            if c == "/":
                raise self.error("Unexpected '/'.")
            self.parse_entry(top=True)
            self.top_value_end()
        self.scopes.pop()
        return root

    def top_value_end(self) -> None:
        """``lexTopValueEnd``: a top-level value ends with a newline, a
        comment, ``;``, ``,``, ``}`` or EOF."""
        self.skip_blank()
        if self.at_comment():
            return
        c = self.peek()
        if c == _EOF:
            return
        if _is_nl(c) or c in ";,}":
            self.advance()
            return
        raise self.error(
            "Expected a top-level value to end with a new line, comment or EOF, "
            f"but got '{_show(c)}' instead."
        )

    # -- keys ----------------------------------------------------------------

    def parse_entry(self, top: bool) -> None:
        """Parse ``key [sep] value`` or an ``include`` into the innermost map."""
        line = self.line
        c = self.peek()
        if c in ":=":
            raise self.error(f"Unexpected key separator '{c}'" + ("" if top else "."))
        quoted = c in "\"'"
        if quoted:
            key = self.quoted_key(top)
        else:
            start = self.pos
            while True:
                c = self.peek()
                if c == _EOF:
                    if not top:
                        raise self.error("Unexpected EOF processing map key.")
                    break
                if _is_space(c) or c in ":=":
                    break
                self.advance()
            key = self.text[start : self.pos]
            if key.lower() == "include" and _is_space(self.peek()):
                self.include(line)
                return
        # lexKeyEnd / lexMapKeyEnd: blanks and newlines, one optional separator
        self.skip_space()
        sep = self.peek() in (":", "=")
        if sep:
            self.advance()
            if top:
                self.skip_blank()
            else:
                self.skip_space()
        c = self.peek()
        if c == _EOF:
            if top and sep:
                # Go reads "key =" at the very end as an empty string; this
                # matters for "$VAR" when VAR is set but empty.
                self.set(key, Value("", self.file, line))
                return
            raise self.error(f'missing value for key "{key}"', line)
        if not top:
            if c == ",":
                raise self.error("Unexpected map value terminator ','.")
            if c == "}":
                raise self.error(f'missing value for key "{key}"', line)
        value = self.parse_value(line)
        self.set(key, value)

    def quoted_key(self, top: bool) -> str:
        q = self.advance()
        start = self.pos
        while True:
            c = self.peek()
            if c == _EOF:
                if top:
                    raise self.error("Unexpected EOF.")
                kind = "double quoted" if q == '"' else "quoted"
                raise self.error(f"Unexpected EOF processing {kind} map key.")
            if c == q:
                key = self.text[start : self.pos]
                self.advance()
                return key
            self.advance()

    def set(self, key: str, value: Value) -> None:
        ctx = self.scopes[-1]
        # Re-inserting moves a redefined key to its latest position, so that
        # iterating the map applies definitions in file order.
        ctx.pop(key, None)
        ctx[key] = value

    # -- include -------------------------------------------------------------

    def include(self, line: int) -> None:
        self.skip_blank()
        c = self.peek()
        if c in ("'", '"'):
            self.advance()
            start = self.pos
            while True:
                d = self.peek()
                if d == _EOF:
                    kind = "double quoted" if c == '"' else "quoted"
                    raise self.error(f"Unexpected EOF in {kind} include")
                if d == c:
                    name = self.text[start : self.pos]
                    self.advance()
                    break
                self.advance()
        else:
            errors = {
                "[": "start of an array",
                "{": "start of a map",
                "(": "start of a block",
                "-": "start of a number",
                "\\": "escape sequence",
            }
            if c in errors or c in _DIGITS:
                what = errors.get(c, "start of a number")
                raise self.error(f"Expected include value but found {what}")
            if _is_nl(c):
                raise self.error("Expected include value but found new line")
            start = self.pos
            while True:
                d = self.peek()
                if d == _EOF or _is_nl(d) or _is_blank(d) or d in ";}":
                    name = self.text[start : self.pos]
                    break
                if d == "'":
                    name = self.text[start : self.pos]
                    self.advance()
                    break
                self.advance()
        if not name:
            raise self.error("missing include file name", line)
        base = os.getcwd() if _is_pseudo(self.file) else os.path.dirname(self.file)
        path = os.path.join(base, name)
        real = os.path.realpath(path)
        if real in self.chain:
            cycle = " -> ".join([*self.chain[self.chain.index(real) :], real])
            raise self.error(f"include cycle: {cycle}", line)
        try:
            included = _parse_path(path, self.chain, self.env_active)
        except ConfigError as exc:
            raise self.error(f"error parsing include file '{name}', {exc}", line) from None
        for k, v in included.items():
            self.set(k, v)

    # -- values ----------------------------------------------------------------

    def parse_value(self, line: int) -> Value:
        """``lexValue``: the value starting at the current position.

        ``line`` is recorded as the value's position (the key's line for a
        map entry)."""
        self.skip_blank()
        c = self.peek()
        if c == "[":
            self.advance()
            return Value(self.array(), self.file, line)
        if c == "{":
            self.advance()
            return Value(self.map(), self.file, line)
        if c == "'":
            self.advance()
            return Value(self.sq_string(), self.file, line)
        if c == '"':
            self.advance()
            return Value(self.dq_string(), self.file, line)
        if c == "-":
            return Value(self.negative_number(), self.file, line)
        if c == "(":
            self.advance()
            return Value(self.block(), self.file, line)
        if c in _DIGITS:
            return Value(self.number(), self.file, line)
        if c == ".":
            raise self.error("Floats must start with a digit")
        if _is_nl(c):
            raise self.error("Expected value but found new line")
        return self.bare(line, "")

    def array(self) -> list[Value]:
        items: list[Value] = []
        while True:
            # lexArrayValue
            self.skip_space()
            if self.at_comment():
                self.skip_comment()
                continue
            c = self.peek()
            if c == ",":
                raise self.error("Unexpected array value terminator ','.")
            if c == "]":
                self.advance()
                return items
            if c == _EOF:
                raise self.error("Unexpected EOF processing array.")
            items.append(self.parse_value(self.line))
            # lexArrayValueEnd
            while True:
                self.skip_blank()
                if self.at_comment():
                    self.skip_comment()
                    continue
                c = self.peek()
                if c == "," or _is_nl(c):
                    self.advance()
                    break
                if c == "]":
                    self.advance()
                    return items
                if c == _EOF:
                    raise self.error("Unexpected EOF processing array.")
                raise self.error(
                    "Expected an array value terminator ',' or an array terminator ']', "
                    f"but got '{_show(c)}' instead."
                )

    def map(self) -> dict[str, Value]:
        m: dict[str, Value] = {}
        self.scopes.append(m)
        try:
            while True:
                # lexMapKeyStart
                self.skip_space()
                if self.at_comment():
                    self.skip_comment()
                    continue
                c = self.peek()
                if c == "}":
                    self.advance()
                    return m
                if c == _EOF:
                    raise self.error("Unexpected EOF processing map.")
                if c == "]":
                    raise self.error("Unexpected array end ']' processing map.")
                if c == "/":
                    self.advance()  # a lone '/' is skipped, as in Go
                    continue
                self.parse_entry(top=False)
                # lexMapValueEnd
                while True:
                    self.skip_blank()
                    if self.at_comment():
                        self.skip_comment()
                        continue
                    c = self.peek()
                    if c in (";", ",") or _is_nl(c):
                        self.advance()
                        break
                    if c == "}":
                        self.advance()
                        return m
                    if c == _EOF:
                        raise self.error("Unexpected EOF processing map.")
                    raise self.error(
                        "Expected a map value terminator ',' or a map terminator '}', "
                        f"but got '{_show(c)}' instead."
                    )
        finally:
            self.scopes.pop()

    def sq_string(self) -> str:
        start = self.pos
        while True:
            c = self.peek()
            if c == _EOF:
                raise self.error("Unexpected EOF.")
            if c == "'":
                s = self.text[start : self.pos]
                self.advance()
                return s
            self.advance()

    def dq_string(self) -> str:
        parts: list[str] = []
        while True:
            c = self.advance()
            if c == _EOF:
                raise self.error("Unexpected EOF.")
            if c == '"':
                return "".join(parts)
            if c == "\\":
                parts.append(self.escape())
            else:
                parts.append(c)

    def escape(self) -> str:
        """``lexStringEscape`` after a backslash."""
        c = self.advance()
        simple = {"t": "\t", "n": "\n", "r": "\r", '"': '"', "\\": "\\"}
        if c in simple:
            return simple[c]
        if c == "x":
            hexa = ""
            for _ in range(2):
                d = self.advance()
                if _is_nl(d) or d == _EOF:
                    raise self.error(
                        "Expected two hexadecimal digits after '\\x', but hit end of line"
                    )
                hexa += d
            try:
                b = int(hexa, 16)
                if not all(h in "0123456789abcdefABCDEF" for h in hexa):
                    raise ValueError(hexa)
            except ValueError:
                raise self.error(
                    f"Expected two hexadecimal digits after '\\x', but got '{hexa}'"
                ) from None
            # A Go string holds the raw byte; surrogateescape keeps it a byte.
            return chr(b) if b < 0x80 else chr(0xDC00 + b)
        raise self.error(
            f"Invalid escape character '{_show(c)}'. Only the following escape characters "
            'are allowed: \\xXX, \\t, \\n, \\r, \\", \\\\.'
        )

    def block(self) -> str:
        """``key ( ... )``: raw text up to a ``)`` alone at a line start that
        is followed by a newline or EOF."""
        start = self.pos
        while True:
            c = self.advance()
            if c == _EOF:
                raise self.error("Unexpected EOF processing block.")
            if (
                c == ")"
                and self.pos - 2 >= start
                and self.text[self.pos - 2] == "\n"
                and (self.peek() == _EOF or _is_nl(self.peek()))
            ):
                return self.text[start : self.pos - 1]

    def bare(self, line: int, prefix: str) -> Value:
        """``lexString``: an unquoted string, boolean or variable reference."""
        parts = [prefix]
        escaped = False
        while True:
            c = self.peek()
            if c == "\\":
                self.advance()
                parts.append(self.escape())
                escaped = True
                continue
            if c == _EOF or _is_nl(c) or _is_blank(c) or c in ";,]}":
                break
            self.advance()
            if c == "'":
                break  # Go ends (and swallows) a bare string at a quote
            parts.append(c)
        text = "".join(parts)
        if escaped:
            return Value(text, self.file, line)
        low = text.lower()
        if low in _BOOLS:
            return Value(_BOOLS[low], self.file, line)
        if text.startswith("$"):
            return self.variable(text[1:], line)
        return Value(text, self.file, line)

    def number(self) -> Any:
        """``lexNumberOrDateOrStringOrIP``: at a digit."""
        start = self.pos
        self.advance()
        while True:
            c = self.peek()
            if c == "-":
                if self.pos - start != 4:
                    raise self.error("All ISO8601 dates must be in full Zulu form.")
                return self.datetime(start)
            if c in _DIGITS:
                self.advance()
                continue
            if c == ".":
                return self.float_or_ip(start)
            if c in _NUMBER_SUFFIX:
                return self.convenient_number(start)
            if self.ends_number(c):
                return self.integer(self.text[start : self.pos])
            # 1h30m, 10s, 4222:x ...: the whole token is a string
            return self.bare(self.line, self.text[start : self.pos]).value

    def negative_number(self) -> Any:
        start = self.pos
        self.advance()  # '-'
        c = self.peek()
        if c not in _DIGITS:
            if c == ".":
                raise self.error("Floats must start with a digit, not '.'.")
            raise self.error(f"Expected a digit but got '{_show(c)}'.")
        while True:
            c = self.peek()
            if c in _DIGITS:
                self.advance()
                continue
            if c == ".":
                return self.float_or_ip(start)
            if c in _NUMBER_SUFFIX:
                return self.convenient_number(start)
            return self.integer(self.text[start : self.pos])

    @staticmethod
    def ends_number(c: str) -> bool:
        return c == _EOF or _is_nl(c) or _is_blank(c) or c in "};,]"

    def convenient_number(self, start: int) -> Any:
        """A number followed by a size suffix letter (``64MB``, ``1k``)."""
        self.advance()  # the suffix letter
        while self.peek() in ("b", "B", "i", "I"):
            self.advance()
        c = self.peek()
        if self.ends_number(c) or c in _DIGITS:
            return self.integer(self.text[start : self.pos])
        return self.bare(self.line, self.text[start : self.pos]).value

    def integer(self, token: str) -> int:
        i = 0
        while i < len(token) and (token[i] in _DIGITS or token[i] == "-"):
            i += 1
        try:
            num = int(token[:i])
        except ValueError:
            raise self.error(f"expected integer, but got '{token}'") from None
        if not INT64_MIN <= num <= INT64_MAX:
            raise self.error(f"integer '{token}' is out of the range")
        mult = _SIZE_MULT.get(token[i:].strip().lower())
        if mult is None:
            raise self.error(f"invalid size suffix in '{token}'")
        value = num * mult
        if not INT64_MIN <= value <= INT64_MAX:
            raise self.error(f"integer '{token}' is out of the range")
        return value

    def float_or_ip(self, start: int) -> Any:
        self.advance()  # '.'
        c = self.peek()
        if c not in _DIGITS:
            raise self.error(
                f"Floats must have a digit after the '.', but got '{_show(c)}' instead."
            )
        while self.peek() in _DIGITS:
            self.advance()
        if self.peek() == ".":
            # 127.0.0.1, 10.0.0.1:4222 ...
            while self.peek() != _EOF and (self.peek() in _DIGITS or self.peek() in ".:-"):
                self.advance()
            return self.text[start : self.pos]
        token = self.text[start : self.pos]
        f = float(token)
        if math.isinf(f):
            raise self.error(f"float '{token}' is out of the range")
        return f

    def datetime(self, start: int) -> _dt.datetime:
        self.advance()  # '-' after the year
        for f in "00-00T00:00:00Z":
            c = self.advance()
            if f == "0":
                if c not in _DIGITS:
                    raise self.error(
                        f"Expected digit in ISO8601 datetime, but found '{_show(c)}' instead."
                    )
            elif c != f:
                raise self.error(
                    f"Expected '{f}' in ISO8601 datetime, but found '{_show(c)}' instead."
                )
        token = self.text[start : self.pos]
        try:
            dt = _dt.datetime.strptime(token, "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise self.error(f"expected Zulu formatted DateTime, but got '{token}'") from None
        return dt.replace(tzinfo=_dt.UTC)

    # -- variables -------------------------------------------------------------

    def variable(self, name: str, line: int) -> Value:
        """Resolve ``$name``: enclosing maps innermost first, then the
        environment (its value parsed as a config value)."""
        if name.startswith(_BCRYPT_PREFIX):
            return Value("$" + name, self.file, line)
        for scope in reversed(self.scopes):
            found = scope.get(name)
            if found is not None:
                found.used = True
                return Value(found.value, self.file, line)
        env = os.environ.get(name)
        if env is not None:
            if name in self.env_active:
                raise self.error(
                    f"variable reference for '{name}' on line {line} could not be parsed: "
                    "environment variable refers to itself",
                    line,
                )
            sub = _Parser(f"pk={env}", f"<env ${name}>", self.chain, self.env_active | {name})
            try:
                parsed = sub.parse()
            except ConfigError as exc:
                raise self.error(
                    f"variable reference for '{name}' on line {line} could not be parsed: {exc}",
                    line,
                ) from None
            pk = parsed.get("pk")
            if pk is None:  # pragma: no cover - "pk=" always yields pk
                raise self.error(f"variable reference for '{name}' on line {line} is empty")
            return Value(pk.value, self.file, line)
        raise self.error(f"variable reference for '{name}' on line {line} can not be found", line)

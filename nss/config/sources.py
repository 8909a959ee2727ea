"""Where configuration text comes from: reading a file, and the
``include`` directive (its file name token, its path, cycle detection).

Go's ``conf`` package reads files as bytes; the text is decoded with
``surrogateescape`` so arbitrary bytes survive into values and file names.
"""

from __future__ import annotations

import os

from nss.config.cursor import DIGITS, EOF, Cursor, is_blank, is_nl
from nss.config.values import ConfigError

# What the include lexer names when a value-like token follows "include".
_NOT_AN_INCLUDE_NAME = {
    "[": "start of an array",
    "{": "start of a map",
    "(": "start of a block",
    "-": "start of a number",
    "\\": "escape sequence",
}


def is_pseudo(filename: str) -> bool:
    """``<string>``, ``<env $X>``: a name for text that is not a file."""
    return filename.startswith("<") and filename.endswith(">")


def read_source(path: str) -> str:
    """The text of config file ``path``, without a UTF-8 byte order mark."""
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
    return text


def read_include_name(cur: Cursor, line: int) -> str:
    """``lexInclude``: the file name after ``include`` (quoted or bare)."""
    cur.skip_blank()
    c = cur.peek()
    if c in ("'", '"'):
        cur.advance()
        name = _read_quoted_name(cur, c)
    else:
        name = _read_bare_name(cur, c)
    if not name:
        raise cur.error("missing include file name", line)
    return name


def _read_quoted_name(cur: Cursor, quote: str) -> str:
    start = cur.pos
    while True:
        d = cur.peek()
        if d == EOF:
            kind = "double quoted" if quote == '"' else "quoted"
            raise cur.error(f"Unexpected EOF in {kind} include")
        if d == quote:
            name = cur.since(start)
            cur.advance()
            return name
        cur.advance()


def _read_bare_name(cur: Cursor, c: str) -> str:
    if c in _NOT_AN_INCLUDE_NAME or c in DIGITS:
        what = _NOT_AN_INCLUDE_NAME.get(c, "start of a number")
        raise cur.error(f"Expected include value but found {what}")
    if is_nl(c):
        raise cur.error("Expected include value but found new line")
    start = cur.pos
    while True:
        d = cur.peek()
        if d == EOF or is_nl(d) or is_blank(d) or d in ";}":
            return cur.since(start)
        if d == "'":
            name = cur.since(start)
            cur.advance()
            return name
        cur.advance()


def include_path(including_file: str, name: str) -> str:
    """An included file is found relative to the including one (or to the
    current directory when the text did not come from a file)."""
    base = os.getcwd() if is_pseudo(including_file) else os.path.dirname(including_file)
    return os.path.join(base, name)


def include_cycle(chain: tuple[str, ...], real: str) -> str | None:
    """``a -> b -> a`` when including ``real`` would loop, else ``None``.

    ``chain`` holds the real paths of the files being parsed, outermost
    first.
    """
    if real not in chain:
        return None
    return " -> ".join([*chain[chain.index(real) :], real])

"""String tokens: keys, quoted strings and their escapes, ``( ... )``
block strings and bare (unquoted) strings.

Each reader starts where ``conf/lex.go`` would enter the matching state
and leaves the cursor after the token; what a bare word *means* (boolean,
``$variable``, string) is the parser's business, not the lexer's.
"""

from __future__ import annotations

from nss.config.cursor import EOF, Cursor, is_blank, is_nl, is_space, show

_SIMPLE_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", '"': '"', "\\": "\\"}
_HEX = "0123456789abcdefABCDEF"


def read_quoted_key(cur: Cursor, top: bool) -> str:
    """A ``"key"`` or ``'key'``: raw, no escapes (``lexQuotedKey``)."""
    q = cur.advance()
    start = cur.pos
    while True:
        c = cur.peek()
        if c == EOF:
            if top:
                raise cur.error("Unexpected EOF.")
            kind = "double quoted" if q == '"' else "quoted"
            raise cur.error(f"Unexpected EOF processing {kind} map key.")
        if c == q:
            key = cur.since(start)
            cur.advance()
            return key
        cur.advance()


def read_bare_key(cur: Cursor, top: bool) -> str:
    """An unquoted key: up to a space or a ``:``/``=`` separator."""
    start = cur.pos
    while True:
        c = cur.peek()
        if c == EOF:
            if not top:
                raise cur.error("Unexpected EOF processing map key.")
            break
        if is_space(c) or c in ":=":
            break
        cur.advance()
    return cur.since(start)


def read_sq_string(cur: Cursor) -> str:
    """After the opening ``'``: raw text up to the next ``'``."""
    start = cur.pos
    while True:
        c = cur.peek()
        if c == EOF:
            raise cur.error("Unexpected EOF.")
        if c == "'":
            s = cur.since(start)
            cur.advance()
            return s
        cur.advance()


def read_dq_string(cur: Cursor) -> str:
    """After the opening ``"``: text with escapes up to the closing ``"``."""
    parts: list[str] = []
    while True:
        c = cur.advance()
        if c == EOF:
            raise cur.error("Unexpected EOF.")
        if c == '"':
            return "".join(parts)
        if c == "\\":
            parts.append(read_escape(cur))
        else:
            parts.append(c)


def read_escape(cur: Cursor) -> str:
    """``lexStringEscape`` after a backslash."""
    c = cur.advance()
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c]
    if c == "x":
        return _read_hex_escape(cur)
    raise cur.error(
        f"Invalid escape character '{show(c)}'. Only the following escape characters "
        'are allowed: \\xXX, \\t, \\n, \\r, \\", \\\\.'
    )


def _read_hex_escape(cur: Cursor) -> str:
    """``\\xHH``: one byte, which may not be valid UTF-8 on its own."""
    hexa = ""
    for _ in range(2):
        d = cur.advance()
        if is_nl(d) or d == EOF:
            raise cur.error("Expected two hexadecimal digits after '\\x', but hit end of line")
        hexa += d
    try:
        b = int(hexa, 16)
        if not all(h in _HEX for h in hexa):
            raise ValueError(hexa)
    except ValueError:
        raise cur.error(f"Expected two hexadecimal digits after '\\x', but got '{hexa}'") from None
    # A Go string holds the raw byte; surrogateescape keeps it a byte.
    return chr(b) if b < 0x80 else chr(0xDC00 + b)


def read_block(cur: Cursor) -> str:
    """After ``(``: raw text up to a ``)`` alone at a line start that is
    followed by a newline or EOF."""
    start = cur.pos
    while True:
        c = cur.advance()
        if c == EOF:
            raise cur.error("Unexpected EOF processing block.")
        if (
            c == ")"
            and cur.pos - 2 >= start
            and cur.text[cur.pos - 2] == "\n"
            and (cur.peek() == EOF or is_nl(cur.peek()))
        ):
            return cur.text[start : cur.pos - 1]


def read_bare(cur: Cursor, prefix: str) -> tuple[str, bool]:
    """``lexString``: an unquoted string continuing ``prefix``.

    Returns the text and whether it held an escape (an escaped word is
    always a string, never a boolean or a variable).
    """
    parts = [prefix]
    escaped = False
    while True:
        c = cur.peek()
        if c == "\\":
            cur.advance()
            parts.append(read_escape(cur))
            escaped = True
            continue
        if c == EOF or is_nl(c) or is_blank(c) or c in ";,]}":
            break
        cur.advance()
        if c == "'":
            break  # Go ends (and swallows) a bare string at a quote
        parts.append(c)
    return "".join(parts), escaped

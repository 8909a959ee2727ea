"""The character cursor every lexing rule reads through.

nats-server's ``conf/lex.go`` is a state machine over runes; this port
keeps one cursor (position, line count, the blank/comment skipping that
every context repeats, errors positioned ``file:line:``) so that each
token reader (strings, numbers, include names) is a plain function of it.
"""

from __future__ import annotations

from nss.config.values import ConfigError

EOF = ""
DIGITS = frozenset("0123456789")


def is_space(c: str) -> bool:
    """``unicode.IsSpace`` (newlines included)."""
    return c != EOF and c.isspace()


def is_blank(c: str) -> bool:
    """The lexer's ``isWhitespace``: only space and tab."""
    return c == " " or c == "\t"


def is_nl(c: str) -> bool:
    return c == "\n" or c == "\r"


def show(c: str) -> str:
    """A character as the Go lexer prints it in errors."""
    return "\\n" if c == "\n" else c


class Cursor:
    """A position in one file's (or string's) text, with its line number.

    ``file`` is the name errors are prefixed with.
    """

    def __init__(self, text: str, filename: str) -> None:
        self.text = text
        self.file = filename
        self.pos = 0
        self.line = 1

    def peek(self, offset: int = 0) -> str:
        i = self.pos + offset
        return self.text[i] if i < len(self.text) else EOF

    def advance(self) -> str:
        c = self.peek()
        if c:
            self.pos += 1
            if c == "\n":
                self.line += 1
        return c

    def since(self, start: int) -> str:
        """The text read from ``start`` up to the current position."""
        return self.text[start : self.pos]

    def error(self, message: str, line: int | None = None) -> ConfigError:
        ln = self.line if line is None else line
        return ConfigError(f"{self.file}:{ln}: {message}", self.file, ln)

    def skip_space(self) -> None:
        while is_space(self.peek()):
            self.advance()

    def skip_blank(self) -> None:
        while is_blank(self.peek()):
            self.advance()

    def at_comment(self) -> bool:
        c = self.peek()
        return c == "#" or (c == "/" and self.peek(1) == "/")

    def skip_comment(self) -> None:
        """Skip up to (not including) the end of the line."""
        while True:
            c = self.peek()
            if c == EOF or is_nl(c):
                return
            self.advance()

    def skip_blank_and_comments(self) -> None:
        """Blanks and trailing comments before a value terminator."""
        while True:
            self.skip_blank()
            if not self.at_comment():
                return
            self.skip_comment()

    def skip_space_and_comments(self) -> None:
        """Blanks, newlines and comment lines before the next item."""
        while True:
            self.skip_space()
            if not self.at_comment():
                return
            self.skip_comment()

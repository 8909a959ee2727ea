"""The parser proper: documents, ``key [sep] value`` entries, maps,
arrays, and the meaning of bare words (booleans, ``$variables``).

It follows the states of nats-server v2.9.24 ``conf/lex.go`` and
``conf/parse.go`` (the comments name them) but builds values while it
reads, because a ``$VAR`` sees only the keys defined before it.  Token
readers live in :mod:`nss.config.strings`, :mod:`nss.config.numeric` and
:mod:`nss.config.sources`.
"""

from __future__ import annotations

import os

from nss.config.cursor import DIGITS, EOF, Cursor, is_nl, is_space, show
from nss.config.numeric import read_negative_number, read_number
from nss.config.sources import include_cycle, include_path, read_include_name, read_source
from nss.config.strings import (
    read_bare,
    read_bare_key,
    read_block,
    read_dq_string,
    read_quoted_key,
    read_sq_string,
)
from nss.config.values import ConfigError, Value
from nss.config.variables import Scopes, is_literal_dollar

_BOOLS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def parse_text(
    text: str, filename: str, chain: tuple[str, ...], env_active: frozenset[str]
) -> dict[str, Value]:
    """Parse ``text`` named ``filename`` (see :class:`Parser`)."""
    return Parser(text, filename, chain, env_active).parse()


def parse_path(path: str, chain: tuple[str, ...], env_active: frozenset[str]) -> dict[str, Value]:
    """Parse the file ``path``, included from the files in ``chain``."""
    text = read_source(path)
    return parse_text(text, path, (*chain, os.path.realpath(path)), env_active)


class Parser:
    """One file (or string) being parsed.

    ``chain`` holds the real paths of the files currently being parsed
    (outermost first) to detect include cycles; ``env_active`` the
    environment variables being expanded, to stop ``A=$A`` recursion.
    """

    def __init__(
        self, text: str, filename: str, chain: tuple[str, ...], env_active: frozenset[str]
    ) -> None:
        self.cur = Cursor(text, filename)
        self.chain = chain
        self.env_active = env_active
        self.scopes = Scopes()

    def _at(self, value: object, line: int) -> Value:
        return Value(value, self.cur.file, line)

    # -- document ------------------------------------------------------------

    def parse(self) -> dict[str, Value]:
        cur = self.cur
        with self.scopes.inside({}) as root:
            while True:
                c = cur.peek()
                if c == EOF:
                    break
                if is_space(c) or c in "{}":
                    # A top-level "{ ... }" wrapper (JSON style) is ignored.
                    cur.advance()
                    continue
                if cur.at_comment():
                    cur.skip_comment()
                    continue
                if c == "/":
                    raise cur.error("Unexpected '/'.")
                self._entry(top=True)
                self._top_value_end()
        return root

    def _top_value_end(self) -> None:
        """``lexTopValueEnd``: a top-level value ends with a newline, a
        comment, ``;``, ``,``, ``}`` or EOF."""
        cur = self.cur
        cur.skip_blank()
        if cur.at_comment():
            return
        c = cur.peek()
        if c == EOF:
            return
        if is_nl(c) or c in ";,}":
            cur.advance()
            return
        raise cur.error(
            "Expected a top-level value to end with a new line, comment or EOF, "
            f"but got '{show(c)}' instead."
        )

    # -- entries -------------------------------------------------------------

    def _entry(self, top: bool) -> None:
        """Parse ``key [sep] value`` or an ``include`` into the innermost map."""
        cur = self.cur
        line = cur.line
        c = cur.peek()
        if c in ":=":
            raise cur.error(f"Unexpected key separator '{c}'" + ("" if top else "."))
        if c in "\"'":
            key = read_quoted_key(cur, top)
        else:
            key = read_bare_key(cur, top)
            if key.lower() == "include" and is_space(cur.peek()):
                self._include(line)
                return
        sep = self._key_separator(top)
        c = cur.peek()
        if c == EOF:
            if top and sep:
                # Go reads "key =" at the very end as an empty string; this
                # matters for "$VAR" when VAR is set but empty.
                self.scopes.set(key, self._at("", line))
                return
            raise cur.error(f'missing value for key "{key}"', line)
        if not top:
            if c == ",":
                raise cur.error("Unexpected map value terminator ','.")
            if c == "}":
                raise cur.error(f'missing value for key "{key}"', line)
        self.scopes.set(key, self._value(line))

    def _key_separator(self, top: bool) -> bool:
        """``lexKeyEnd`` / ``lexMapKeyEnd``: blanks and newlines, then one
        optional ``:`` or ``=``; whether there was one."""
        cur = self.cur
        cur.skip_space()
        sep = cur.peek() in (":", "=")
        if sep:
            cur.advance()
            if top:
                cur.skip_blank()
            else:
                cur.skip_space()
        return sep

    def _include(self, line: int) -> None:
        """Parse the included file and merge its keys into the current map."""
        cur = self.cur
        name = read_include_name(cur, line)
        path = include_path(cur.file, name)
        cycle = include_cycle(self.chain, os.path.realpath(path))
        if cycle is not None:
            raise cur.error(f"include cycle: {cycle}", line)
        try:
            included = parse_path(path, self.chain, self.env_active)
        except ConfigError as exc:
            raise cur.error(f"error parsing include file '{name}', {exc}", line) from None
        for k, v in included.items():
            self.scopes.set(k, v)

    # -- values ----------------------------------------------------------------

    def _value(self, line: int) -> Value:
        """``lexValue``: the value starting at the current position.

        ``line`` is recorded as the value's position (the key's line for a
        map entry)."""
        cur = self.cur
        cur.skip_blank()
        c = cur.peek()
        if c == "[":
            cur.advance()
            return self._at(self._array(), line)
        if c == "{":
            cur.advance()
            return self._at(self._map(), line)
        if c == "'":
            cur.advance()
            return self._at(read_sq_string(cur), line)
        if c == '"':
            cur.advance()
            return self._at(read_dq_string(cur), line)
        if c == "-":
            return self._at(read_negative_number(cur), line)
        if c == "(":
            cur.advance()
            return self._at(read_block(cur), line)
        if c in DIGITS:
            return self._at(read_number(cur), line)
        if c == ".":
            raise cur.error("Floats must start with a digit")
        if is_nl(c):
            raise cur.error("Expected value but found new line")
        return self._bare(line)

    def _array(self) -> list[Value]:
        """After ``[``: values separated by commas or newlines."""
        cur = self.cur
        items: list[Value] = []
        while True:
            # lexArrayValue
            cur.skip_space_and_comments()
            c = cur.peek()
            if c == ",":
                raise cur.error("Unexpected array value terminator ','.")
            if c == "]":
                cur.advance()
                return items
            if c == EOF:
                raise cur.error("Unexpected EOF processing array.")
            items.append(self._value(cur.line))
            if self._array_value_end():
                return items

    def _array_value_end(self) -> bool:
        """``lexArrayValueEnd``: whether the array ended after the value."""
        cur = self.cur
        cur.skip_blank_and_comments()
        c = cur.peek()
        if c == "," or is_nl(c):
            cur.advance()
            return False
        if c == "]":
            cur.advance()
            return True
        if c == EOF:
            raise cur.error("Unexpected EOF processing array.")
        raise cur.error(
            "Expected an array value terminator ',' or an array terminator ']', "
            f"but got '{show(c)}' instead."
        )

    def _map(self) -> dict[str, Value]:
        """After ``{``: entries up to the matching ``}``."""
        cur = self.cur
        with self.scopes.inside({}) as m:
            while True:
                # lexMapKeyStart
                cur.skip_space_and_comments()
                c = cur.peek()
                if c == "}":
                    cur.advance()
                    return m
                if c == EOF:
                    raise cur.error("Unexpected EOF processing map.")
                if c == "]":
                    raise cur.error("Unexpected array end ']' processing map.")
                if c == "/":
                    cur.advance()  # a lone '/' is skipped, as in Go
                    continue
                self._entry(top=False)
                if self._map_value_end():
                    return m

    def _map_value_end(self) -> bool:
        """``lexMapValueEnd``: whether the map ended after the value."""
        cur = self.cur
        cur.skip_blank_and_comments()
        c = cur.peek()
        if c in (";", ",") or is_nl(c):
            cur.advance()
            return False
        if c == "}":
            cur.advance()
            return True
        if c == EOF:
            raise cur.error("Unexpected EOF processing map.")
        raise cur.error(
            "Expected a map value terminator ',' or a map terminator '}', "
            f"but got '{show(c)}' instead."
        )

    # -- bare words and variables ------------------------------------------------

    def _bare(self, line: int) -> Value:
        """An unquoted word: a boolean, a ``$variable`` or a string."""
        text, escaped = read_bare(self.cur, "")
        if escaped:
            return self._at(text, line)
        low = text.lower()
        if low in _BOOLS:
            return self._at(_BOOLS[low], line)
        if text.startswith("$"):
            return self._variable(text[1:], line)
        return self._at(text, line)

    def _variable(self, name: str, line: int) -> Value:
        """Resolve ``$name``: enclosing maps innermost first, then the
        environment (its value parsed as a config value)."""
        if is_literal_dollar(name):
            return self._at("$" + name, line)
        found = self.scopes.lookup(name)
        if found is not None:
            return self._at(found.value, line)
        env = os.environ.get(name)
        if env is None:
            raise self.cur.error(
                f"variable reference for '{name}' on line {line} can not be found", line
            )
        return self._at(self._env_value(name, env, line), line)

    def _env_value(self, name: str, env: str, line: int) -> object:
        """The environment text of ``$name`` read as the value of a key."""
        cur = self.cur
        if name in self.env_active:
            raise cur.error(
                f"variable reference for '{name}' on line {line} could not be parsed: "
                "environment variable refers to itself",
                line,
            )
        try:
            parsed = parse_text(f"pk={env}", f"<env ${name}>", self.chain, self.env_active | {name})
        except ConfigError as exc:
            raise cur.error(
                f"variable reference for '{name}' on line {line} could not be parsed: {exc}",
                line,
            ) from None
        pk = parsed.get("pk")
        if pk is None:  # pragma: no cover - "pk=" always yields pk
            raise cur.error(f"variable reference for '{name}' on line {line} is empty")
        return pk.value

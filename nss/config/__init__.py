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

Layout: :mod:`.values` (the value model and its Go renderings),
:mod:`.cursor` (position and line counting), :mod:`.strings` and
:mod:`.numeric` (token readers), :mod:`.sources` (files and ``include``),
:mod:`.variables` (``$VAR`` scopes) and :mod:`.parser` (the grammar).
This package module is the public API.
"""

from __future__ import annotations

import os
from typing import Any

from nss.config.parser import parse_path, parse_text
from nss.config.sources import is_pseudo
from nss.config.values import ConfigError, Value, go_kind, go_value_str, to_plain

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
    return parse_path(path, (), frozenset())


def parse_string_located(text: str, filename: str = "<string>") -> dict[str, Value]:
    """Parse text keeping file:line information on every value."""
    chain: tuple[str, ...] = ()
    if not is_pseudo(filename):
        chain = (os.path.realpath(filename),)
    return parse_text(text, filename, chain, frozenset())

"""The pieces of the config parser (nss.config.*) on their own: each token
reader works from a bare cursor, so a rule can be checked without a
whole document around it."""

from __future__ import annotations

import datetime as dt

import pytest

from nss.config import ConfigError, Value
from nss.config.cursor import Cursor
from nss.config.numeric import parse_integer, read_negative_number, read_number
from nss.config.sources import include_cycle, include_path, read_include_name
from nss.config.strings import read_bare, read_block, read_dq_string
from nss.config.variables import Scopes, is_literal_dollar


def test_cursor_counts_lines_and_prefixes_errors() -> None:
    cur = Cursor("a\nb", "f.conf")
    cur.advance()
    cur.advance()
    assert (cur.peek(), cur.line) == ("b", 2)
    err = cur.error("boom")
    assert (str(err), err.file, err.line) == ("f.conf:2: boom", "f.conf", 2)


def test_cursor_skips_comments_but_not_the_value_after_them() -> None:
    cur = Cursor("  # one\n// two\n  x", "f")
    cur.skip_space_and_comments()
    assert (cur.peek(), cur.line) == ("x", 3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1k ", 1000), ("1kb;", 1024), ("2MiB}", 2 * 1024**2), ("12", 12), ("1h30m", "1h30m")],
)
def test_read_number_stops_at_the_token_end(text: str, expected: object) -> None:
    cur = Cursor(text, "f")
    assert read_number(cur) == expected


def test_read_number_datetime_and_ip() -> None:
    assert read_number(Cursor("2021-05-06T07:08:09Z", "f")) == dt.datetime(
        2021, 5, 6, 7, 8, 9, tzinfo=dt.UTC
    )
    assert read_number(Cursor("127.0.0.1:4222", "f")) == "127.0.0.1:4222"


def test_negative_number_and_range_errors() -> None:
    assert read_negative_number(Cursor("-3k", "f")) == -3000
    with pytest.raises(ConfigError, match=r"^f:1: integer '10e' is out of the range$"):
        parse_integer(Cursor("", "f"), "10e")
    with pytest.raises(ConfigError, match=r"^f:1: invalid size suffix in '1q'$"):
        parse_integer(Cursor("", "f"), "1q")


def test_read_bare_reports_escapes() -> None:
    assert read_bare(Cursor("ab\\x41c d", "f"), "") == ("abAc", True)
    assert read_bare(Cursor("true,", "f"), "") == ("true", False)


def test_dq_string_and_block() -> None:
    assert read_dq_string(Cursor('a\\tb" rest', "f")) == "a\tb"
    assert read_block(Cursor("\n x )\n)\nrest", "f")) == "\n x )\n"


def test_include_name_forms() -> None:
    assert read_include_name(Cursor(" 'a b.conf' x", "f"), 1) == "a b.conf"
    assert read_include_name(Cursor("a.conf;", "f"), 1) == "a.conf"
    with pytest.raises(ConfigError, match=r"^f:7: missing include file name$"):
        read_include_name(Cursor(";", "f"), 7)


def test_include_path_and_cycle() -> None:
    assert include_path("/etc/nss/main.conf", "x.conf") == "/etc/nss/x.conf"
    assert include_cycle(("/a", "/b"), "/c") is None
    assert include_cycle(("/a", "/b", "/c"), "/b") == "/b -> /c -> /b"


def test_scopes_innermost_first_and_marks_use() -> None:
    scopes = Scopes()
    outer = Value(1, "f", 1)
    inner = Value(2, "f", 2)
    with scopes.inside({}):
        scopes.set("v", outer)
        with scopes.inside({}) as m:
            scopes.set("v", inner)
            assert scopes.lookup("v") is inner
            assert m == {"v": inner}
        assert scopes.lookup("v") is outer
        assert scopes.lookup("missing") is None
    assert inner.used and outer.used


def test_bcrypt_hashes_are_not_variables() -> None:
    assert is_literal_dollar("2a$11$abc")
    assert not is_literal_dollar("2b")

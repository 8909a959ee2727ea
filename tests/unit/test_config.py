"""Configuration files: the NATS conf syntax (nss.config) and the mapping of
streaming keys onto Options (nss.config_apply), config.md §2."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from nss.config import (
    ConfigError,
    Value,
    go_kind,
    go_value_str,
    parse_file,
    parse_file_located,
    parse_string,
    parse_string_located,
    to_plain,
)
from nss.config_apply import (
    NATS_TOP_LEVEL_KEYS,
    UnknownKey,
    apply_streaming_config,
    go_duration_seconds,
)
from nss.options import ChannelLimits, Options

# ---------------------------------------------------------------------------
# Syntax: key/value forms


@pytest.mark.parametrize(
    "text",
    ["a: 1", "a = 1", "a 1", "a:1", "a=1", "a\t1", "  a :  1  ", "a: 1;", "a: 1,", "a\n1"],
)
def test_key_value_separators(text: str) -> None:
    assert parse_string(text) == {"a": 1}


def test_several_entries_and_terminators() -> None:
    assert parse_string("a=1;b=2,c=3\nd 4") == {"a": 1, "b": 2, "c": 3, "d": 4}


def test_quoted_keys() -> None:
    assert parse_string('\'a b\': 1\n"c:d" = 2\n"x" 3') == {"a b": 1, "c:d": 2, "x": 3}


def test_json_style_document() -> None:
    text = '{\n  "a": 1,\n  "b": {"c": "d", "e": [1, 2]}\n}\n'
    assert parse_string(text) == {"a": 1, "b": {"c": "d", "e": [1, 2]}}


def test_redefined_key_last_wins_and_moves_last() -> None:
    m = parse_string("a: 1\nb: 2\na: 3")
    assert m == {"a": 3, "b": 2}
    assert list(m) == ["b", "a"]


def test_keys_keep_their_case() -> None:
    assert parse_string("Max_Msgs: 1\nmax_msgs: 2") == {"Max_Msgs": 1, "max_msgs": 2}


# ---------------------------------------------------------------------------
# Comments


def test_comments() -> None:
    text = """
    # hash comment
    // slash comment
    a: 1 # trailing
    b: 2 // trailing
    c: x#y
    m {
      # in map
      k: v // after
      // before end
    }
    l: [
      1, # in array
      2 // again
    ]
    """
    assert parse_string(text) == {"a": 1, "b": 2, "c": "x#y", "m": {"k": "v"}, "l": [1, 2]}


# ---------------------------------------------------------------------------
# Maps and arrays


def test_maps() -> None:
    text = """
    a { b: 1, c = 2; d 3 }
    e: {
      f: {
        g: true
      }
    }
    h
    {
      i: 1
    }
    empty {}
    """
    assert parse_string(text) == {
        "a": {"b": 1, "c": 2, "d": 3},
        "e": {"f": {"g": True}},
        "h": {"i": 1},
        "empty": {},
    }


def test_map_values_may_start_on_next_line() -> None:
    assert parse_string("m {\n  k:\n    v\n}") == {"m": {"k": "v"}}


def test_arrays() -> None:
    text = """
    a: [1, 2, 3]
    b: [
      x
      "y"
      'z'
    ]
    c: [1, [2, 3], {k: v}]
    d: []
    e: [1, 2,]
    f: [a,b]
    """
    assert parse_string(text) == {
        "a": [1, 2, 3],
        "b": ["x", "y", "z"],
        "c": [1, [2, 3], {"k": "v"}],
        "d": [],
        "e": [1, 2],
        "f": ["a", "b"],
    }


# ---------------------------------------------------------------------------
# Strings


def test_bare_strings() -> None:
    text = "a: hello\nb: /tmp/x.conf\nc: nats://h:4222\nd: x=y:z\ne: a{b\nf: x\\ty"
    assert parse_string(text) == {
        "a": "hello",
        "b": "/tmp/x.conf",
        "c": "nats://h:4222",
        "d": "x=y:z",
        "e": "a{b",
        "f": "x\ty",
    }


def test_double_quoted_escapes() -> None:
    m = parse_string(r'a: "t\tn\nr\rq\"b\\x\x41"')
    assert m == {"a": 't\tn\nr\rq"b\\xA'}


def test_hex_escape_of_a_high_byte_is_a_raw_byte() -> None:
    s = parse_string(r'a: "\xff"')["a"]
    assert s.encode("utf-8", "surrogateescape") == b"\xff"


def test_single_quoted_is_raw() -> None:
    assert parse_string(r"a: 'x\ny \q'") == {"a": r"x\ny \q"}


def test_quoted_strings_may_span_lines_and_hold_anything() -> None:
    assert parse_string('a: "x\ny # not a comment"') == {"a": "x\ny # not a comment"}


def test_quoted_values_are_never_numbers_bools_or_variables() -> None:
    m = parse_string('a: "1"\nb: \'true\'\nc: "$HOME"')
    assert m == {"a": "1", "b": "true", "c": "$HOME"}


def test_empty_quoted_string() -> None:
    assert parse_string("a: \"\"\nb: ''") == {"a": "", "b": ""}


def test_block_string() -> None:
    text = "a (\nline 1\n  line (2)\n)\nb: 1\n"
    assert parse_string(text) == {"a": "\nline 1\n  line (2)\n", "b": 1}


def test_block_string_at_eof() -> None:
    assert parse_string("a (\nx\n)") == {"a": "\nx\n"}


# ---------------------------------------------------------------------------
# Numbers, sizes, booleans, dates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("42", 42),
        ("-42", -42),
        ("007", 7),
        ("1k", 1000),
        ("1K", 1000),
        ("1kb", 1024),
        ("1KB", 1024),
        ("1ki", 1024),
        ("1KiB", 1024),
        ("64m", 64_000_000),
        ("64MB", 64 * 1024**2),
        ("64mib", 64 * 1024**2),
        ("2g", 2 * 1000**3),
        ("2GB", 2 * 1024**3),
        ("1t", 1000**4),
        ("1tb", 1024**4),
        ("1p", 1000**5),
        ("1pb", 1024**5),
        ("1e", 1000**6),
        ("1eb", 1024**6),
        ("-1m", -1_000_000),
        ("-2KB", -2048),
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
    ],
)
def test_integers_and_sizes(text: str, expected: int) -> None:
    m = parse_string(f"a: {text}")
    assert m == {"a": expected}
    assert type(m["a"]) is int


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1.5", 1.5), ("-0.25", -0.25), ("10.0", 10.0)],
)
def test_floats(text: str, expected: float) -> None:
    m = parse_string(f"a: {text}")
    assert m == {"a": expected}
    assert type(m["a"]) is float


@pytest.mark.parametrize(
    "text", ["1h30m", "10s", "24h", "5ms", "1mx", "30min", "720h", "250us", "1s500ms"]
)
def test_durations_stay_strings(text: str) -> None:
    assert parse_string(f"a: {text}") == {"a": text}


def test_dotted_numbers_are_strings() -> None:
    m = parse_string("a: 127.0.0.1\nb: 127.0.0.1:4222\nc: 1.2.3-4\nd: 4222:x")
    assert m == {"a": "127.0.0.1", "b": "127.0.0.1:4222", "c": "1.2.3-4", "d": "4222:x"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("Yes", True),
        ("on", True),
        ("ON", True),
        ("false", False),
        ("False", False),
        ("no", False),
        ("NO", False),
        ("off", False),
        ("Off", False),
    ],
)
def test_booleans(text: str, expected: bool) -> None:
    m = parse_string(f"a: {text}")
    assert m["a"] is expected


def test_bool_like_words_are_strings() -> None:
    assert parse_string("a: truex\nb: y\nc: t\\x72ue") == {"a": "truex", "b": "y", "c": "true"}


def test_datetime() -> None:
    m = parse_string("a: 2016-01-02T03:04:05Z")
    assert m["a"] == dt.datetime(2016, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_numbers_in_arrays_and_maps() -> None:
    assert parse_string("a: [1, 2k, 3MB]\nb: {c: 1k}") == {
        "a": [1, 2000, 3 * 1024**2],
        "b": {"c": 1000},
    }


# ---------------------------------------------------------------------------
# Variables


def test_variable_from_earlier_key() -> None:
    assert parse_string("x: 10MB\na: $x") == {"x": 10 * 1024**2, "a": 10 * 1024**2}


def test_variable_innermost_scope_first() -> None:
    text = "x: 1\nm { x: 2, a: $x }\nn { a: $x }\no { p { a: $x } }"
    assert parse_string(text) == {
        "x": 1,
        "m": {"x": 2, "a": 2},
        "n": {"a": 1},
        "o": {"p": {"a": 1}},
    }


def test_variable_may_hold_a_map_or_array() -> None:
    m = parse_string("t { a: 1 }\nl: [1, 2]\nx: $t\ny: [$l, $t]")
    assert m["x"] == {"a": 1}
    assert m["y"] == [[1, 2], {"a": 1}]


def test_variable_only_sees_earlier_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LATER", raising=False)
    with pytest.raises(ConfigError, match="variable reference for 'LATER' on line 1"):
        parse_string("a: $LATER\nLATER: 1")


def test_variable_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSS_T_SIZE", "64MB")
    monkeypatch.setenv("NSS_T_STR", "hello")
    monkeypatch.setenv("NSS_T_BOOL", "on")
    monkeypatch.setenv("NSS_T_MAP", "{a: 1}")
    monkeypatch.setenv("NSS_T_EMPTY", "")
    m = parse_string(
        "a: $NSS_T_SIZE\nb: $NSS_T_STR\nc: $NSS_T_BOOL\nd: $NSS_T_MAP\ne: $NSS_T_EMPTY"
    )
    assert m == {"a": 64 * 1024**2, "b": "hello", "c": True, "d": {"a": 1}, "e": ""}


def test_keys_shadow_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSS_T_X", "env")
    assert parse_string("NSS_T_X: file\na: $NSS_T_X")["a"] == "file"


def test_environment_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSS_T_A", "$NSS_T_B")
    monkeypatch.setenv("NSS_T_B", "42")
    assert parse_string("a: $NSS_T_A") == {"a": 42}


def test_environment_self_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSS_T_LOOP", "$NSS_T_LOOP")
    with pytest.raises(ConfigError, match="refers to itself"):
        parse_string("a: $NSS_T_LOOP")


def test_environment_value_that_does_not_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSS_T_BAD", "a b")
    with pytest.raises(
        ConfigError, match=r"t.conf:2: variable reference for 'NSS_T_BAD' on line 2 could not"
    ):
        parse_string("x: 1\na: $NSS_T_BAD", "t.conf")


def test_unknown_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NSS_T_NOPE", raising=False)
    with pytest.raises(ConfigError) as ei:
        parse_string("\n\na: $NSS_T_NOPE", "t.conf")
    assert str(ei.value) == (
        "t.conf:3: variable reference for 'NSS_T_NOPE' on line 3 can not be found"
    )
    assert (ei.value.file, ei.value.line) == ("t.conf", 3)


def test_bcrypt_strings_are_not_variables() -> None:
    h = "$2a$11$ooo5gIGZLQ9Jb8eU2ue4oe3ehvd4VxSFx4AtxTmHc.5cc7Ij/.C2i"
    assert parse_string(f"password: {h}") == {"password": h}


def test_used_variables_are_marked() -> None:
    m = parse_string_located("x: 1\ny: 2\na: $x")
    assert m["x"].used and not m["y"].used and not m["a"].used


# ---------------------------------------------------------------------------
# Includes


def test_include_relative_to_including_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "main.conf").write_text("a: 1\ninclude sub/one.conf\nb: 2\n")
    (tmp_path / "sub" / "one.conf").write_text("c: 3\ninclude 'two.conf'\n")
    (tmp_path / "sub" / "two.conf").write_text("d: 4\n")
    assert parse_file(str(tmp_path / "main.conf")) == {"a": 1, "c": 3, "d": 4, "b": 2}


@pytest.mark.parametrize("form", ['include "inc.conf"', "include 'inc.conf'", "include inc.conf"])
def test_include_forms(tmp_path: Path, form: str) -> None:
    (tmp_path / "main.conf").write_text(f"{form}\n")
    (tmp_path / "inc.conf").write_text("x: y\n")
    assert parse_file(str(tmp_path / "main.conf")) == {"x": "y"}


def test_include_inside_a_map(tmp_path: Path) -> None:
    (tmp_path / "main.conf").write_text("streaming {\n  id: a\n  include limits.conf\n}\n")
    (tmp_path / "limits.conf").write_text("store_limits { max_msgs: 10 }\n")
    assert parse_file(str(tmp_path / "main.conf")) == {
        "streaming": {"id": "a", "store_limits": {"max_msgs": 10}}
    }


def test_include_keys_are_visible_as_variables(tmp_path: Path) -> None:
    (tmp_path / "main.conf").write_text("include vars.conf\na: $size\n")
    (tmp_path / "vars.conf").write_text("size: 1KB\n")
    assert parse_file(str(tmp_path / "main.conf")) == {"size": 1024, "a": 1024}


def test_included_values_remember_their_file(tmp_path: Path) -> None:
    (tmp_path / "main.conf").write_text("a: 1\ninclude inc.conf\n")
    (tmp_path / "inc.conf").write_text("\n\nb: 2\n")
    m = parse_file_located(str(tmp_path / "main.conf"))
    assert (m["a"].file, m["a"].line) == (str(tmp_path / "main.conf"), 1)
    assert (m["b"].file, m["b"].line) == (str(tmp_path / "inc.conf"), 3)


def test_include_absolute_path(tmp_path: Path) -> None:
    (tmp_path / "inc.conf").write_text("x: 1\n")
    assert parse_string(f"include '{tmp_path / 'inc.conf'}'") == {"x": 1}


def test_include_from_string_is_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "inc.conf").write_text("x: 1\n")
    monkeypatch.chdir(tmp_path)
    assert parse_string("include inc.conf") == {"x": 1}


def test_include_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("x: 1\ninclude b.conf\n")
    (tmp_path / "b.conf").write_text("include a.conf\n")
    with pytest.raises(ConfigError) as ei:
        parse_file(str(tmp_path / "a.conf"))
    msg = str(ei.value)
    assert msg.startswith(f"{tmp_path / 'a.conf'}:2: error parsing include file 'b.conf', ")
    assert f"{tmp_path / 'b.conf'}:1: include cycle: " in msg
    assert msg.endswith(f"{tmp_path / 'a.conf'} -> {tmp_path / 'b.conf'} -> {tmp_path / 'a.conf'}")


def test_self_include(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("include a.conf\n")
    with pytest.raises(ConfigError, match="include cycle"):
        parse_file(str(tmp_path / "a.conf"))


def test_same_file_included_twice_is_not_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("m { include c.conf }\nn { include c.conf }\n")
    (tmp_path / "c.conf").write_text("x: 1\n")
    assert parse_file(str(tmp_path / "a.conf")) == {"m": {"x": 1}, "n": {"x": 1}}


def test_include_missing_file(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("\ninclude nope.conf\n")
    with pytest.raises(ConfigError) as ei:
        parse_file(str(tmp_path / "a.conf"))
    assert str(ei.value).startswith(
        f"{tmp_path / 'a.conf'}:2: error parsing include file 'nope.conf', "
        f"error opening config file: {tmp_path / 'nope.conf'}: "
    )


def test_error_inside_included_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "a.conf").write_text("include b.conf\n")
    (tmp_path / "b.conf").write_text("x: 1\ny: [1 2]\n")
    with pytest.raises(ConfigError, match=r"b.conf:2: Expected an array value terminator"):
        parse_file(str(tmp_path / "a.conf"))


def test_include_key_with_separator_is_a_plain_key() -> None:
    assert parse_string("include: x") == {"include": "x"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("include [a]", "Expected include value but found start of an array"),
        ("include {a}", "Expected include value but found start of a map"),
        ("include (a)", "Expected include value but found start of a block"),
        ("include 1", "Expected include value but found start of a number"),
        ("include -a", "Expected include value but found start of a number"),
        ("include \\a", "Expected include value but found escape sequence"),
        ("include \n x", "Expected include value but found new line"),
        ("include 'a", "Unexpected EOF in quoted include"),
        ('include "a', "Unexpected EOF in double quoted include"),
        ("include ''", "missing include file name"),
    ],
)
def test_include_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_string(text, "t.conf")
    assert str(ei.value) == f"t.conf:1: {message}"


# ---------------------------------------------------------------------------
# Files and positions


def test_parse_file_and_positions(tmp_path: Path) -> None:
    p = tmp_path / "x.conf"
    p.write_text("a: 1\n\nm {\n  b: [\n    x\n    y\n  ]\n}\n")
    assert parse_file(str(p)) == {"a": 1, "m": {"b": ["x", "y"]}}
    located = parse_file_located(str(p))
    assert located["a"] == Value(1, str(p), 1)
    m = located["m"]
    assert m.line == 3
    b = m.value["b"]
    assert b.line == 4
    assert [(x.value, x.line) for x in b.value] == [("x", 5), ("y", 6)]
    assert b.where == f"{p}:4"


def test_to_plain_accepts_values_and_plain_data() -> None:
    v = parse_string_located("a: [1, {b: 2}]")
    assert to_plain(v) == {"a": [1, {"b": 2}]}
    assert to_plain(v["a"]) == [1, {"b": 2}]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="error opening config file: .*nope.conf: No such file"):
        parse_file(str(tmp_path / "nope.conf"))


def test_utf8_bom_and_non_ascii(tmp_path: Path) -> None:
    p = tmp_path / "x.conf"
    p.write_bytes('\ufeffa: "é"\nb: ünï\n'.encode())
    assert parse_file(str(p)) == {"a": "é", "b": "ünï"}


def test_crlf_line_endings(tmp_path: Path) -> None:
    p = tmp_path / "x.conf"
    p.write_bytes(b"a: 1\r\nm {\r\n  b: x\r\n}\r\nc: [1,\r\n 2]\r\nd (\r\ntext\r\n)\r\n")
    assert parse_file(str(p)) == {"a": 1, "m": {"b": "x"}, "c": [1, 2], "d": "\r\ntext\r\n"}


def test_separator_at_end_of_input_is_an_empty_string() -> None:
    # Go's lexer reads "key:" at the very end as "" (an empty $VAR relies on it)
    assert parse_string("a: 1\nb =") == {"a": 1, "b": ""}


def test_empty_documents() -> None:
    assert parse_string("") == {}
    assert parse_string("  \n# only a comment\n") == {}
    assert parse_string("{}") == {}


# ---------------------------------------------------------------------------
# Syntax errors (Go lexer/parser texts, prefixed with file:line)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "a: hello world",
            1,
            "Expected a top-level value to end with a new line, comment or EOF, "
            "but got 'w' instead.",
        ),
        (
            "a: 1m30s",
            1,
            "Expected a top-level value to end with a new line, comment or EOF, "
            "but got '3' instead.",
        ),
        ("a:\n1", 1, "Expected value but found new line"),
        ("a", 1, 'missing value for key "a"'),
        ("\n\nfoo", 3, 'missing value for key "foo"'),
        (":a", 1, "Unexpected key separator ':'"),
        ("m { :a }", 1, "Unexpected key separator ':'."),
        ("m { ]", 1, "Unexpected array end ']' processing map."),
        ("m { a }", 1, 'missing value for key "a"'),
        ("m { a:, }", 1, "Unexpected map value terminator ','."),
        ("m { a", 1, "Unexpected EOF processing map key."),
        ("m {\n a: 1\n", 3, "Unexpected EOF processing map."),
        ("m { 'a", 1, "Unexpected EOF processing quoted map key."),
        ('m { "a', 1, "Unexpected EOF processing double quoted map key."),
        ("'a", 1, "Unexpected EOF."),
        (
            "m { a: 1 b: 2 }",
            1,
            "Expected a map value terminator ',' or a map terminator '}', but got 'b' instead.",
        ),
        ("a: [1,,2]", 1, "Unexpected array value terminator ','."),
        ("a: [,1]", 1, "Unexpected array value terminator ','."),
        (
            "a: [1 2]",
            1,
            "Expected an array value terminator ',' or an array terminator ']', "
            "but got '2' instead.",
        ),
        ("a: [1,\n2", 2, "Unexpected EOF processing array."),
        ('a: "abc', 1, "Unexpected EOF."),
        ("a: 'abc", 1, "Unexpected EOF."),
        (
            r'a: "\q"',
            1,
            "Invalid escape character 'q'. Only the following escape characters are "
            'allowed: \\xXX, \\t, \\n, \\r, \\", \\\\.',
        ),
        (r'a: "\xZZ"', 1, "Expected two hexadecimal digits after '\\x', but got 'ZZ'"),
        ('a: "\\x4\n"', 2, "Expected two hexadecimal digits after '\\x', but hit end of line"),
        ("a: .5", 1, "Floats must start with a digit"),
        ("a: -.5", 1, "Floats must start with a digit, not '.'."),
        ("a: -x", 1, "Expected a digit but got 'x'."),
        ("a: 1.x", 1, "Floats must have a digit after the '.', but got 'x' instead."),
        ("a: 12-01", 1, "All ISO8601 dates must be in full Zulu form."),
        ("a: 2016-01-01X", 1, "Expected 'T' in ISO8601 datetime, but found 'X' instead."),
        ("a: 2016-0x", 1, "Expected digit in ISO8601 datetime, but found 'x' instead."),
        (
            "a: 2016-13-01T00:00:00Z",
            1,
            "expected Zulu formatted DateTime, but got '2016-13-01T00:00:00Z'",
        ),
        ("a: 9223372036854775808", 1, "integer '9223372036854775808' is out of the range"),
        ("a: 10000000000g", 1, "integer '10000000000g' is out of the range"),
        ("a: 1kbb", 1, "invalid size suffix in '1kbb'"),
        ("a: 1" + "0" * 400 + ".5", 1, "float '1" + "0" * 400 + ".5' is out of the range"),
        ("a (\nabc\n", 3, "Unexpected EOF processing block."),
        ("/a: 1", 1, "Unexpected '/'."),
    ],
)
def test_syntax_errors(text: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_string(text, "t.conf")
    assert str(ei.value) == f"t.conf:{line}: {message}"
    assert ei.value.line == line
    assert ei.value.file == "t.conf"


# ---------------------------------------------------------------------------
# Go rendering helpers


def test_go_kind() -> None:
    assert [go_kind(x) for x in ("s", True, 1, 1.5, {}, [], dt.datetime(2000, 1, 1))] == [
        "string",
        "bool",
        "int64",
        "float64",
        "map",
        "slice",
        "struct",
    ]
    assert go_kind(Value(1, "f", 1)) == "int64"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("abc", "abc"),
        (True, "true"),
        (False, "false"),
        (12, "12"),
        (1.5, "1.5"),
        (1e6, "1e+06"),
        (123456.0, "123456"),
        (0.0001, "0.0001"),
        (1234567.0, "1.234567e+06"),
        (0.00001, "1e-05"),
        (-2.5, "-2.5"),
        (0.0, "0"),
        ([1, "a"], "[1 a]"),
        ({"b": 1, "a": [2]}, "map[a:[2] b:1]"),
        (dt.datetime(2016, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "2016-01-02 03:04:05 +0000 UTC"),
    ],
)
def test_go_value_str(value: object, text: str) -> None:
    assert go_value_str(value) == text


# ---------------------------------------------------------------------------
# apply_streaming_config


def _apply(
    tmp_path: Path,
    text: str,
    explicit: set[str] | None = None,
    opts: Options | None = None,
    strict: bool = True,
) -> tuple[Options, list[UnknownKey]]:
    p = tmp_path / "s.conf"
    p.write_text(text)
    opts = opts or Options()
    unknown = apply_streaming_config(opts, str(p), explicit or set(), strict=strict)
    return opts, unknown


def _apply_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as ei:
        _apply(tmp_path, text)
    prefix = f"{tmp_path / 's.conf'}:"
    msg = str(ei.value)
    assert msg.startswith(prefix)
    return msg[len(prefix) :]


FULL = """
streaming {
  cluster_id: my_cluster
  discover_prefix: "_MY.discover"
  store: file
  dir: /data/stan
  sd: true
  sv: true
  nats_server_url: "nats://h:4222"
  credentials: /c.creds
  username: u
  password: p
  token: t
  nkey_seed_file: /seed
  secure: true
  hb_interval: "10s"
  hb_timeout: "1.5s"
  hb_fail_count: 3
  ft_group: ft
  partitioning: true
  syslog_name: stan
  encryption_cipher: AES
  encryption_key: secret
  replace_durable: true
  tls {
    client_cert: /cert
    client_key: /key
    client_ca: /ca
    server_name: srv
    skip_verify: true
  }
  store_limits {
    max_channels: 50
    max_subs: 10
    max_msgs: 100
    max_bytes: 1MB
    max_age: "1h"
    max_inactivity: "30m"
    channels {
      "orders.>": { max_msgs: 0 }
      audit: { max_bytes: 10GB, max_age: "720h", max_subs: 0, max_inactivity: "0" }
      empty: {}
    }
  }
  file_options {
    compact: false
    compact_frag: 20
    compact_interval: 60
    compact_min_size: 2MB
    buffer_size: 4MB
    crc: false
    crc_poly: 123
    sync: false
    slice_max_msgs: 1000
    slice_max_bytes: 16MB
    slice_max_age: "2h"
    slice_archive_script: /bin/archive
    fds_limit: 64
    parallel_recovery: 4
    read_buffer_size: 1MB
    auto_sync: "5s"
  }
  sql_options {
    driver: postgres
    source: "dbname=x"
    no_caching: true
    max_open_conns: 5
    bulk_insert_limit: 100
  }
  cluster {
    node_id: a
    bootstrap: true
    peers: [b, c]
    log_path: /raft
    log_cache_size: 10
    log_snapshots: 3
    trailing_logs: 20
    sync: true
    proceed_on_restore_failure: true
    allow_add_remove_node: true
    raft_logging: true
    raft_heartbeat_timeout: "2s"
    raft_election_timeout: "2s"
    raft_lease_timeout: "1s"
    raft_commit_timeout: "100ms"
    bolt_free_list_sync: true
    bolt_free_list_map: true
    nodes_connections: true
  }
}
"""


def test_full_streaming_block(tmp_path: Path) -> None:
    opts, unknown = _apply(tmp_path, FULL)
    assert unknown == []
    s = opts.streaming
    assert s.cluster_id == "my_cluster"
    assert s.discover_prefix == "_MY.discover"
    assert s.store_type == "FILE"
    assert s.file_path == "/data/stan"
    assert s.debug and s.trace
    assert s.nats_server_url == "nats://h:4222"
    assert s.credentials == "/c.creds"
    assert (s.username, s.password, s.token, s.nkey_seed_file) == ("u", "p", "t", "/seed")
    assert s.secure
    assert (s.hb_interval, s.hb_timeout, s.hb_fail_count) == (10.0, 1.5, 3)
    assert s.ft_group == "ft"
    assert s.partitioning
    assert s.syslog_name == "stan"
    assert (s.encrypt, s.encryption_cipher, s.encryption_key) == (True, "AES", "secret")
    assert s.replace_durable
    assert (s.tls_client_cert, s.tls_client_key, s.tls_client_cacert) == ("/cert", "/key", "/ca")
    assert s.tls_server_name == "srv" and s.tls_skip_verify
    sl = s.store_limits
    assert (sl.max_channels, sl.max_subscriptions, sl.max_msgs) == (50, 10, 100)
    assert (sl.max_bytes, sl.max_age, sl.max_inactivity) == (1024**2, 3600.0, 1800.0)
    assert sl.per_channel == {
        "orders.>": ChannelLimits(max_msgs=-1),
        "audit": ChannelLimits(
            max_bytes=10 * 1024**3, max_age=720 * 3600.0, max_subscriptions=-1, max_inactivity=-1.0
        ),
        "empty": ChannelLimits(),
    }
    f = s.file_options
    assert not f.compact_enabled
    assert (f.compact_frag, f.compact_interval, f.compact_min_size) == (20, 60, 2 * 1024**2)
    assert (f.buffer_size, f.do_crc, f.crc_poly, f.do_sync) == (4 * 1024**2, False, 123, False)
    assert (f.slice_max_msgs, f.slice_max_bytes, f.slice_max_age) == (1000, 16 * 1024**2, 7200.0)
    assert f.slice_archive_script == "/bin/archive"
    assert (f.fds_limit, f.parallel_recovery, f.read_buffer_size) == (64, 4, 1024**2)
    assert f.auto_sync == 5.0
    q = s.sql_options
    assert (q.driver, q.source, q.no_caching) == ("postgres", "dbname=x", True)
    assert (q.max_open_conns, q.bulk_insert_limit) == (5, 100)
    c = s.cluster
    assert c.clustered and c.bootstrap
    assert (c.node_id, c.peers, c.log_path) == ("a", ["b", "c"], "/raft")
    assert (c.log_cache_size, c.log_snapshots, c.trailing_logs) == (10, 3, 20)
    assert c.sync and c.proceed_on_restore_failure and c.allow_add_remove_node and c.raft_logging


ALIASES = [
    ("id: x", "cluster_id", "x"),
    ("cid: x", "cluster_id", "x"),
    ("st: sql", "store_type", "SQL"),
    ("store_type: Memory", "store_type", "MEMORY"),
    ("storetype: FILE", "store_type", "FILE"),
    ("datastore: /d", "file_path", "/d"),
    ("stan_debug: true", "debug", True),
    ("stan_trace: true", "trace", True),
    ("ns: nats://x", "nats_server_url", "nats://x"),
    ("nats_server: nats://x", "nats_server_url", "nats://x"),
    ("user: u", "username", "u"),
    ("pass: p", "password", "p"),
    ("hbi: '1s'", "hb_interval", 1.0),
    ("server_to_client_hb_interval: '2s'", "hb_interval", 2.0),
    ("hbt: '1s'", "hb_timeout", 1.0),
    ("server_to_client_hb_timeout: '2s'", "hb_timeout", 2.0),
    ("hbf: 7", "hb_fail_count", 7),
    ("server_to_client_hb_fail_count: 8", "hb_fail_count", 8),
    ("ft_group_name: g", "ft_group", "g"),
    ("replace_durables: true", "replace_durable", True),
    ("replace_duplicate_durable: true", "replace_durable", True),
    ("replace_duplicate_durables: true", "replace_durable", True),
    ("encrypt: true", "encrypt", True),
    ("tls { client_cacert: /ca }", "tls_client_cacert", "/ca"),
    ("tls { server_hostname: h }", "tls_server_name", "h"),
    ("tls { insecure: true }", "tls_skip_verify", True),
    ("limits { mc: 5 }", "store_limits.max_channels", 5),
    ("storelimits { maxchannels: 5 }", "store_limits.max_channels", 5),
    ("store_limits { msu: 5 }", "store_limits.max_subscriptions", 5),
    ("store_limits { max_subscriptions: 5 }", "store_limits.max_subscriptions", 5),
    ("store_limits { maxsubscriptions: 5 }", "store_limits.max_subscriptions", 5),
    ("store_limits { mm: 5 }", "store_limits.max_msgs", 5),
    ("store_limits { maxmsgs: 5 }", "store_limits.max_msgs", 5),
    ("store_limits { max_count: 5 }", "store_limits.max_msgs", 5),
    ("store_limits { maxcount: 5 }", "store_limits.max_msgs", 5),
    ("store_limits { mb: 5KB }", "store_limits.max_bytes", 5120),
    ("store_limits { maxbytes: 5 }", "store_limits.max_bytes", 5),
    ("store_limits { ma: '1m' }", "store_limits.max_age", 60.0),
    ("store_limits { maxage: '1m' }", "store_limits.max_age", 60.0),
    ("store_limits { mi: '1m' }", "store_limits.max_inactivity", 60.0),
    ("store_limits { maxinactivity: '1m' }", "store_limits.max_inactivity", 60.0),
    ("file { compact_enabled: false }", "file_options.compact_enabled", False),
    ("file { compact_fragmentation: 9 }", "file_options.compact_frag", 9),
    ("file { do_crc: false }", "file_options.do_crc", False),
    ("file { do_sync: false }", "file_options.do_sync", False),
    ("file { sync_on_flush: false }", "file_options.do_sync", False),
    ("file { slice_max_count: 9 }", "file_options.slice_max_msgs", 9),
    ("file { slice_msgs: 9 }", "file_options.slice_max_msgs", 9),
    ("file { slice_count: 9 }", "file_options.slice_max_msgs", 9),
    ("file { slice_max_size: 9 }", "file_options.slice_max_bytes", 9),
    ("file { slice_bytes: 9 }", "file_options.slice_max_bytes", 9),
    ("file { slice_size: 9 }", "file_options.slice_max_bytes", 9),
    ("file { slice_age: '1s' }", "file_options.slice_max_age", 1.0),
    ("file { slice_max_time: '1s' }", "file_options.slice_max_age", 1.0),
    ("file { slice_time_limit: '1s' }", "file_options.slice_max_age", 1.0),
    ("file { slice_archive: s }", "file_options.slice_archive_script", "s"),
    ("file { slice_script: s }", "file_options.slice_archive_script", "s"),
    ("file { file_descriptors_limit: 9 }", "file_options.fds_limit", 9),
    ("file { file_read_buffer_size: 9 }", "file_options.read_buffer_size", 9),
    ("file { file_auto_sync: '1s' }", "file_options.auto_sync", 1.0),
    ("file_options { crc: false }", "file_options.do_crc", False),
    ("sql { max_conns: 9 }", "sql_options.max_open_conns", 9),
    ("sql_options { driver: mysql }", "sql_options.driver", "mysql"),
]


def _get(opts: Options, path: str) -> object:
    obj: object = opts.streaming
    for attr in path.split("."):
        obj = getattr(obj, attr)
    return obj


@pytest.mark.parametrize(("text", "path", "expected"), ALIASES)
def test_aliases(tmp_path: Path, text: str, path: str, expected: object) -> None:
    opts, _ = _apply(tmp_path, f"streaming {{ {text} }}")
    assert _get(opts, path) == expected


def test_keys_are_case_insensitive(tmp_path: Path) -> None:
    opts, _ = _apply(
        tmp_path,
        "STREAMING { Cluster_ID: x\n"
        "  STORE_LIMITS { Max_Msgs: 5, CHANNELS { Foo: { MAX_MSGS: 1 } } } }",
    )
    assert opts.streaming.cluster_id == "x"
    assert opts.streaming.store_limits.max_msgs == 5
    # channel names are not keys: their case is kept
    assert opts.streaming.store_limits.per_channel == {"Foo": ChannelLimits(max_msgs=1)}


def test_top_level_without_streaming_block(tmp_path: Path) -> None:
    text = """
    port: 4222
    http: 8222
    debug: true
    authorization { user: a, password: b }
    cluster_id: top
    store_limits { max_msgs: 7 }
    """
    opts, unknown = _apply(tmp_path, text)
    assert unknown == []
    assert opts.streaming.cluster_id == "top"
    assert opts.streaming.store_limits.max_msgs == 7
    assert not opts.streaming.debug


def test_streaming_block_hides_top_level(tmp_path: Path) -> None:
    opts, _ = _apply(tmp_path, "cluster_id: top\nstreaming { store: file }")
    assert opts.streaming.cluster_id == "test-cluster"
    assert opts.streaming.store_type == "FILE"


def test_top_level_nats_tls_and_cluster_are_read_like_go(tmp_path: Path) -> None:
    # Without a streaming block, Go reads the NATS tls/cluster maps as the
    # streaming ones: "insecure" is understood, NATS-only keys are ignored
    # and the mere presence of "cluster" enables clustering.
    text = """
    tls { cert_file: /c, key_file: /k, insecure: true, timeout: 2 }
    cluster { listen: 0.0.0.0:6222, routes: [nats://a:6222] }
    """
    opts, unknown = _apply(tmp_path, text)
    assert unknown == []
    assert opts.streaming.tls_skip_verify
    assert opts.streaming.cluster.clustered


def test_explicit_flags_win(tmp_path: Path) -> None:
    opts = Options()
    opts.streaming.cluster_id = "from-flag"
    opts.streaming.store_limits.max_msgs = 12
    explicit = {"streaming.cluster_id", "streaming.store_limits.max_msgs", "streaming.encrypt"}
    text = "streaming { cid: file, store_limits { max_msgs: 99, max_bytes: 1 }, encryption_key: k }"
    opts, _ = _apply(tmp_path, text, explicit, opts)
    s = opts.streaming
    assert s.cluster_id == "from-flag"
    assert s.store_limits.max_msgs == 12
    assert s.store_limits.max_bytes == 1
    assert s.encryption_key == "k"
    assert not s.encrypt


def test_explicit_keys_are_still_type_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='parameter "cid" value is expected to be string'):
        _apply(tmp_path, "streaming { cid: 1 }", {"streaming.cluster_id"})


def test_cluster_presence_enables_clustering_unless_flag(tmp_path: Path) -> None:
    opts, _ = _apply(tmp_path, "streaming { cluster {} }")
    assert opts.streaming.cluster.clustered
    opts, _ = _apply(tmp_path, "streaming { cluster {} }", {"streaming.cluster.clustered"})
    assert not opts.streaming.cluster.clustered


def test_per_channel_entries_replace_and_accumulate(tmp_path: Path) -> None:
    text = """
    streaming { store_limits {
      channels { a: { max_msgs: 1 }, b: { max_msgs: 2 } }
      per_channel { a: { max_bytes: 3 } }
    } }
    """
    opts, _ = _apply(tmp_path, text)
    assert opts.streaming.store_limits.per_channel == {
        "b": ChannelLimits(max_msgs=2),
        "a": ChannelLimits(max_bytes=3),
    }


@pytest.mark.parametrize(
    "key", ["channels", "channels_limits", "channelslimits", "per_channel", "per_channel_limits"]
)
def test_per_channel_aliases(tmp_path: Path, key: str) -> None:
    opts, _ = _apply(tmp_path, f"streaming {{ store_limits {{ {key} {{ 'a.*': {{ mm: 0 }} }} }} }}")
    assert opts.streaming.store_limits.per_channel == {"a.*": ChannelLimits(max_msgs=-1)}


def test_per_channel_negative_values_kept(tmp_path: Path) -> None:
    opts, _ = _apply(tmp_path, "streaming { limits { channels { a: { mm: -5, ma: '-1s' } } } }")
    assert opts.streaming.store_limits.per_channel["a"] == ChannelLimits(max_msgs=-5, max_age=-1.0)


def test_variables_are_not_unknown_keys(tmp_path: Path) -> None:
    text = "streaming {\n  limit: 10\n  store_limits { max_msgs: $limit }\n}"
    opts, unknown = _apply(tmp_path, text)
    assert unknown == []
    assert opts.streaming.store_limits.max_msgs == 10


def test_channel_count_within_limit(tmp_path: Path) -> None:
    text = "streaming { store_limits { max_channels: 2, channels { a: {}, b: {}, 'c.>': {} } } }"
    opts, _ = _apply(tmp_path, text)
    assert len(opts.streaming.store_limits.per_channel) == 3


def test_channel_count_uses_flag_value(tmp_path: Path) -> None:
    opts = Options()
    opts.streaming.store_limits.max_channels = 0
    text = "streaming { store_limits { max_channels: 1, channels { a: {}, b: {} } } }"
    opts, _ = _apply(tmp_path, text, {"streaming.store_limits.max_channels"}, opts)
    assert opts.streaming.store_limits.max_channels == 0


# Errors: every one names file:line first.


def _typ(key: str, want: str, got: str) -> str:
    return f'parameter "{key}" value is expected to be {want}, got {got}'


SL = "streaming { store_limits "
CH = SL + "{ channels "

APPLY_ERRORS = [
    ("streaming: 1", "1: expected streaming section to be a map/struct, got 1"),
    ("streaming: [a, b]", "1: expected streaming section to be a map/struct, got [a b]"),
    ("streaming {\n cid: 1\n}", "2: " + _typ("cid", "string", "int64")),
    ('streaming { sd: "yes" }', "1: " + _typ("sd", "bool", "string")),
    ("streaming { hbf: 1.5 }", "1: " + _typ("hbf", "int64", "float64")),
    ("streaming { hbi: 10 }", "1: " + _typ("hbi", "string", "int64")),
    ("streaming { hbi: 1m }", "1: " + _typ("hbi", "string", "int64")),
    ("streaming { ID: {} }", "1: " + _typ("ID", "string", "map")),
    ("streaming { secure: [] }", "1: " + _typ("secure", "bool", "slice")),
    ("streaming { dir: 2016-01-01T00:00:00Z }", "1: " + _typ("dir", "string", "struct")),
    ("streaming { hbi: 'x' }", '1: time: invalid duration "x"'),
    ("streaming { hbi: '' }", '1: time: invalid duration ""'),
    ("streaming { hbi: '10' }", '1: time: missing unit in duration "10"'),
    ("streaming { hbi: '1d' }", '1: time: unknown unit "d" in duration "1d"'),
    ("streaming { store: foo }", "1: unknown store type: foo"),
    ("streaming { encryption_key: 1 }", "1: " + _typ("encryption_key", "string", "int64")),
    ("streaming { tls: 1 }", "1: expected TLS to be a map/struct, got 1"),
    ("streaming { tls { skip_verify: 1 } }", "1: " + _typ("skip_verify", "bool", "int64")),
    ("streaming { cluster: x }", "1: expected cluster to be a map/struct, got x"),
    ("streaming { cluster { peers: a } }", "1: " + _typ("peers", "slice", "string")),
    (
        "streaming { cluster {\n peers: [a,\n 1] } }",
        '3: parameter "peers" element is expected to be string, got int64',
    ),
    (
        "streaming { cluster { raft_lease_timeout: 1 } }",
        "1: " + _typ("raft_lease_timeout", "string", "int64"),
    ),
    (SL + ": 1 }", "1: expected store limits to be a map/struct, got 1"),
    (SL + "{ mc: '1' } }", "1: " + _typ("mc", "int64", "string")),
    (SL + "{ max_bytes: 1.5 } }", "1: " + _typ("max_bytes", "int64", "float64")),
    (SL + "{ max_age: 1 } }", "1: " + _typ("max_age", "string", "int64")),
    (CH + ": [] } }", "1: expected per channel limits to be a map/struct, got []"),
    (CH + "{ a: 1 } } }", "1: expected channel limits to be a map/struct, got 1"),
    (CH + "{\n 'a..b': {} } } }", '2: invalid channel name "a..b"'),
    (CH + "{ 'a.>.b': {} } } }", '1: invalid channel name "a.>.b"'),
    (CH + "{ 'a*': {} } } }", '1: invalid channel name "a*"'),
    (CH + "{ '': {} } } }", '1: invalid channel name ""'),
    (CH + "{ a: { mm: x } } } }", "1: " + _typ("mm", "int64", "string")),
    (CH + "{ a: { ma: 'z' } } } }", '1: time: invalid duration "z"'),
    (
        SL + "{\n max_channels: 2\n channels {\n a: {}, b: {}, c: {} } } }",
        "3: too many channels defined (3). The max channels limit is set to 2",
    ),
    (
        SL + "{\n channels {\n a: {}, b: {}, c: {} }\n max_channels: 1 } }",
        "2: too many channels defined (2). The max channels limit is set to 1",
    ),
    ("streaming { file: 1 }", "1: expected file options to be a map/struct, got 1"),
    ("streaming { file { compact: 1 } }", "1: " + _typ("compact", "bool", "int64")),
    ("streaming { file { buffer_size: '1M' } }", "1: " + _typ("buffer_size", "int64", "string")),
    ("streaming { file { auto_sync: 1 } }", "1: " + _typ("auto_sync", "string", "int64")),
    ("streaming { sql: 1 }", "1: expected SQL options to be a map/struct, got 1"),
    # Go names SQL keys lower-cased in type errors
    ("streaming { sql { DRIVER: 1 } }", "1: " + _typ("driver", "string", "int64")),
]


@pytest.mark.parametrize(("text", "message"), APPLY_ERRORS)
def test_apply_errors(tmp_path: Path, text: str, message: str) -> None:
    assert _apply_error(tmp_path, text) == message


def test_apply_syntax_error(tmp_path: Path) -> None:
    assert _apply_error(tmp_path, "streaming {\n a: [1 2]\n}").startswith(
        "2: Expected an array value terminator"
    )


def test_apply_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="error opening config file"):
        apply_streaming_config(Options(), str(tmp_path / "nope.conf"), set())


# Unknown keys


@pytest.mark.parametrize(
    ("text", "line", "key", "section"),
    [
        ("streaming {\n  bogus: 1\n}", 2, "bogus", "streaming"),
        ("Streaming {\n  port: 4222\n}", 2, "port", "Streaming"),
        ("streaming { store_limits {\n max_msg: 1 } }", 2, "max_msg", "streaming.store_limits"),
        ("streaming { tls { cert_file: x } }", 1, "cert_file", "streaming.tls"),
        ("streaming { cluster { listen: x } }", 1, "listen", "streaming.cluster"),
        ("streaming { file { compact_sz: 1 } }", 1, "compact_sz", "streaming.file"),
        ("streaming { sql { drv: x } }", 1, "drv", "streaming.sql"),
        (
            "streaming { store_limits { channels { a: { max_channels: 1 } } } }",
            1,
            "max_channels",
            "streaming.store_limits.channels.a",
        ),
        ("port: 4222\n\nbogus: 1", 3, "bogus", ""),
        ("store_limits { nope: 1 }", 1, "nope", "store_limits"),
    ],
)
def test_unknown_keys(tmp_path: Path, text: str, line: int, key: str, section: str) -> None:
    p = str(tmp_path / "s.conf")
    uk = UnknownKey(p, line, key, section)
    with pytest.raises(ConfigError) as ei:
        _apply(tmp_path, text)
    where = f" in {section}" if section else ""
    assert str(ei.value) == f'{p}:{line}: unknown field "{key}"{where}'
    assert str(ei.value) == str(uk)
    assert (ei.value.file, ei.value.line) == (p, line)
    # Non-strict: collected instead, and the rest of the file still applies.
    opts, unknown = _apply(tmp_path, text + "\nstreaming_extra_marker: 1", strict=False)
    assert unknown[0] == uk


def test_non_strict_collects_all_and_applies_the_rest(tmp_path: Path) -> None:
    text = "streaming {\n a: 1\n cid: x\n store_limits { b: 2, mm: 3 }\n}"
    opts, unknown = _apply(tmp_path, text, strict=False)
    assert [(u.key, u.line) for u in unknown] == [("a", 2), ("b", 4)]
    assert opts.streaming.cluster_id == "x"
    assert opts.streaming.store_limits.max_msgs == 3


def test_nats_top_level_keys_are_not_unknown(tmp_path: Path) -> None:
    text = "\n".join(f"{k}: 1" for k in sorted(NATS_TOP_LEVEL_KEYS - {"tls", "cluster"}))
    _, unknown = _apply(tmp_path, text)
    assert unknown == []


def test_duration_helper_matches_go() -> None:
    assert go_duration_seconds("1h30m") == 5400.0
    assert go_duration_seconds("-1.5s") == -1.5
    assert go_duration_seconds("0") == 0.0
    with pytest.raises(ValueError, match=r'^time: unknown unit "x" in duration "1s2x"$'):
        go_duration_seconds("1s2x")


def test_explicit_set_is_not_mutated(tmp_path: Path) -> None:
    explicit = {"streaming.cluster_id"}
    _apply(tmp_path, "streaming { cid: x }", explicit)
    assert explicit == {"streaming.cluster_id"}


def test_environment_variable_in_streaming_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NSS_T_MAXMSGS", "5k")
    opts, _ = _apply(tmp_path, "streaming { store_limits { max_msgs: $NSS_T_MAXMSGS } }")
    assert opts.streaming.store_limits.max_msgs == 5000
    assert os.environ["NSS_T_MAXMSGS"] == "5k"

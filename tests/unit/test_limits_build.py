"""Store limits: subject trie order, inheritance and validation (stores.md §2)."""

from __future__ import annotations

import gc
from dataclasses import replace

import pytest

from nss.options import ChannelLimits, StoreLimits
from nss.stores import limits as lim
from nss.stores.base import effective_limits
from nss.stores.limits import (
    build,
    go_quote,
    invalidate,
    lookup,
    resolved,
    validate,
)
from nss.subjects import Sublist, is_channel_name_literal, is_channel_name_valid

WORKED = [">", "foo.>", "foo.*", "foo.bar", "*.bar", "foo.*.baz", "foo.bar.baz", "*.*"]


def _sublist(names: list[str]) -> Sublist[str]:
    s: Sublist[str] = Sublist()
    for n in names:
        s.insert(n, n)
    return s


# ---------------------------------------------------------------------------
# The worked example of stores.md §2.3, exactly


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("foo.bar", [">", "*.*", "*.bar", "foo.>", "foo.*", "foo.bar"]),
        ("foo.x", [">", "*.*", "foo.>", "foo.*"]),
        ("a.bar", [">", "*.*", "*.bar"]),
        ("foo.bar.x", [">", "foo.>"]),
        ("foo.>", [">", "*.*", "foo.>", "foo.*"]),
        ("foo.*.baz", [">", "foo.>", "foo.*.baz"]),
        ("foo.bar.baz", [">", "foo.>", "foo.*.baz", "foo.bar.baz"]),
        ("foo", [">"]),
        ("x.y.z", [">"]),
    ],
)
def test_worked_example_match_order(query: str, expected: list[str]) -> None:
    assert _sublist(WORKED).match(query) == expected
    # the same through the resolved structure
    sl = StoreLimits(per_channel={n: ChannelLimits() for n in WORKED})
    assert build(sl).match(query) == expected


def test_worked_example_subjects_order() -> None:
    assert _sublist(WORKED).subjects() == [
        ">",
        "*.*",
        "*.bar",
        "foo.>",
        "foo.*",
        "foo.*.baz",
        "foo.bar",
        "foo.bar.baz",
    ]


def _parents(names: list[str]) -> dict[str, str]:
    """Find each entry's parent: give every other entry a distinct value and
    leave the entry's own at 0 (inherit); the value it ends up with names the
    entry it inherited from."""
    parents: dict[str, str] = {}
    for name in names:
        values = {n: i + 1 for i, n in enumerate(names)}
        per = {n: ChannelLimits(max_msgs=0 if n == name else values[n]) for n in names}
        sl = StoreLimits(max_msgs=999, per_channel=per)
        got = build(sl).per_channel[name].max_msgs
        by_value = {v: n for n, v in values.items()}
        parents[name] = "global" if got == 999 else by_value[got]
    return parents


def test_worked_example_parents() -> None:
    assert _parents(WORKED) == {
        ">": "global",
        "*.*": ">",
        "*.bar": "*.*",
        "foo.>": "*.*",  # sic: Match("foo.>") reads ">" as a token matched by "*.*"
        "foo.*": "foo.>",
        "foo.bar": "foo.*",
        "foo.*.baz": "foo.>",
        "foo.bar.baz": "foo.*.baz",
    }


@pytest.mark.parametrize(
    ("channel", "entry"),
    [("foo.x", "foo.*"), ("foo.bar.x", "foo.>"), ("a.bar", "*.bar"), ("foo.bar", "foo.bar")],
)
def test_worked_example_channel_uses_last_match(channel: str, entry: str) -> None:
    per = {n: ChannelLimits(max_msgs=i + 1) for i, n in enumerate(WORKED)}
    sl = StoreLimits(per_channel=per)
    found = lookup(sl, channel)
    assert found is not None
    assert found.max_msgs == per[entry].max_msgs


# ---------------------------------------------------------------------------
# Inheritance


def test_go_inheritance_table() -> None:
    """TestLimitsInheritance of the Go server (stores/limits_test.go)."""
    sl = StoreLimits(
        max_msgs=11, max_bytes=12, max_age=13.0, max_subscriptions=14, max_inactivity=15.0
    )

    def add(name: str, msgs: int, byts: int, age: float, subs: int, inact: float) -> None:
        sl.per_channel[name] = ChannelLimits(msgs, byts, age, subs, inact)

    add("*.*", 0, 2, 0, 0, 0)
    add("*.>", 0, 0, 0, 5, 0)
    add("foo.>", 10, 0, 0, 0, 0)
    add("foo.*.>", 0, 20, 0, 0, 0)
    add("foo.*.*.>", 0, 0, 30, 0, 0)
    add("foo.a.b.c", 0, 0, 0, 40, 0)
    add("foo.d.e.f", 50, 0, 60, 0, 0)
    add("foo.baz", 0, 70, 0, 80, 0)
    add("bar.*.>", 90, 0, 0, 0, 0)
    add("bar.baz.>", 0, 100, 0, 0, 110)
    add("bar.baz.boz", 0, 0, 0, 0, 120)
    add("bar.baz.bat", 0, 0, 0, 0, 110)
    res = build(sl).per_channel
    expected = {
        "*.>": (11, 12, 13, 5, 15),
        "*.*": (11, 2, 13, 5, 15),
        "foo.>": (10, 2, 13, 5, 15),
        "foo.*.>": (10, 20, 13, 5, 15),
        "foo.*.*.>": (10, 20, 30, 5, 15),
        "foo.a.b.c": (10, 20, 30, 40, 15),
        "foo.d.e.f": (50, 20, 60, 5, 15),
        "foo.baz": (10, 70, 13, 80, 15),
        "bar.*.>": (90, 12, 13, 5, 15),
        "bar.baz.>": (90, 100, 13, 5, 110),
        "bar.baz.boz": (90, 100, 13, 5, 120),
        "bar.baz.bat": (90, 100, 13, 5, 110),
    }
    for name, (msgs, byts, age, subs, inact) in expected.items():
        assert res[name] == ChannelLimits(msgs, byts, age, subs, inact), name


@pytest.mark.parametrize("name", ["foo", "foo.*"])
@pytest.mark.parametrize("field", lim._FIELDS)
def test_omitted_fields_inherit_global(name: str, field: str) -> None:
    sl = StoreLimits(
        max_msgs=11, max_bytes=12, max_age=13.0, max_subscriptions=14, max_inactivity=15.0
    )
    cl = ChannelLimits()
    setattr(cl, field, 10)
    sl.per_channel[name] = cl
    got = build(sl).per_channel[name]
    for f in lim._FIELDS:
        assert getattr(got, f) == (10 if f == field else getattr(sl, f))


@pytest.mark.parametrize("field", lim._FIELDS)
def test_negative_means_unlimited(field: str) -> None:
    sl = StoreLimits(max_age=3600.0, max_inactivity=60.0)
    cl = ChannelLimits()
    setattr(cl, field, -1)
    sl.per_channel["foo.*"] = cl
    got = build(sl).per_channel["foo.*"]
    assert getattr(got, field) == 0
    for f in lim._FIELDS:
        if f != field:
            assert getattr(got, f) == getattr(sl, f)


def test_unlimited_wildcard_is_inherited_as_unlimited() -> None:
    # "orders.>": { max_msgs: 0 } in a config file is stored as -1
    sl = StoreLimits(max_msgs=100, per_channel={"orders.>": ChannelLimits(max_msgs=-1)})
    sl.per_channel["orders.eu"] = ChannelLimits(max_bytes=5)
    assert lookup(sl, "orders.eu") == replace(
        effective_limits(StoreLimits(), "x"), max_msgs=0, max_bytes=5
    )
    assert lookup(sl, "orders.us.east") == replace(effective_limits(StoreLimits(), "x"), max_msgs=0)


def test_wildcards_override() -> None:
    """TestLimitsPerChannelOverride: foo.* wins over foo.> for its own values."""
    sl = StoreLimits(
        per_channel={"foo.>": ChannelLimits(max_msgs=10), "foo.*": ChannelLimits(max_msgs=20)}
    )
    res = build(sl)
    assert res.per_channel["foo.*"].max_msgs == 20
    assert res.lookup("foo.a") == replace(res.global_limits, max_msgs=20)
    assert res.lookup("foo.a.b") == replace(res.global_limits, max_msgs=10)


def test_build_does_not_mutate_its_input() -> None:
    per = {"foo.*": ChannelLimits(max_msgs=-1), "foo.bar": ChannelLimits()}
    sl = StoreLimits(per_channel=per)
    build(sl)
    assert sl.per_channel == {"foo.*": ChannelLimits(max_msgs=-1), "foo.bar": ChannelLimits()}


def test_literal_only_entries() -> None:
    sl = StoreLimits(per_channel={"a": ChannelLimits(max_msgs=5), "b": ChannelLimits()})
    res = build(sl)
    assert res.per_channel["a"] == replace(res.global_limits, max_msgs=5)
    assert res.per_channel["b"] == res.global_limits
    assert res.lookup("c") is None
    assert res.effective("c") == res.global_limits


# ---------------------------------------------------------------------------
# lookup / caching / base.effective_limits


def test_lookup_without_entries() -> None:
    assert lookup(StoreLimits(), "foo") is None


def test_lookup_no_match_falls_back_in_effective_limits() -> None:
    sl = StoreLimits(max_msgs=7, per_channel={"foo.*": ChannelLimits(max_msgs=1)})
    assert lookup(sl, "bar") is None
    assert effective_limits(sl, "bar").max_msgs == 7
    assert effective_limits(sl, "foo.x").max_msgs == 1


def test_lookup_returns_copies() -> None:
    sl = StoreLimits(per_channel={"a": ChannelLimits(max_msgs=5)})
    first = lookup(sl, "a")
    assert first is not None
    first.max_msgs = 999
    assert lookup(sl, "a") == replace(first, max_msgs=5)


def test_lookup_is_cached_and_follows_mutation() -> None:
    sl = StoreLimits(per_channel={"a": ChannelLimits(max_msgs=5)})
    r1 = resolved(sl)
    assert resolved(sl) is r1
    sl.per_channel["a"].max_msgs = 6
    r2 = resolved(sl)
    assert r2 is not r1
    assert r2.per_channel["a"].max_msgs == 6
    sl.max_bytes = 3
    assert resolved(sl).per_channel["a"].max_bytes == 3
    invalidate(sl)
    assert resolved(sl) is not r2


def test_cache_entries_go_with_their_object() -> None:
    sl = StoreLimits(per_channel={"a": ChannelLimits(max_msgs=5)})
    resolved(sl)
    key = id(sl)
    assert key in lim._resolved_cache
    del sl
    gc.collect()
    assert key not in lim._resolved_cache


def test_clone_resolves_like_the_original() -> None:
    sl = StoreLimits(per_channel={"a.*": ChannelLimits(max_msgs=5)})
    assert lookup(sl.clone(), "a.b") == lookup(sl, "a.b")


def test_lookup_raises_on_invalid_limits() -> None:
    sl = StoreLimits(per_channel={"a..b": ChannelLimits()})
    with pytest.raises(ValueError, match='invalid channel name "a..b"'):
        lookup(sl, "a")


# ---------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_channels", -1, "max channels limit cannot be negative (-1)"),
        ("max_subscriptions", -2, "max subscriptions limit cannot be negative (-2)"),
        ("max_msgs", -3, "max messages limit cannot be negative (-3)"),
        ("max_bytes", -4, "max bytes limit cannot be negative (-4)"),
        ("max_age", -1.0, "max age limit cannot be negative (-1s)"),
        ("max_inactivity", -0.5, "max inactivity limit cannot be negative (-500ms)"),
    ],
)
def test_negative_globals(field: str, value: float, message: str) -> None:
    sl = StoreLimits()
    setattr(sl, field, value)
    with pytest.raises(ValueError) as ei:
        validate(sl)
    assert str(ei.value) == message
    with pytest.raises(ValueError):
        build(sl)


@pytest.mark.parametrize(
    "name",
    ["foo.*bar", "foo.**.bar", "foo.>.bar", "foo.", ".foo", "foo/bar", "", "a..b", ">.>", "*a"],
)
def test_invalid_names(name: str) -> None:
    sl = StoreLimits(per_channel={name: ChannelLimits()})
    with pytest.raises(ValueError) as ei:
        validate(sl)
    assert str(ei.value) == f"invalid channel name {go_quote(name)}"


def test_too_many_channels() -> None:
    sl = StoreLimits(max_channels=1)
    sl.per_channel = {"foo": ChannelLimits(), "bar": ChannelLimits(), "baz": ChannelLimits()}
    with pytest.raises(ValueError) as ei:
        validate(sl)
    assert str(ei.value) == "too many channels defined (2). The max channels limit is set to 1"


def test_wildcards_do_not_count_against_max_channels() -> None:
    sl = StoreLimits(max_channels=2)
    for n in ("foo.>", "foo.*", "foo.bar.*", "a", "b"):
        sl.per_channel[n] = ChannelLimits()
    validate(sl)


def test_max_channels_zero_is_unlimited() -> None:
    sl = StoreLimits(max_channels=0, per_channel={str(i): ChannelLimits() for i in range(500)})
    validate(sl)


# ---------------------------------------------------------------------------
# Channel names, trie details


def test_channel_name_validity_go_cases() -> None:
    long = "foo." * 100 + "foo"
    assert is_channel_name_valid(long, False)
    for s in [
        "foo.bar*",
        "foo.bar>",
        "foo.bar.*",
        "foo.bar.>",
        "foo*.bar",
        "foo>.bar",
        "foo..bar",
        ".foo.bar",
        "foo.bar.",
        "..",
        ".",
        "foo/bar",
    ]:
        assert not is_channel_name_valid(s, False), s
    for s in [
        "foo.bar*",
        "foo.bar>",
        "foo*.bar",
        "foo>.bar",
        "foo.*bar",
        "foo.>bar",
        "foo.>.bar",
        ">.",
        ">.>",
        "foo..bar",
        ".foo.bar",
        "foo.bar.",
        "..",
        ".",
    ]:
        assert not is_channel_name_valid(s, True), s
    for s in ["foo.*", "foo.*.*", "foo.>", "foo.*.>", "*", ">", "*.bar.*", "*.bar.>", "*.>"]:
        assert is_channel_name_valid(s, True), s


def test_channel_name_literal() -> None:
    for s in ["foo.*", "foo.>", "foo.*.bar", "foo.bar.*"]:
        assert not is_channel_name_literal(s)
    for s in ["foo.bar", "foo.baz", "foo.baz.bar", "foo.bar.baz"]:
        assert is_channel_name_literal(s)


def test_sublist_rejects_invalid_subjects() -> None:
    s: Sublist[int] = Sublist()
    for bad in ["a..b", "a.>.b", ""]:
        with pytest.raises(ValueError, match="sublist: invalid subject"):
            s.insert(bad, 1)


def test_sublist_several_elements_per_subject() -> None:
    s: Sublist[int] = Sublist()
    s.insert("a.b", 1)
    s.insert("a.b", 2)
    s.insert("a.*", 3)
    assert s.match("a.b") == [3, 1, 2]
    assert s.subjects() == ["a.*", "a.b"]


def test_subjects_skip_pure_intermediate_nodes() -> None:
    assert _sublist(["a.b.c", "*.x.>"]).subjects() == ["*.x.>", "a.b.c"]


def test_go_subjects_doc_example() -> None:
    # util/sublist.go's documented example (literal siblings in insertion order)
    names = ["*.*", "foo.>", "*.>", "foo.*.>", ">", "bar.>", "foo.bar.>", "bar.baz"]
    assert _sublist(names).subjects() == [
        ">",
        "*.>",
        "*.*",
        "foo.>",
        "foo.*.>",
        "foo.bar.>",
        "bar.>",
        "bar.baz",
    ]


def test_go_quote() -> None:
    assert go_quote('a"b\\c\n\t\r') == '"a\\"b\\\\c\\n\\t\\r"'
    assert go_quote("\x01é\udcff") == '"\\x01é\\xff"'

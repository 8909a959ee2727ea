"""Channel-name rules and the subject trie, in their own module.

The trie's Go ordering is tested with limit inheritance (test_limits_build);
here: the name rule against a transcription of Go's own loop, on every short
name, and the matching partitioning relies on."""

from __future__ import annotations

import itertools

import pytest

from nss.subjects import Sublist, is_channel_name_literal, is_channel_name_valid, valid_channel


def go_is_channel_name_valid(name: str, wildcards_allowed: bool) -> bool:
    """util.IsChannelNameValid, character by character as the Go code reads."""
    if not name or name[0] == ".":
        return False
    last = len(name) - 1
    for i, c in enumerate(name):
        if c == "/":
            return False
        if c == "." and (i == last or name[i + 1] == "."):
            return False
        if c in "*>":
            if not wildcards_allowed:
                return False
            if i > 0 and name[i - 1] != ".":
                return False
            if c == ">" and i != last:
                return False
            if i < last and name[i + 1] != ".":
                return False
    return True


@pytest.mark.parametrize("wildcards", [False, True])
def test_name_rule_is_gos_on_every_short_name(wildcards: bool) -> None:
    for length in range(7):
        for chars in itertools.product("a.*>/", repeat=length):
            name = "".join(chars)
            want = go_is_channel_name_valid(name, wildcards)
            assert is_channel_name_valid(name, wildcards) == want, name
            if not wildcards:
                assert valid_channel(name) == want, name


def test_publish_and_subscribe_names() -> None:
    for ok in ["foo", "foo.bar", "a-b_c.D9", "ünï.cødé", "foo:bar"]:
        assert valid_channel(ok), ok
    for bad in ["", ".", "foo.", ".foo", "foo..bar", "foo/bar", "foo.*", "foo.>", "*"]:
        assert not valid_channel(bad), bad


def test_literal() -> None:
    assert is_channel_name_literal("foo.bar")
    assert not is_channel_name_literal("foo.*")
    assert not is_channel_name_literal(">")


def test_partition_style_matching() -> None:
    """Which channels a list of names and patterns covers."""
    trie: Sublist[str] = Sublist()
    for n in ["orders.*", "audit.>", "exact"]:
        trie.insert(n, n)
    assert trie.match("orders.eu") == ["orders.*"]
    assert trie.match("audit.a.b.c") == ["audit.>"]
    assert trie.match("exact") == ["exact"]
    for miss in ["orders", "orders.eu.x", "audit", "exact.more", "other"]:
        assert trie.match(miss) == [], miss
    # a pattern received from a peer meets our patterns only where Go's
    # Match reads it as literal tokens
    assert trie.match("orders.*") == ["orders.*"]
    assert trie.match("audit.>") == ["audit.>"]

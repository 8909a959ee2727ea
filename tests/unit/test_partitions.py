"""Partition lists: wire encoding and the conflict rules of partitioning.md."""

from __future__ import annotations

import pytest

from nss.server.partitions import (
    Partition,
    PartitionError,
    decode_channels,
    encode_channels,
    split_channels,
)


def test_encoding_is_length_prefixed_little_endian() -> None:
    data = encode_channels(["foo", "bar.*"])
    assert data == b"\x03\x00foo\x05\x00bar.*"
    assert decode_channels(data) == ["foo", "bar.*"]


def test_truncated_list_is_rejected() -> None:
    with pytest.raises(ValueError):
        decode_channels(b"\x05\x00ab")


def test_split_keeps_every_message_under_the_payload() -> None:
    names = [f"channel.{i:04d}" for i in range(200)]
    groups = split_channels(names, 512)
    assert [n for g in groups for n in g] == names
    assert all(len(encode_channels(g)) <= 512 - 64 for g in groups)
    with pytest.raises(PartitionError, match="payload too small"):
        split_channels(["x" * 600], 512)


def test_no_channels_is_an_error() -> None:
    with pytest.raises(PartitionError, match="stan: no configured channel"):
        Partition([])


@pytest.mark.parametrize(
    ("local", "received", "conflict"),
    [
        (["foo.*"], ["foo.bar"], "foo.bar"),
        (["foo.bar"], ["foo.*"], "foo.bar"),
        (["foo.*"], ["foo.>"], "foo.>"),
        (["foo"], ["bar", "baz.>"], ""),
        (["bar.>"], ["bar"], ""),
        (["a", "b"], ["c", "b"], "b"),
    ],
)
def test_conflicts(local: list[str], received: list[str], conflict: str) -> None:
    assert Partition(local).conflict_with(received) == conflict


def test_owns_follows_wildcards() -> None:
    p = Partition(["foo.*", "bar.>", "baz"])
    assert p.owns("foo.bar") and not p.owns("foo") and not p.owns("foo.bar.baz")
    assert p.owns("bar.baz") and p.owns("bar.baz.bat") and not p.owns("bar")
    assert p.owns("baz") and not p.owns("qux")

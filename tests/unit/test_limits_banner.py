"""The start-up limits table, line for line as the Go server logs it
(``StoreLimits.Print`` and ``util.FriendlyBytes`` in v0.25.6)."""

from __future__ import annotations

from nss.options import ChannelLimits, StoreLimits
from nss.stores.limits import banner_lines
from nss.units import friendly_bytes


def test_defaults_all_starred() -> None:
    assert banner_lines(StoreLimits()) == [
        "---------- Store Limits ----------",
        "Channels:                  100 *",
        "--------- Channels Limits --------",
        "  Subscriptions:          1000 *",
        "  Messages     :       1000000 *",
        "  Bytes        :     976.56 MB *",
        "  Age          :     unlimited *",
        "  Inactivity   :     unlimited *",
        "----------------------------------",
    ]


def test_set_limits_unstarred_sizes_and_ages_go_style() -> None:
    """``*`` marks a default only; 1GB reads 1.00 GB and 24h 24h0m0s."""
    lim = StoreLimits(
        max_channels=0,
        max_msgs=0,
        max_bytes=1024**3,
        max_age=24 * 3600,
        max_subscriptions=1000,  # the default, even when given explicitly
        max_inactivity=90.5,
    )
    assert banner_lines(lim)[1:8] == [
        "Channels:            unlimited",
        "--------- Channels Limits --------",
        "  Subscriptions:          1000 *",
        "  Messages     :     unlimited",
        "  Bytes        :       1.00 GB",
        "  Age          :       24h0m0s",
        "  Inactivity   :       1m30.5s",
    ]


def test_channel_tree_matches_go_limits_print() -> None:
    """The case of Go's TestLimitsPrint: each entry under the one it
    inherits from, showing only what it changes."""
    lim = StoreLimits()
    lim.per_channel[">"] = ChannelLimits(max_msgs=10)
    lim.per_channel["foo.>"] = ChannelLimits(max_bytes=1024, max_inactivity=5)
    lim.per_channel["foo.bar.>"] = ChannelLimits(max_age=1)
    lim.per_channel["foo.bar.baz.>"] = ChannelLimits(max_subscriptions=20)
    lim.per_channel["bar"] = ChannelLimits(max_subscriptions=30)
    lines = banner_lines(lim)
    tree = lines[lines.index("--------- List of Channels ---------") + 1 :]
    assert tree == [
        ">",
        " |-> Messages                     10",
        " foo.>",
        "  |-> Bytes                  1.00 KB",
        "  |-> Inactivity                  5s",
        "  foo.bar.>",
        "   |-> Age                        1s",
        "   foo.bar.baz.>",
        "    |-> Subscriptions             20",
        " bar",
        "  |-> Subscriptions               30",
        "------------------------------------",
    ]


def test_friendly_bytes() -> None:
    assert friendly_bytes(1000) == "1000 B"
    assert friendly_bytes(2000) == "1.95 KB"
    assert friendly_bytes(10 << 20) == "10.00 MB"
    assert friendly_bytes(10 << 30) == "10.00 GB"
    assert friendly_bytes(10 << 40) == "10.00 TB"
    assert friendly_bytes(0xFFFFFFFFFFFFFFF) == "1.00 EB"

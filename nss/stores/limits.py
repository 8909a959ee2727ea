"""Per-channel limits lookup.

Issue 3 (configuration files) brings per-channel and wildcard entries with
the Go inheritance rules; until then only literal channel entries are
honoured, inheriting omitted (0) fields from the global limits and treating
negative values as unlimited.
"""

from __future__ import annotations

from nss.options import ChannelLimits, StoreLimits


def lookup(limits: StoreLimits, name: str) -> ChannelLimits | None:
    entry = limits.per_channel.get(name)
    if entry is None:
        return None

    def pick(own: float, glob: float) -> float:
        if own == 0:
            return glob
        return 0 if own < 0 else own

    return ChannelLimits(
        max_msgs=int(pick(entry.max_msgs, limits.max_msgs)),
        max_bytes=int(pick(entry.max_bytes, limits.max_bytes)),
        max_age=float(pick(entry.max_age, limits.max_age)),
        max_subscriptions=int(pick(entry.max_subscriptions, limits.max_subscriptions)),
        max_inactivity=float(pick(entry.max_inactivity, limits.max_inactivity)),
    )

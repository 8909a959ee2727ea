"""Store limits: validation and per-channel inheritance (stores.md §2).

Per-channel entries may be literal channel names or wildcard patterns, and
an entry's omitted (0) fields are inherited from the next wider matching
entry.  Which entry counts as "wider" is defined by the Go server's subject
trie (``util/sublist.go``, reproduced in ``nss.subjects``): the order in
which ``Subjects()`` lists entries and ``Match()`` returns them decides every
parent, including the surprising ones of the worked example (``foo.>``
inherits from ``*.*``).

Representation: in ``StoreLimits`` (as the configuration produced it), a
per-channel field is 0 to inherit and negative for unlimited; after
``build`` every field is concrete with 0 meaning unlimited, as for the
global limits.  ``build`` never mutates its input.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from nss.options import ChannelLimits, StoreLimits
from nss.subjects import Sublist, is_channel_name_literal, is_channel_name_valid
from nss.units import (
    format_duration,
    format_duration_ns,
    friendly_bytes,
    go_quote,
    seconds_to_ns,
)

__all__ = [
    "ResolvedLimits",
    "banner_lines",
    "build",
    "go_quote",
    "invalidate",
    "is_channel_name_literal",
    "is_channel_name_valid",
    "lookup",
    "resolved",
    "validate",
]

# ---------------------------------------------------------------------------
# Validation and inheritance


def validate(limits: StoreLimits) -> None:
    """Reject what Go's ``StoreLimits.Build`` rejects, with its texts.

    Negative global limits, invalid per-channel names, and more literal
    per-channel entries than ``max_channels`` (when > 0; Go stops counting
    at the first entry over the limit, hence ``max_channels + 1``).
    Raises ``ValueError``.
    """
    checks: list[tuple[str, float, str]] = [
        ("max channels", limits.max_channels, str(limits.max_channels)),
        ("max subscriptions", limits.max_subscriptions, str(limits.max_subscriptions)),
        ("max messages", limits.max_msgs, str(limits.max_msgs)),
        ("max bytes", limits.max_bytes, str(limits.max_bytes)),
        ("max age", limits.max_age, format_duration(limits.max_age)),
        ("max inactivity", limits.max_inactivity, format_duration(limits.max_inactivity)),
    ]
    for what, value, shown in checks:
        if value < 0:
            raise ValueError(f"{what} limit cannot be negative ({shown})")
    literals = 0
    for name in limits.per_channel:
        if not is_channel_name_valid(name, True):
            raise ValueError(f"invalid channel name {go_quote(name)}")
        if is_channel_name_literal(name):
            literals += 1
            if limits.max_channels > 0 and literals > limits.max_channels:
                raise ValueError(
                    f"too many channels defined ({literals}). "
                    f"The max channels limit is set to {limits.max_channels}"
                )


@dataclass
class _Info:
    name: str
    limits: ChannelLimits
    literal: bool
    processed: bool = False


_FIELDS = ("max_msgs", "max_bytes", "max_age", "max_subscriptions", "max_inactivity")


def _inherit(info: _Info, parent: ChannelLimits) -> None:
    """0 takes the parent's value, negative becomes 0 (unlimited)."""
    cl = info.limits
    for name in _FIELDS:
        own = getattr(cl, name)
        if own < 0:
            setattr(cl, name, type(own)(0))
        elif own == 0:
            setattr(cl, name, getattr(parent, name))
    info.processed = True


def _global_limits(limits: StoreLimits) -> ChannelLimits:
    return limits.channel_defaults()


@dataclass
class ResolvedLimits:
    """Limits after inheritance.

    ``per_channel`` holds every configured entry (literal or pattern) with
    concrete values (0 = unlimited): what Go keeps in ``PerChannel`` after
    ``Build`` and shows in ``/streaming/storez``.
    """

    max_channels: int
    global_limits: ChannelLimits
    per_channel: dict[str, ChannelLimits]
    _sublist: Sublist[_Info] = field(repr=False)
    _cache: dict[str, ChannelLimits | None] = field(default_factory=dict, repr=False)

    def match(self, name: str) -> list[str]:
        """Names of the entries ``Match(name)`` returns, in Go order."""
        return [info.name for info in self._sublist.match(name)]

    def lookup(self, name: str) -> ChannelLimits | None:
        """Limits of channel ``name`` from the narrowest matching entry (the
        last of ``Match``), or None when no entry matches."""
        if name in self._cache:
            found = self._cache[name]
        else:
            r = self._sublist.match(name)
            found = r[-1].limits if r else None
            if len(self._cache) >= 1024:
                self._cache.clear()
            self._cache[name] = found
        return replace(found) if found is not None else None

    def effective(self, name: str) -> ChannelLimits:
        """Like ``lookup`` but falling back to the global limits."""
        found = self.lookup(name)
        return found if found is not None else replace(self.global_limits)

    def __iter__(self) -> Iterator[tuple[str, ChannelLimits]]:
        return iter(self.per_channel.items())

    def subjects(self) -> list[str]:
        """The per-channel entries, widest first (Go's ``Subjects`` order)."""
        return self._sublist.subjects()

    def num_levels(self) -> int:
        return self._sublist.num_levels()


def build(limits: StoreLimits) -> ResolvedLimits:
    """Validate ``limits`` and apply Go's inheritance (``applyInheritance``).

    For each entry in ``Subjects()`` order, walk ``Match(entry)``: every
    not yet processed element inherits from its predecessor in that list
    (the first from the global limits).  Raises ``ValueError`` like
    ``validate``.
    """
    validate(limits)
    glob = _global_limits(limits)
    sublist: Sublist[_Info] = Sublist()
    infos: dict[str, _Info] = {}
    for name, cl in limits.per_channel.items():
        info = _Info(name, replace(cl), is_channel_name_literal(name))
        infos[name] = info
        sublist.insert(name, info)
    for subject in sublist.subjects():
        r = sublist.match(subject)
        first = r[0]
        if first.literal and first.processed:
            continue
        if not first.processed:
            _inherit(first, glob)
        prev = first
        for info in r[1:]:
            if not info.processed:
                _inherit(info, prev.limits)
            prev = info
    return ResolvedLimits(
        max_channels=limits.max_channels,
        global_limits=glob,
        per_channel={name: info.limits for name, info in infos.items()},
        _sublist=sublist,
    )


# ---------------------------------------------------------------------------
# Cached lookups

_Fingerprint = tuple[object, ...]
_resolved_cache: dict[int, tuple[weakref.ref[StoreLimits], _Fingerprint, ResolvedLimits]] = {}


def _fingerprint(limits: StoreLimits) -> _Fingerprint:
    return (
        limits.max_channels,
        *(getattr(limits, f) for f in _FIELDS),
        tuple((k, *(getattr(v, f) for f in _FIELDS)) for k, v in limits.per_channel.items()),
    )


def resolved(limits: StoreLimits) -> ResolvedLimits:
    """``build(limits)``, cached per ``StoreLimits`` object.

    The cache is keyed by object identity and re-validated against a cheap
    fingerprint of the values, so mutating the object (tests do) is safe;
    entries go away with their object.
    """
    key = id(limits)
    fp = _fingerprint(limits)
    hit = _resolved_cache.get(key)
    if hit is not None and hit[0]() is limits and hit[1] == fp:
        return hit[2]
    res = build(limits)

    def _drop(_ref: object, key: int = key) -> None:
        _resolved_cache.pop(key, None)

    _resolved_cache[key] = (weakref.ref(limits, _drop), fp, res)
    return res


def invalidate(limits: StoreLimits) -> None:
    """Forget the cached resolution of ``limits``."""
    _resolved_cache.pop(id(limits), None)


def lookup(limits: StoreLimits, name: str) -> ChannelLimits | None:
    """Effective limits of the concrete channel ``name``: the resolved
    limits of the last element of ``Match(name)``, or None when no
    per-channel entry matches (callers then use the global limits).

    Raises ``ValueError`` if ``limits`` does not validate."""
    if not limits.per_channel:
        return None
    return resolved(limits).lookup(name)


# ---------------------------------------------------------------------------
# Start-up banner (Go's StoreLimits.Print)

_COUNT, _BYTES, _DURATION = range(3)
_BANNER_ROWS = (
    ("Subscriptions", "max_subscriptions", _COUNT),
    ("Messages", "max_msgs", _COUNT),
    ("Bytes", "max_bytes", _BYTES),
    ("Age", "max_age", _DURATION),
    ("Inactivity", "max_inactivity", _DURATION),
)
_TITLE = "---------- Store Limits ----------"


def banner_lines(limits: StoreLimits) -> list[str]:
    """The limits table the Go server logs at start, line for line.

    Operators compare it with what the Go server printed, so it follows
    Go's rules: a global limit is marked ``*`` only when it is the default
    (not when it was merely left unset in a file that sets others); sizes
    read ``976.56 MB``, durations ``24h0m0s``; each per-channel entry is
    listed under the entry it inherits from, with only the limits it
    changes. Raises ``ValueError`` if ``limits`` does not validate."""
    res = resolved(limits)
    default = StoreLimits()
    glob = res.global_limits
    lines = [
        _TITLE,
        "Channels:        "
        + _limit_str(True, limits.max_channels, default.max_channels, _COUNT),
        "--------- Channels Limits --------",
    ]
    for label, name, kind in _BANNER_ROWS:
        value = _limit_str(True, getattr(glob, name), getattr(default, name), kind)
        lines.append(f"  {label:<13}: {value}")
    width = len(_TITLE)
    if res.per_channel:
        channel_lines = _channel_tree(res)
        width = max(width, *(len(line) for line in channel_lines))
        title = " List of Channels "
        left = (width - len(title)) // 2
        lines.append("-" * left + title + "-" * (width - len(title) - left))
        lines.extend(channel_lines)
    lines.append("-" * width)
    return lines


def _channel_tree(res: ResolvedLimits) -> list[str]:
    """Each entry indented by its depth in ``Match`` order, with the limits
    that differ from the entry (or global limits) it inherits from."""
    levels = res.num_levels()
    out: list[str] = []
    for name in res.subjects():
        chain = res.match(name)
        depth = chain.index(name)
        parent = res.per_channel[chain[depth - 1]] if depth else res.global_limits
        own = res.per_channel[name]
        out.append(" " * depth + name)
        for label, field_name, kind in _BANNER_ROWS:
            value = _limit_str(
                False, getattr(own, field_name), getattr(parent, field_name), kind
            )
            if value:
                out.append(f"{' ' * depth} |-> {label:<13} {' ' * (levels - depth)}{value}")
    return out


def _limit_str(is_global: bool, value: float, parent: float, kind: int) -> str:
    """Go's ``getLimitStr``: the value right-aligned in 13 columns, ``*`` when
    a global limit equals the default; "" for a per-channel limit that does
    not change its parent's."""
    if kind == _DURATION:  # compare like Go, in integer nanoseconds
        value, parent = seconds_to_ns(value), seconds_to_ns(parent)
    same = value == parent
    if same and not is_global:
        return ""
    if value == 0:
        text = "unlimited"
    elif kind == _BYTES:
        text = friendly_bytes(int(value))
    elif kind == _DURATION:
        text = format_duration_ns(int(value))
    else:
        text = str(int(value))
    return f"{text:>13}{' *' if same else ''}"

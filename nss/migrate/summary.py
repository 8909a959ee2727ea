"""What a store holds, in a form two stores can be compared by: per channel
the first and last sequence, the message count and a SHA-256 over every
stored message (sequence and encoded bytes, in order), plus the number of
subscriptions and pending messages; and the registered clients."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from nss.stores.base import MIGRATE_MARKER_ID, MsgStore, RecoveredState

_SEQ = struct.Struct(">QI")
CHUNK = 1000


@dataclass
class ChannelSummary:
    first: int = 0
    last: int = 0
    count: int = 0
    sha256: str = ""
    subs: int = 0
    pending: int = 0


@dataclass
class StoreSummary:
    channels: dict[str, ChannelSummary] = field(default_factory=dict)
    clients: list[str] = field(default_factory=list)


class Digest:
    """The running checksum of one channel's messages: SHA-256 over each
    message's sequence, length and bytes, in sequence order.

    ``first`` is the first sequence it covers. ``extra`` keeps the messages
    that did not come from the source store (a Raft replay takes them from
    the log), for ``rebuild``."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.first = 0
        self.count = 0
        self.extra: list[tuple[int, bytes]] = []

    def add(self, seq: int, data: bytes, keep: bool = False) -> None:
        self._h.update(_SEQ.pack(seq, len(data)))
        self._h.update(data)
        if not self.count:
            self.first = seq
        self.count += 1
        if keep:
            self.extra.append((seq, data))

    def hexdigest(self) -> str:
        return self._h.hexdigest()


async def rebuild(src: MsgStore | None, d: Digest, first: int) -> Digest:
    """``d`` restricted to the messages from ``first`` on, read again from
    the source: for a destination that dropped its oldest messages while
    they were copied (MaxMsgs, MaxBytes), which a running hash cannot take
    back. Only then is the source read twice."""
    out = Digest()
    if src is not None:
        async for seq, data in read_messages(src, first):
            out.add(seq, data)
    for seq, data in d.extra:
        if seq >= first and seq > (src.last_sequence() if src is not None else 0):
            out.add(seq, data, keep=True)
    return out


async def read_messages(ms: MsgStore, start: int = 0) -> AsyncIterator[tuple[int, bytes]]:
    """(seq, encoded message) of every stored message from ``start`` on,
    oldest first, read in chunks (a database store loads each chunk off the
    event loop)."""
    first, last = ms.first_sequence(), ms.last_sequence()
    seq = max(first, start, 1)
    while seq <= last:
        end = min(seq + CHUNK - 1, last)
        await ms.prefetch(seq, end)
        for s in range(seq, end + 1):
            data = ms.lookup(s)
            if data is not None:
                yield s, data
        seq = end + 1


async def summarize(rs: RecoveredState | None) -> StoreSummary:
    """Read everything a recovered store holds (the verification pass)."""
    out = StoreSummary()
    if rs is None:
        return out
    out.clients = sorted(c.ID for c in rs.clients if c.ID != MIGRATE_MARKER_ID)
    for name, rc in sorted(rs.channels.items()):
        ms = rc.channel.msgs
        d = Digest()
        async for seq, data in read_messages(ms):
            d.add(seq, data)
        out.channels[name] = ChannelSummary(
            first=ms.first_sequence(),
            last=ms.last_sequence(),
            count=d.count,
            sha256=d.hexdigest(),
            subs=len(rc.subscriptions),
            pending=sum(len(s.pending) for s in rc.subscriptions),
        )
    return out


def differences(want: StoreSummary, got: StoreSummary) -> list[str]:
    """Human-readable mismatches; empty when the copy is faithful."""
    out: list[str] = []
    if want.clients != got.clients:
        out.append(f"clients: expected {want.clients}, found {got.clients}")
    for name in sorted(set(want.channels) | set(got.channels)):
        w, g = want.channels.get(name), got.channels.get(name)
        if w is None or g is None:
            out.append(f"channel {name!r}: {'missing' if g is None else 'unexpected'}")
            continue
        for attr in ("first", "last", "count", "sha256", "subs", "pending"):
            if getattr(w, attr) != getattr(g, attr):
                out.append(
                    f"channel {name!r}: {attr} expected {getattr(w, attr)}, "
                    f"found {getattr(g, attr)}"
                )
    return out

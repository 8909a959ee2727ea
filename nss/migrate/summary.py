"""What a store holds, in a form two stores can be compared by: per channel
the first and last sequence, the message count and a SHA-256 over every
stored message (sequence and encoded bytes, in order), plus the number of
subscriptions and pending messages; and the registered clients."""

from __future__ import annotations

import hashlib
import struct
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
    """The running checksum of one channel's messages."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.count = 0

    def add(self, seq: int, data: bytes) -> None:
        self._h.update(_SEQ.pack(seq, len(data)))
        self._h.update(data)
        self.count += 1

    def hexdigest(self) -> str:
        return self._h.hexdigest()


async def read_messages(ms: MsgStore, progress: object = None):  # type: ignore[no-untyped-def]
    """(seq, encoded message) of every stored message, oldest first, read in
    chunks (a database store loads each chunk off the event loop)."""
    first, last = ms.first_sequence(), ms.last_sequence()
    seq = max(first, 1)
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

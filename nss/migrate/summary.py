"""What a store holds, in a form two stores can be compared by: per channel
the first and last sequence, the message count and a SHA-256 over every
stored message (sequence and encoded bytes, in order), plus the number of
subscriptions and pending messages; and the registered clients."""

from __future__ import annotations

import hashlib
import struct
from array import array
from bisect import bisect_left
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
    """The checksum of one channel's messages: SHA-256 over the SHA-256 of
    each message (its sequence, length and bytes), in sequence order.

    Kept per message (32 bytes each) because the destination may drop its
    oldest messages while they are copied (MaxMsgs, MaxBytes): the expected
    checksum is then that of the messages from its first sequence on."""

    def __init__(self) -> None:
        self._seqs = array("Q")
        self._hashes = bytearray()

    def add(self, seq: int, data: bytes) -> None:
        self._seqs.append(seq)
        self._hashes += hashlib.sha256(_SEQ.pack(seq, len(data)) + data).digest()

    def result(self, first: int = 0) -> tuple[int, str]:
        """(count, hex checksum) of the messages from sequence ``first`` on."""
        i = bisect_left(self._seqs, first)
        return len(self._seqs) - i, hashlib.sha256(self._hashes[i * 32 :]).hexdigest()


async def read_messages(ms: MsgStore) -> AsyncIterator[tuple[int, bytes]]:
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
        count, sha = d.result()
        out.channels[name] = ChannelSummary(
            first=ms.first_sequence(),
            last=ms.last_sequence(),
            count=count,
            sha256=sha,
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

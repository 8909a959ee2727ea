"""MEMORY store: everything lives in memory and is gone when the process ends."""

from __future__ import annotations

from array import array
from collections.abc import Sequence

from nss.options import ChannelLimits, StoreLimits
from nss.pb import spb_pb2 as spb
from nss.stores.base import ChannelStore, MsgStore, RecoveredState, Store, SubStore


class MemoryMsgStore(MsgStore):
    """Messages in sequence order: ``_data[seq - _base]`` is the encoded
    MsgProto (None where a message was dropped), ``_ts`` its timestamp.

    Two flat arrays rather than a dict of ``(timestamp, bytes)`` tuples: a
    message costs its bytes plus 16 (a dict entry, an int key, a tuple and
    an int cost about 150 more), lookups stay O(1), and dropping the oldest
    stays O(1) amortised: the dropped head is cut off in one slice once it
    is half of the arrays (never while a batch holds a mark)."""

    _TRIM = 4096  # dropped entries at the head before they are cut off

    def __init__(self, name: str, limits: ChannelLimits) -> None:
        super().__init__(name, limits)
        self._data: list[bytes | None] = []
        self._ts = array("q")
        self._base = 0  # the sequence of _data[0]
        self._first = 0
        self._last = 0
        self._count = 0
        self._bytes = 0
        # (first, last, count, bytes, hit_limit) at mark(), and the messages
        # the limits dropped since as (seq, timestamp, data), put back by
        # rollback()
        self._mark: tuple[int, int, int, int, bool] | None = None
        self._dropped: list[tuple[int, int, bytes]] = []

    def mark(self) -> None:
        self._mark = (self._first, self._last, self._count, self._bytes, self.hit_limit)
        self._dropped = []

    def rollback(self) -> None:
        m = self._mark
        if m is None:
            return
        self._mark = None
        last = m[1]
        keep = max(last - self._base + 1, 0)
        del self._data[keep:]
        del self._ts[keep:]
        for s, ts, data in self._dropped:
            if s <= last:  # not one of the batch's own
                self._data[s - self._base] = data
                self._ts[s - self._base] = ts
        self._dropped = []
        self._first, self._last, self._count, self._bytes, self.hit_limit = m

    def release(self) -> None:
        self._mark = None
        self._dropped = []

    def store(self, seq: int, timestamp: int, data: bytes) -> None:
        last = self._last
        if seq <= last:
            return
        d = self._data
        # while d holds anything it ends at _last
        if seq != last + 1 or not d:
            if not d:
                self._base = seq
            else:  # sequences never stored: absent, as dropped ones are
                d.extend([None] * (seq - last - 1))
                self._ts.extend([0] * (seq - last - 1))
        d.append(data)
        self._ts.append(timestamp)
        if not self._count:
            self._first = seq
        self._count += 1
        self._last = seq
        self._bytes += len(data) if self.cipher is None else self.cipher.sealed_size(data)
        if self._count > self.over_msgs or self._bytes > self.over_bytes:
            self.apply_limits(self._count, self._bytes)

    def store_many(self, first: int, timestamps: Sequence[int], datas: list[bytes]) -> None:
        n = len(datas)
        nbytes = sum(map(len, datas))
        if (
            not n
            or first != self._last + 1
            or not self._data
            or self.cipher is not None
            or len(timestamps) != n
            or self._count + n > self.over_msgs
            or self._bytes + nbytes > self.over_bytes
        ):
            super().store_many(first, timestamps, datas)
            return
        # the common case: right after the last, no limit reached
        self._data.extend(datas)
        self._ts.extend(timestamps)
        if not self._count:
            self._first = first
        self._count += n
        self._last = first + n - 1
        self._bytes += nbytes

    def _drop_first(self) -> tuple[int, bytes]:
        """Take the first message out: (timestamp, data)."""
        i = self._first - self._base
        data = self._data[i]
        assert data is not None
        self._data[i] = None
        self._count -= 1
        self._bytes -= self._size(data)
        f = self._first + 1
        d, base, last = self._data, self._base, self._last
        while f <= last and d[f - base] is None:
            f += 1
        self._first = f
        return self._ts[i], data

    def _trim(self) -> None:
        k = self._first - self._base
        if self._mark is None and k >= self._TRIM and 2 * k >= len(self._data):
            del self._data[:k]
            del self._ts[:k]
            self._base += k

    def _drop_oldest(self) -> bool:
        seq = self._first
        ts, data = self._drop_first()
        if self._mark is not None:
            self._dropped.append((seq, ts, data))
        self._trim()
        return True

    def _size(self, data: bytes) -> int:
        """Bytes a message counts for: with encryption on, its encrypted
        size, as the Go server (which encrypts in memory too) counts it,
        so channelsz and MaxBytes agree; the payload itself stays plain."""
        return len(data) if self.cipher is None else self.cipher.sealed_size(data)

    def lookup(self, seq: int) -> bytes | None:
        i = seq - self._base
        if i < 0 or i >= len(self._data):
            return None
        return self._data[i]

    def lookup_many(self, first: int, last: int) -> list[bytes | None]:
        d = self._data
        i, j = first - self._base, last - self._base + 1
        if i >= 0 and j <= len(d):
            return d[i:j]  # the usual case: a slice, no loop
        lo, hi = max(i, 0), min(j, len(d))
        if lo >= hi:
            return [None] * max(0, j - i)
        return [None] * (lo - i) + d[lo:hi] + [None] * (j - hi)

    def timestamp_of(self, seq: int) -> int | None:
        i = seq - self._base
        if i < 0 or i >= len(self._data) or self._data[i] is None:
            return None
        return self._ts[i]

    def first_sequence(self) -> int:
        if not self._count:
            return self._last + 1 if self._last else 0
        return self._first

    def last_sequence(self) -> int:
        return self._last

    def state(self) -> tuple[int, int]:
        return self._count, self._bytes

    def expire(self, now_ns: int) -> float | None:
        max_age = self.limits.max_age
        if max_age <= 0 or not self._count:
            return None
        cutoff = now_ns - int(max_age * 1e9)
        try:
            while self._count:
                ts = self._ts[self._first - self._base]
                if ts > cutoff:
                    return (ts - cutoff) / 1e9
                self._drop_first()
            return None
        finally:
            self._trim()

    def empty(self) -> None:
        self._data.clear()
        del self._ts[:]
        self._count = 0
        self._bytes = 0
        self._first = self._last + 1 if self._last else 0


class MemorySubStore(SubStore):
    tracks_pending = False

    def __init__(self, store: MemoryStore, limits: ChannelLimits) -> None:
        super().__init__(limits)
        self._store = store
        self._subs: set[int] = set()

    def _sub_count(self) -> int:
        return len(self._subs)

    def _create_sub(self, sub: spb.SubState) -> None:
        self._store.last_sub_id += 1
        sub.ID = self._store.last_sub_id
        self._subs.add(sub.ID)

    def update_sub(self, sub: spb.SubState) -> None:
        self._subs.add(sub.ID)

    def delete_sub(self, sub_id: int) -> None:
        self._subs.discard(sub_id)

    def add_seq_pending(self, sub_id: int, seq: int) -> None:
        pass

    def ack_seq_pending(self, sub_id: int, seq: int) -> None:
        pass


class MemoryStore(Store):
    name = "MEMORY"

    def __init__(self, limits: StoreLimits) -> None:
        super().__init__(limits)
        self.info: spb.ServerInfo | None = None
        self.clients: dict[str, spb.ClientInfo] = {}
        self.last_sub_id = 0

    def init(self, info: spb.ServerInfo) -> None:
        self.info = info

    def recover(self) -> RecoveredState | None:
        return None

    def _new_channel(self, name: str, limits: ChannelLimits) -> ChannelStore:
        return ChannelStore(name, MemoryMsgStore(name, limits), MemorySubStore(self, limits))

    def _drop_channel(self, cs: ChannelStore) -> None:
        pass

    def add_client(self, info: spb.ClientInfo) -> None:
        self.clients[info.ID] = info

    def delete_client(self, client_id: str) -> None:
        self.clients.pop(client_id, None)

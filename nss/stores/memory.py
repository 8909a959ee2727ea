"""MEMORY store: everything lives in dicts and is gone when the process ends."""

from __future__ import annotations

from nss.options import ChannelLimits, StoreLimits
from nss.pb import spb_pb2 as spb
from nss.stores.base import ChannelStore, MsgStore, RecoveredState, Store, SubStore


class MemoryMsgStore(MsgStore):
    """Messages by sequence: ``seq -> (timestamp, encoded MsgProto)``.

    A dict keeps lookups O(1) and dropping the oldest message O(1) (it is
    always the key ``first``)."""

    def __init__(self, name: str, limits: ChannelLimits) -> None:
        super().__init__(name, limits)
        self._msgs: dict[int, tuple[int, bytes]] = {}
        self._first = 0
        self._last = 0
        self._bytes = 0
        # (first, last, bytes, hit_limit) at mark(), and the messages the
        # limits dropped since (oldest first), put back by rollback()
        self._mark: tuple[int, int, int, bool] | None = None
        self._dropped: list[tuple[int, tuple[int, bytes]]] = []

    def mark(self) -> None:
        self._mark = (self._first, self._last, self._bytes, self.hit_limit)
        self._dropped = []

    def rollback(self) -> None:
        m = self._mark
        if m is None:
            return
        self._mark = None
        msgs = self._msgs
        for s in range(m[1] + 1, self._last + 1):
            msgs.pop(s, None)
        for s, e in self._dropped:
            if s <= m[1]:  # not one of the batch's own
                msgs[s] = e
        self._dropped = []
        self._first, self._last, self._bytes, self.hit_limit = m

    def release(self) -> None:
        self._mark = None
        self._dropped = []

    def store(self, seq: int, timestamp: int, data: bytes) -> None:
        if seq <= self._last:
            return
        if self._first == 0 or not self._msgs:
            self._first = seq
        self._msgs[seq] = (timestamp, data)
        self._last = seq
        self._bytes += len(data) if self.cipher is None else self.cipher.sealed_size(data)
        if len(self._msgs) > self.over_msgs or self._bytes > self.over_bytes:
            self.apply_limits(len(self._msgs), self._bytes)

    def _drop_oldest(self) -> bool:
        e = self._msgs.pop(self._first)
        if self._mark is not None:
            self._dropped.append((self._first, e))
        self._bytes -= self._size(e[1])
        self._first += 1
        return True

    def _size(self, data: bytes) -> int:
        """Bytes a message counts for: with encryption on, its encrypted
        size, as the Go server (which encrypts in memory too) counts it,
        so channelsz and MaxBytes agree; the payload itself stays plain."""
        return len(data) if self.cipher is None else self.cipher.sealed_size(data)

    def lookup(self, seq: int) -> bytes | None:
        m = self._msgs.get(seq)
        return m[1] if m is not None else None

    def timestamp_of(self, seq: int) -> int | None:
        m = self._msgs.get(seq)
        return m[0] if m is not None else None

    def first_sequence(self) -> int:
        if not self._msgs:
            return self._last + 1 if self._last else 0
        return self._first

    def last_sequence(self) -> int:
        return self._last

    def state(self) -> tuple[int, int]:
        return len(self._msgs), self._bytes

    def expire(self, now_ns: int) -> float | None:
        max_age = self.limits.max_age
        if max_age <= 0 or not self._msgs:
            return None
        cutoff = now_ns - int(max_age * 1e9)
        msgs = self._msgs
        while msgs:
            ts, data = msgs[self._first]
            if ts > cutoff:
                return (ts - cutoff) / 1e9
            del msgs[self._first]
            self._bytes -= self._size(data)
            self._first += 1
        return None

    def empty(self) -> None:
        self._msgs.clear()
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

"""A channel's messages in the SQL store: rows of ``Messages``.

Reads are served from memory when possible. Each channel keeps the messages
it stored recently (every uncommitted one and up to ``RECENT_MSGS``
committed ones): the server delivers what it just stored, so ``lookup``
rarely reaches the database. A miss runs one synchronous primary-key range
query on the store's autocommit connection and reads ahead (the window
doubles while the reader is sequential, as a new subscriber replaying
history is, up to ``READ_AHEAD_MAX`` rows or ``READ_AHEAD_BYTES``), so
replaying old messages costs one round trip per window, not per message.
``prefetch`` (see base.py) loads a range off the loop. Counts, bytes,
first/last sequences are kept in memory; sizes and timestamps of the oldest
messages (needed for limits and MaxAge) are read in windows of
``HEAD_WINDOW`` rows.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from typing import Any

from nss.log import get_logger
from nss.options import ChannelLimits
from nss.stores.base import MsgStore, StoreError
from nss.stores.crypto import DecryptError
from nss.stores.sql.context import StoreServices
from nss.stores.sql.journal import Batch

_log = get_logger()

# committed messages kept in memory per channel, beyond the uncommitted ones:
# enough for subscribers that lag a few batches behind the publishers
RECENT_MSGS = 16384
RECENT_BYTES = 4 * 1024 * 1024
# read-ahead window on lookup misses: starts small (random redelivery
# lookups), doubles while the reader is sequential
READ_AHEAD_MIN = 16
READ_AHEAD_MAX = 2048
READ_AHEAD_BYTES = 2 * 1024 * 1024
HEAD_WINDOW = 1024


class SQLMsgStore(MsgStore):
    """Messages of one channel: rows of ``Messages`` with ``id`` = channel ID."""

    def __init__(self, store: StoreServices, name: str, cid: int, limits: ChannelLimits) -> None:
        super().__init__(name, limits)
        self._store = store
        self.cid = cid
        self._first = 0
        self._last = 0
        self._count = 0
        self._bytes = 0
        self.deleted = False
        # seq -> (timestamp, MsgProto): every uncommitted message and the
        # most recent committed ones
        self._recent: OrderedDict[int, tuple[int, bytes]] = OrderedDict()
        self._recent_bytes = 0
        self._committed_upto = 0  # highest seq known committed
        self._new: deque[int] = deque()  # stored, not yet taken by a batch
        self._floor = 0  # rows below this seq must be deleted
        self._maxseq: int | None = None  # Channels.maxseq to write
        # read-ahead window of committed messages
        self._ra: dict[int, tuple[int, bytes]] = {}
        self._ra_end = 0
        self._ra_n = READ_AHEAD_MIN
        # (seq, timestamp, size) of the oldest messages, read in windows
        self._head: deque[tuple[int, int, int]] = deque()
        # publish batch (see MsgStore.mark): (first, last, count, bytes,
        # hit_limit, floor) at mark(), uncommitted messages the limits dropped
        # since, and the error of the commit that took the batch's rows
        self._mark: tuple[int, int, int, int, bool, int] | None = None
        self._dropped: list[tuple[int, tuple[int, bytes]]] = []
        self._failed: str | None = None

    # ------------------------------------------------------------------ writes
    def store(self, seq: int, timestamp: int, data: bytes) -> None:
        if seq <= self._last:
            return
        st = self._store
        st.check_writable()
        n = len(data)
        if self._count == 0:
            self._first = seq
        self._recent[seq] = (timestamp, data)
        self._recent_bytes += n
        self._new.append(seq)
        self._last = seq
        self._count += 1
        # bytes count what the database holds (encrypted, when it is)
        self._bytes += n if self.cipher is None else self.cipher.sealed_size(data)
        st.mark_msgs(self)
        if self._count > self.over_msgs or self._bytes > self.over_bytes:
            self.apply_limits(self._count, self._bytes)

    def _drop_oldest(self) -> bool:
        try:
            self._drop_first()
        except StoreError as e:
            # the new message is stored; the limit is enforced again on
            # the next store once the oldest message's size can be read
            _log.error(f'Unable to apply limits on channel "{self.name}": {e}')
            return False
        return True

    def _meta_first(self) -> tuple[int, int]:
        """(timestamp, size) of the oldest message."""
        s = self._first
        e = self._recent.get(s)
        if e is not None:
            return e[0], self._size(e[1])
        # read back (decrypted): its stored size is in the head window
        e = self._ra.get(s) if self.cipher is None else None
        if e is not None:
            return e[0], len(e[1])
        head = self._head
        while head and head[0][0] < s:
            head.popleft()
        if not head or head[0][0] != s:
            head.clear()
            rows = self._store.read(
                lambda c: c.execute(
                    self._store.stmts.meta_range, {"id": self.cid, "seq": s, "n": HEAD_WINDOW}
                ).all()
            )
            head.extend((int(r[0]), int(r[1]), int(r[2])) for r in rows)
            if not head or head[0][0] != s:
                # not in the database (a gap): account it as empty
                return 0, 0
        return head[0][1], head[0][2]

    def _size(self, data: bytes) -> int:
        """Stored size of a message this process stored (in ``_recent``)."""
        return len(data) if self.cipher is None else self.cipher.sealed_size(data)

    def _drop_first(self, meta: tuple[int, int] | None = None) -> None:
        s = self._first
        new = self._new
        if new and new[0] == s:
            # never handed to a transaction: just forget it (as Go's cache)
            new.popleft()
            e = self._recent.pop(s)
            self._recent_bytes -= len(e[1])
            size = self._size(e[1])
            if self._mark is not None and s <= self._mark[1]:
                self._dropped.append((s, e))
        else:
            if meta is None:
                meta = self._meta_first()
            size = meta[1]
            e = self._recent.pop(s, None)
            if e is not None:
                self._recent_bytes -= len(e[1])
            self._ra.pop(s, None)
            self._floor = s + 1
            self._store.mark_msgs(self)
        self._count -= 1
        self._bytes -= size
        self._first = s + 1

    def expire(self, now_ns: int) -> float | None:
        max_age = self.limits.max_age
        if max_age <= 0 or self._count == 0:
            return None
        cutoff = now_ns - int(max_age * 1e9)
        try:
            while self._count > 0:
                meta = self._meta_first()
                if meta[0] > cutoff:
                    return (meta[0] - cutoff) / 1e9
                self._drop_first(meta)
        except StoreError as e:
            _log.error(f'Unable to perform expiration for channel "{self.name}": {e}')
            return 1.0
        # all gone: keep the sequence in Channels.maxseq (stores.md §2.5)
        self._maxseq = self._last
        self._store.mark_msgs(self)
        return None

    def empty(self) -> None:
        self._new.clear()
        self._recent.clear()
        self._recent_bytes = 0
        self._ra.clear()
        self._head.clear()
        self._count = 0
        self._bytes = 0
        if self._last:
            self._first = self._last + 1
            self._floor = self._last + 1
            self._maxseq = self._last
            self._store.mark_msgs(self)

    async def flush(self) -> None:
        await self._store.flush()
        if self._failed is not None:
            # this channel's rows were in a transaction that failed (maybe
            # through another channel's flush): they are gone, see mark()
            raise StoreError(self._failed)

    # ------------------------------------------------------------------ batches
    def mark(self) -> None:
        self._mark = (
            self._first, self._last, self._count, self._bytes, self.hit_limit, self._floor
        )
        self._dropped = []
        self._failed = None

    def release(self) -> None:
        self._mark = None
        self._dropped = []

    def rollback(self) -> None:
        m = self._mark
        if m is None:
            return
        self._mark = None
        self._failed = None
        first, last, count, nbytes, hit_limit, floor = m
        recent = self._recent
        for s in range(last + 1, self._last + 1):
            e = recent.pop(s, None)
            if e is not None:
                self._recent_bytes -= len(e[1])
            self._ra.pop(s, None)
        new = self._new
        while new and new[-1] > last:
            new.pop()
        for s, e in reversed(self._dropped):
            new.appendleft(s)
            recent[s] = e
            recent.move_to_end(s, last=False)
            self._recent_bytes += len(e[1])
        self._dropped = []
        self._head.clear()
        self._first, self._last, self._count, self._bytes, self.hit_limit = m[:5]
        self._floor = floor
        self._store.discard_rows(self, first, last)
        if self._committed_upto > last:
            # rolled back after its rows were committed (not the server's
            # way, but the contract allows it): they go with the next commit
            self._committed_upto = last
            stmt = self._store.stmts.delete_above
            self._store.journal((stmt, {"id": self.cid, "seq": last}, None))

    def take(self, batch: Batch) -> None:
        """Move this channel's journal into ``batch``."""
        if self.deleted:
            self._new.clear()
            self._floor = 0
            self._maxseq = None
            return
        if self._new:
            recent = self._recent
            cipher = self.cipher
            if cipher is None:
                rows = [(s, *recent[s]) for s in self._new]
            else:
                # sealed once per flush; the cache keeps plaintext
                seal = cipher.seal_msg
                rows = [(s, recent[s][0], seal(recent[s][1])) for s in self._new]
            self._new.clear()
            batch.msgs.setdefault(self.cid, []).extend(rows)
            batch.committed[self] = rows[-1][0]
        if self._floor:
            batch.floors[self.cid] = max(self._floor, batch.floors.get(self.cid, 0))
            self._floor = 0
        if self._maxseq is not None:
            batch.maxseq[self.cid] = self._maxseq
            self._maxseq = None

    def committed(self, upto: int) -> None:
        """Called once rows up to ``upto`` are durable: trim the recent cache."""
        if upto > self._committed_upto:
            self._committed_upto = upto
        recent = self._recent
        while len(recent) > RECENT_MSGS or self._recent_bytes > RECENT_BYTES:
            s, e = recent.popitem(last=False)
            if s > self._committed_upto:  # uncommitted: must stay
                recent[s] = e
                recent.move_to_end(s, last=False)
                break
            self._recent_bytes -= len(e[1])

    def commit_failed(self, err: str) -> tuple[int, int] | None:
        """The transaction that took this channel's rows failed. Within a
        publish batch (marked), its rows must never be committed by a retry:
        ``flush`` raises ``err`` until the rollback; (first, last) at the
        mark tell the journal which rows go."""
        m = self._mark
        if m is None:
            return None
        self._failed = err
        return m[0], m[1]

    def recovered(self, count: int, first: int, last: int, nbytes: int) -> None:
        """State found by recovery; everything up to ``last`` is committed."""
        self._count, self._first, self._last, self._bytes = count, first, last, nbytes
        self._committed_upto = last

    # ------------------------------------------------------------------ reads
    def lookup(self, seq: int) -> bytes | None:
        if seq < self._first or seq > self._last:
            return None
        e = self._recent.get(seq)
        if e is None:
            e = self._ra.get(seq)
            if e is None:
                e = self._read_ahead(seq)
                if e is None:
                    return None
        max_age = self.limits.max_age
        if max_age > 0 and time.time_ns() > e[0] + int(max_age * 1e9):
            return None
        return e[1]

    def _read_ahead(self, seq: int) -> tuple[int, bytes] | None:
        if seq == self._ra_end:
            self._ra_n = min(self._ra_n * 2, READ_AHEAD_MAX)
        else:
            self._ra_n = READ_AHEAD_MIN
        rows = self._store.read(
            lambda c: c.execute(
                self._store.stmts.lookup_range, {"id": self.cid, "seq": seq, "n": self._ra_n}
            ).all()
        )
        self._fill_ra(rows)
        return self._ra.get(seq)

    def _fill_ra(self, rows: list[Any]) -> None:
        ra: dict[int, tuple[int, bytes]] = {}
        total = 0
        end = 0
        cipher = self.cipher
        for r in rows:
            s = int(r[0])
            data = bytes(r[2]) if r[2] is not None else b""
            if cipher is not None:
                try:
                    data = cipher.open_msg(data)
                except DecryptError as e:
                    # like a CRC error: reported with its row, never served
                    _log.error(
                        f'Error looking up message {s} on channel "{self.name}": unable to '
                        f"decrypt row Messages(id={self.cid}, seq={s}): {e}"
                    )
                    break
            ra[s] = (int(r[1]), data)
            end = s + 1
            total += len(data)
            if total > READ_AHEAD_BYTES:
                break
        self._ra = ra
        self._ra_end = end

    async def prefetch(self, first_seq: int, last_seq: int) -> None:
        first_seq = max(first_seq, self._first)
        last_seq = min(last_seq, self._last)
        if first_seq > last_seq or first_seq in self._recent or first_seq in self._ra:
            return
        n = min(last_seq - first_seq + 1, READ_AHEAD_MAX)
        stmt = self._store.stmts.lookup_range
        rows = await self._store.aread(
            lambda c: c.execute(stmt, {"id": self.cid, "seq": first_seq, "n": n}).all()
        )
        self._fill_ra(rows)

    def raw_message(self, seq: int) -> bytes | None:
        """The row of ``seq`` as stored (encrypted)."""
        row = self._store.read(
            lambda c: c.execute(
                self._store.stmts.lookup_range, {"id": self.cid, "seq": seq, "n": 1}
            ).first()
        )
        if row is None or int(row[0]) != seq or row[2] is None:
            return None
        return bytes(row[2])

    def timestamp_of(self, seq: int) -> int | None:
        if seq < self._first or seq > self._last or seq <= 0:
            return None
        e = self._recent.get(seq) or self._ra.get(seq)
        if e is not None:
            return e[0]
        for s, ts, _ in self._head:
            if s == seq:
                return ts
        # through the read-ahead window: the server asks for the timestamps
        # of recovered pending messages right before it redelivers them
        e = self._read_ahead(seq)
        return e[0] if e is not None else None

    def get_sequence_from_timestamp(self, ts: int) -> int:
        last = self._last
        if last == 0:
            return 0
        if self._first > last or self._count == 0:
            return last + 1
        recent = self._recent
        if recent:
            lo = next(iter(recent))
            if lo == self._first or ts > recent[lo][0]:
                # answer among the recent messages (timestamps never go back)
                for s, (mts, _) in recent.items():
                    if mts >= ts:
                        return s
                return last + 1
        row = self._store.read(
            lambda c: c.execute(
                self._store.stmts.seq_from_time, {"id": self.cid, "first": self._first, "ts": ts}
            ).first()
        )
        if row is not None:
            return int(row[0])
        for s, (mts, _) in recent.items():
            if mts >= ts:
                return s
        return last + 1

    def first_sequence(self) -> int:
        if self._count == 0:
            return self._last + 1 if self._last else 0
        return self._first

    def last_sequence(self) -> int:
        return self._last

    def state(self) -> tuple[int, int]:
        return self._count, self._bytes

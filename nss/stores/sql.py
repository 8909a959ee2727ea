"""SQL store (PostgreSQL, MySQL): the Go server's tables and row shapes.

A database written by nats-streaming-server v0.25.6 is served by nss and the
other way round (stores.md §4): whole MsgProtos in ``Messages.data``, JSON
arrays in ``SubsPending`` (caching mode) or one row per pending sequence
(``no_caching``), global subscription IDs from ``MAX(subid)``,
``Channels.maxseq`` for sequence continuity, ``ServerInfo.version = 1``.

How it fits the server's asyncio loop
-------------------------------------
The store API is synchronous except ``flush``; a database round trip on the
event loop for every publish or ack would stall everything. So:

* **Writes are journaled, then committed in one transaction.** Every
  synchronous mutation (``store``, ``create_sub``, ``add_seq_pending``,
  ``add_client``, ...) only updates memory and appends to one store-wide
  journal. ``flush()`` — of any channel's MsgStore or SubStore, or of the
  Store — commits *everything* the store has journaled, for all channels,
  in ONE transaction run on a dedicated writer thread. The server flushes
  every touched channel after a batch: the first call commits the whole
  batch, the others find nothing left (but still wait for a commit in
  progress, so that no caller returns before its own writes are durable).
  In the transaction, generic statements run first in journal order, then
  message inserts (COPY on PostgreSQL), then range deletes for purged
  messages, so a purge never misses a row inserted by the same batch.
  Changes no server flush picks up (acks that unblock nothing, expiry) are
  committed ``IDLE_FLUSH_DELAY`` later. ``init`` is the one exception: it
  writes at once (the server calls ``init`` then ``recover`` again when
  channels exist without server info).
* **Reads are served from memory when possible.** Each channel keeps the
  messages it stored recently (every uncommitted one and up to
  ``RECENT_MSGS`` committed ones): the server delivers what it just stored,
  so ``lookup`` rarely reaches the database. A miss runs one synchronous
  primary-key range query on a separate autocommit connection and reads
  ahead (the window doubles while the reader is sequential, as a new
  subscriber replaying history is, up to ``READ_AHEAD_MAX`` rows or
  ``READ_AHEAD_BYTES``), so replaying old messages costs one round trip per
  window, not per message. ``prefetch`` (see base.py) loads a range off the loop.
  Counts, bytes, first/last sequences are kept in memory; sizes and
  timestamps of the oldest messages (needed for limits and MaxAge) are read
  in windows of ``HEAD_WINDOW`` rows.
* **A lost database does not lose anything acknowledged.** A failed commit
  keeps its batch (the next attempt re-runs it with idempotent inserts, in
  case the commit did happen) and marks the store unavailable: ``flush``,
  ``store``, ``create_channel``, ``create_sub`` and ``add_client`` then fail
  at once with StoreError (so publishers get error PubAcks instead of a
  server that hangs), and a background task reconnects with exponential
  backoff, commits the kept batch and makes the store available again.
* **Fencing (FT).** With ``ft=True`` every write transaction starts with
  ``SELECT id FROM StoreLock FOR SHARE``: if the row does not name this
  store's lock ID the transaction is rolled back and the store refuses all
  further writes. The share lock is held until commit, so a standby's steal
  (an UPDATE of that row) waits for an in-progress commit, and any commit
  attempted after the steal sees the new owner: a deposed active server can
  never commit. ``lock()`` hands out the ``SQLLock`` (the Go StoreLock
  protocol, stores.md §4.10) the FT loop drives; its ``on_lost`` (the server
  sets it in FT mode) is called, from whichever thread noticed, the first
  time the store finds itself deposed, so the server stops at once.

``no_caching`` keeps the Go row shapes of that mode (one ``SubsPending`` row
per pending message, ``Subscriptions.lastsent`` on acks, one INSERT per
message); durability is the same in both modes since the server awaits
``flush`` before it acknowledges anything.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.sql.elements import TextClause

from nss.log import get_logger
from nss.nuid import NUID
from nss.options import ChannelLimits, SQLOptions, StoreLimits
from nss.pb import spb_pb2 as spb
from nss.stores.base import (
    ERR_NO_SRV_BUT_CHANNELS,
    ChannelStore,
    MsgStore,
    RecoveredChannel,
    RecoveredState,
    RecoveredSubscription,
    Store,
    StoreError,
    SubStore,
)
from nss.stores.lock import StoreLock
from nss.stores.sql_dsn import SQLTarget, parse_source
from nss.stores.sql_schema import check_schema

_log = get_logger()

T = TypeVar("T")

SQL_VERSION = 1
ERR_LOCK_LOST = "sql: store lock lost, another server is the active one"

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
# deep delete of a deleted channel: rows per statement (as in Go)
PURGE_CHUNK = 1000
# reconnect backoff
BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0
# journaled changes that no flush commits (acks that do not unblock a
# delivery, expiry, timers) are committed after this delay (Go: 1 s)
IDLE_FLUSH_DELAY = 0.2
# StoreLock protocol (stores.md §4.10): how often a contender re-reads a
# foreign owner's tick while it waits
LOCK_CHECK_PERIOD = 0.5
# bulk_insert_limit below this keeps the default insert method (as in Go)
MIN_BULK_INSERT_LIMIT = 5


def _json_seqs(seqs: Iterable[int]) -> bytes:
    return json.dumps(sorted(seqs), separators=(",", ":")).encode() if seqs else b""


def _decode_seqs(data: bytes | memoryview | None) -> list[int]:
    if not data:
        return []
    v = json.loads(bytes(data))
    return [int(x) for x in v] if v else []


# An op of the journal: a statement with its parameters and the idempotent
# variant used when a batch is retried, or a callable for anything else.
_Stmt = tuple[TextClause, dict[str, Any], TextClause | None]
_Call = Callable[[Connection, bool], None]
_Op = _Stmt | _Call


class _Statements:
    """Every statement the store runs, for one dialect. Named parameters;
    SQLAlchemy renders them in the driver's style (``$n``/``%s``)."""

    def __init__(self, postgres: bool) -> None:
        row = "row" if postgres else "`row`"
        self.postgres = postgres

        def t(s: str) -> TextClause:
            return text(s.replace("{row}", row))

        def ins(s: str) -> tuple[TextClause, TextClause]:
            s = s.replace("{row}", row)
            if postgres:
                return text(s), text(s + " ON CONFLICT DO NOTHING")
            return text(s), text(s.replace("INSERT INTO", "INSERT IGNORE INTO", 1))

        self.lock_select = t("SELECT id, tick FROM StoreLock FOR UPDATE")
        self.lock_insert = t("INSERT INTO StoreLock (id, tick) VALUES (:id, :tick)")
        self.lock_update = t("UPDATE StoreLock SET id=:id, tick=:tick")
        self.lock_release = t("UPDATE StoreLock SET id='', tick=0 WHERE id=:id")
        self.lock_fence = t(
            "SELECT id FROM StoreLock " + ("FOR SHARE" if postgres else "LOCK IN SHARE MODE")
        )
        self.has_server_info = t("SELECT COUNT(uniquerow) FROM ServerInfo")
        self.update_server_info = t(
            "UPDATE ServerInfo SET id=:id, proto=:proto, version=:version WHERE uniquerow=1"
        )
        self.add_server_info = t(
            "INSERT INTO ServerInfo (id, proto, version) VALUES (:id, :proto, :version)"
        )
        self.add_client, self.add_client_idem = ins(
            "INSERT INTO Clients (id, hbinbox, proto) VALUES (:id, :hbinbox, :proto)"
        )
        self.delete_client = t("DELETE FROM Clients WHERE id=:id")
        self.add_channel, self.add_channel_idem = ins(
            "INSERT INTO Channels (id, name, maxmsgs, maxbytes, maxage) "
            "VALUES (:id, :name, :maxmsgs, :maxbytes, :maxage)"
        )
        self.store_msg, self.store_msg_idem = ins(
            "INSERT INTO Messages VALUES (:id, :seq, :timestamp, :size, :data)"
        )
        self.lookup_range = t(
            "SELECT seq, timestamp, data FROM Messages WHERE id=:id AND seq>=:seq "
            "ORDER BY seq LIMIT :n"
        )
        self.meta_range = t(
            "SELECT seq, timestamp, size FROM Messages WHERE id=:id AND seq>=:seq "
            "ORDER BY seq LIMIT :n"
        )
        self.seq_from_time = t(
            "SELECT seq FROM Messages WHERE id=:id AND seq>=:first AND timestamp>=:ts "
            "ORDER BY seq LIMIT 1"
        )
        self.update_maxseq = t("UPDATE Channels SET maxseq=:maxseq WHERE id=:id")
        self.delete_below = t("DELETE FROM Messages WHERE id=:id AND seq<:seq")
        self.delete_above = t("DELETE FROM Messages WHERE id=:id AND seq>:seq")
        self.create_sub, self.create_sub_idem = ins(
            "INSERT INTO Subscriptions (id, subid, proto) VALUES (:id, :subid, :proto)"
        )
        self.update_sub = t("UPDATE Subscriptions SET proto=:proto WHERE id=:id AND subid=:subid")
        self.mark_sub_deleted = t(
            "UPDATE Subscriptions SET deleted=TRUE WHERE id=:id AND subid=:subid"
        )
        self.delete_sub = t("DELETE FROM Subscriptions WHERE id=:id AND subid=:subid")
        self.delete_marked_subs = t("DELETE FROM Subscriptions WHERE id=:id AND deleted=TRUE")
        self.delete_sub_pending = t("DELETE FROM SubsPending WHERE subid=:subid")
        self.sub_update_lastsent = t(
            "UPDATE Subscriptions SET lastsent=:lastsent WHERE id=:id AND subid=:subid"
        )
        self.sub_add_pending, self.sub_add_pending_idem = ins(
            "INSERT INTO SubsPending (subid, {row}, seq) VALUES (:subid, :row, :seq)"
        )
        self.sub_add_pending_row, self.sub_add_pending_row_idem = ins(
            "INSERT INTO SubsPending (subid, {row}, lastsent, pending, acks) "
            "VALUES (:subid, :row, :lastsent, :pending, :acks)"
        )
        self.sub_delete_pending = t("DELETE FROM SubsPending WHERE subid=:subid AND seq=:seq")
        self.sub_delete_pending_row = t("DELETE FROM SubsPending WHERE subid=:subid AND {row}=:row")
        # recovery
        self.recover_server_info = t("SELECT id, proto, version FROM ServerInfo WHERE uniquerow=1")
        self.recover_clients = t("SELECT id, hbinbox, proto FROM Clients")
        self.max_channel_id = t("SELECT COALESCE(MAX(id), 0) FROM Channels")
        self.max_sub_id = t("SELECT COALESCE(MAX(subid), 0) FROM Subscriptions")
        self.channels_list = t("SELECT id, name, maxseq FROM Channels WHERE deleted=FALSE")
        self.deleted_channels = t("SELECT id FROM Channels WHERE deleted=TRUE")
        self.last_seq = t("SELECT COALESCE(MAX(seq), 0) FROM Messages WHERE id=:id")
        self.channel_msgs = t(
            "SELECT COUNT(seq), COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0), "
            "COALESCE(SUM(size), 0) FROM Messages WHERE id=:id"
        )
        self.channel_subs = t(
            "SELECT subid, lastsent, proto, deleted FROM Subscriptions WHERE id=:id"
        )
        self.channel_pending = t(
            "SELECT p.subid, p.{row}, p.seq, p.lastsent, p.pending, p.acks FROM SubsPending p "
            "JOIN Subscriptions s ON s.subid=p.subid "
            "WHERE s.id=:id AND s.deleted=FALSE ORDER BY p.subid, p.{row}"
        )
        self.purge_sub_pending_below = t(
            "DELETE FROM SubsPending WHERE subid=:subid AND (seq > 0 AND seq<:seq)"
        )
        self.channel_limits = t("SELECT maxmsgs, maxbytes, maxage FROM Channels WHERE id=:id")
        self.expire_msgs = t("DELETE FROM Messages WHERE id=:id AND timestamp<=:ts")
        self.msgs_count = t("SELECT COUNT(seq) FROM Messages WHERE id=:id")
        self.seq_floor_max_msgs = t(
            "SELECT MIN(t.seq) FROM (SELECT seq FROM Messages WHERE id=:id "
            "ORDER BY seq DESC LIMIT :n) t"
        )
        self.total_size = t("SELECT COALESCE(SUM(size), 0) FROM Messages WHERE id=:id")
        if postgres:
            self.seq_floor_max_bytes = t(
                "SELECT COALESCE(MIN(seq), 0) FROM (SELECT seq, SUM(size) OVER "
                "(PARTITION BY id ORDER BY seq DESC) AS total FROM Messages WHERE id=:id) t "
                "WHERE t.total<=:n"
            )
        else:
            self.seq_floor_max_bytes = t(
                "SELECT COALESCE(MIN(seq), 0) FROM (SELECT seq, @sum:=@sum+size AS total "
                "FROM Messages JOIN (SELECT @sum:=0) m WHERE id=:id ORDER BY seq DESC) t "
                "WHERE t.total<=:n"
            )
        self.update_channel_limits = t(
            "UPDATE Channels SET maxmsgs=:maxmsgs, maxbytes=:maxbytes, maxage=:maxage WHERE id=:id"
        )
        # channel deletion
        self.delete_channel_fast = t("UPDATE Channels SET deleted=TRUE WHERE id=:id")
        self.channel_sub_ids = t("SELECT subid FROM Subscriptions WHERE id=:id")
        self.first_seq_chunk = t(
            "SELECT COALESCE(MAX(seq), 0) FROM (SELECT seq FROM Messages WHERE id=:id "
            "ORDER BY seq LIMIT :n) t1"
        )
        self.delete_msgs_upto = t("DELETE FROM Messages WHERE id=:id AND seq<=:seq")
        self.delete_channel_subs = t("DELETE FROM Subscriptions WHERE id=:id")
        self.delete_channel_row = t("DELETE FROM Channels WHERE id=:id")
        self.ping = t("SELECT 1")


class _Batch:
    """What one transaction commits: the journal taken at flush time."""

    __slots__ = ("ops", "msgs", "floors", "maxseq", "committed")

    def __init__(self) -> None:
        self.ops: list[_Op] = []
        self.msgs: dict[int, list[tuple[int, int, bytes]]] = {}
        self.floors: dict[int, int] = {}
        self.maxseq: dict[int, int] = {}
        # channel msg stores and the highest sequence this batch inserts
        self.committed: dict[SQLMsgStore, int] = {}

    def empty(self) -> bool:
        return not (self.ops or self.msgs or self.floors or self.maxseq)

    def merge(self, later: _Batch) -> None:
        """Append ``later`` (taken after this one failed) to this batch."""
        self.ops.extend(later.ops)
        for cid, rows in later.msgs.items():
            self.msgs.setdefault(cid, []).extend(rows)
        for cid, floor in later.floors.items():
            self.floors[cid] = max(floor, self.floors.get(cid, 0))
        self.maxseq.update(later.maxseq)
        for ms, seq in later.committed.items():
            self.committed[ms] = max(seq, self.committed.get(ms, 0))

    def count_msgs(self) -> int:
        return sum(len(v) for v in self.msgs.values())


class LockLost(Exception):
    """A write transaction found the StoreLock row owned by another server."""


class SQLLock(StoreLock):
    """The ``StoreLock`` row (stores.md §4.10): a lease renewed by ticks,
    with fencing.

    The owner's ID and a tick it bumps at every ``check``; a contender
    steals the row once the tick stood still for ``steal_after``. Every
    write transaction of an FT store starts with ``fence``: if the row does
    not name this lock the transaction is rolled back and the store refuses
    writes from then on (``fenced``), so a deposed server never commits
    anything, even one that was merely slow to notice."""

    def __init__(self, engine: Engine, stmts: _Statements, steal_after: float) -> None:
        self.id = NUID().next()
        self.steal_after = steal_after
        self.owner = False
        self.fenced = False
        self._engine = engine
        self._stmts = stmts
        self._mu = threading.Lock()
        self._released = False

    def _try(self, steal: bool) -> tuple[bool, str, int]:
        """One transaction of the protocol: (owned, previous id, previous tick)."""
        s = self._stmts
        with self._mu, self._engine.begin() as c:
            row = c.execute(s.lock_select).first()
            prev_id, prev_tick = (row[0] or "", int(row[1] or 0)) if row is not None else ("", 0)
            if row is None or steal or prev_id == "" or prev_id == self.id:
                tick = 0 if steal else prev_tick
                if row is None:
                    c.execute(s.lock_insert, {"id": self.id, "tick": tick + 1})
                else:
                    c.execute(s.lock_update, {"id": self.id, "tick": tick + 1})
                return True, prev_id, prev_tick
            return False, prev_id, prev_tick

    def acquire(self) -> bool:
        """Blocks up to ``steal_after`` while it watches another owner's tick.
        Once True, ``check`` must run at every FT heartbeat interval."""
        if self._released:
            return False
        if self.owner:
            return True
        try:
            ok, lid, tick = self._try(False)
            if not ok:
                # Steal only after the owner's tick stood still for the whole
                # window: a live owner refreshes at every FT heartbeat
                # (1 s by default, Go and nss alike), well inside the default
                # 1.5 s. Go waits 3 x 1.5 s; fencing keeps a faster steal
                # safe even against an owner that was merely slow.
                deadline = time.monotonic() + self.steal_after
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    time.sleep(min(LOCK_CHECK_PERIOD, left))
                    ok, nid, ntick = self._try(False)
                    if ok:
                        break
                    if nid != lid or ntick != tick:
                        return False  # the owner is alive
                if not ok:
                    ok, _, _ = self._try(True)
        except SQLAlchemyError as e:
            raise StoreError(f"sql: {_err_text(e)}") from e
        if ok:
            self.owner = True
            self.fenced = False
        return ok

    def check(self) -> bool:
        """Refresh the lease (tick + 1). False: another server owns the row
        (Go panics "lost store lock, aborting"); the store is fenced from
        then on. StoreError: the database could not be reached; unlike Go
        (which aborts after three), the FT machine keeps serving: a standby
        may steal the lock once the tick stands still, and fencing then
        keeps this store from committing anything."""
        if not self.owner:
            return False
        try:
            ok, _, _ = self._try(False)
        except SQLAlchemyError as e:
            raise StoreError(f"sql: {_err_text(e)}") from e
        if not ok:
            self.lost()
        return ok

    def fence(self, conn: Connection) -> None:
        """First statement of a write transaction: a share lock on the row,
        held until commit, so a steal (an UPDATE of the row) waits for a
        commit in progress and any later commit sees the new owner."""
        ids = [r[0] for r in conn.execute(self._stmts.lock_fence).all()]
        if not ids or any(i != self.id for i in ids) or not self.owner:
            raise LockLost()

    def lost(self) -> None:
        """Another server owns the store: refuse writes from now on; the
        first time, log it and tell ``on_lost``."""
        first = not self.fenced
        self.fenced = True
        self.owner = False
        if first:
            _log.error("SQL store: " + ERR_LOCK_LOST)
            cb = self.on_lost
            if cb is not None:
                cb()

    def release(self) -> None:
        """Clear the row (the next server acquires at once); the store is
        closing, so the lock is never acquired again."""
        self._released = True
        if not self.owner:
            return
        try:
            with self._mu, self._engine.begin() as c:
                c.execute(self._stmts.lock_release, {"id": self.id})
        except SQLAlchemyError as e:
            raise StoreError(_err_text(e)) from e
        self.owner = False


# ============================================================================ messages


class SQLMsgStore(MsgStore):
    """Messages of one channel: rows of ``Messages`` with ``id`` = channel ID."""

    def __init__(self, store: SQLStore, name: str, cid: int, limits: ChannelLimits) -> None:
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
        self._bytes += n
        st.mark_msgs(self)
        self.apply_limits()

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
        if e is None:
            e = self._ra.get(s)
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

    def _drop_first(self, meta: tuple[int, int] | None = None) -> None:
        s = self._first
        new = self._new
        if new and new[0] == s:
            # never handed to a transaction: just forget it (as Go's cache)
            new.popleft()
            e = self._recent.pop(s)
            size = len(e[1])
            self._recent_bytes -= size
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

    def take(self, batch: _Batch) -> None:
        """Move this channel's journal into ``batch``."""
        if self.deleted:
            self._new.clear()
            self._floor = 0
            self._maxseq = None
            return
        if self._new:
            recent = self._recent
            rows = [(s, *recent[s]) for s in self._new]
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
        for r in rows:
            s = int(r[0])
            data = bytes(r[2]) if r[2] is not None else b""
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


# ============================================================================ subscriptions


class _Row:
    """A ``SubsPending`` row of a subscription (either shape).

    ``seqs``: pending sequences the row lists; ``open``: those not acked
    yet; ``acks``: acks the row records that still cancel a pending entry of
    a live row. The row is deleted once both ``open`` and ``acks`` are
    empty; deleting it releases the acks other rows hold for its ``seqs``."""

    __slots__ = ("id", "seqs", "open", "acks")

    def __init__(self, rid: int, seqs: set[int]) -> None:
        self.id = rid
        self.seqs = seqs
        self.open = set(seqs)
        self.acks: set[int] = set()


class _SubPending:
    __slots__ = ("last_sent", "col_last_sent", "new", "new_acks", "seq_row", "ack_row")

    def __init__(self) -> None:
        self.last_sent = 0
        self.col_last_sent = 0  # value known to be in Subscriptions.lastsent
        self.new: set[int] = set()  # pending, not yet in a row
        self.new_acks: set[int] = set()  # acks of row entries, not yet written
        self.seq_row: dict[int, _Row] = {}
        self.ack_row: dict[int, _Row] = {}


class SQLSubStore(SubStore):
    """Subscriptions of one channel and their pending messages."""

    def __init__(self, store: SQLStore, cid: int, limits: ChannelLimits) -> None:
        super().__init__(limits)
        self._store = store
        self.cid = cid
        self.deleted = False
        self._ids: set[int] = set()  # rows with deleted=FALSE (MaxSubscriptions)
        self._has_marked_del = False
        self._cur_row = 0
        self._subs: dict[int, _SubPending] = {}
        self._dirty: set[int] = set()

    def _ap(self, sub_id: int) -> _SubPending:
        ap = self._subs.get(sub_id)
        if ap is None:
            ap = self._subs[sub_id] = _SubPending()
        return ap

    def check_writable(self) -> None:
        self._store.check_writable()

    def _sub_count(self) -> int:
        return len(self._ids)

    def _create_sub(self, sub: spb.SubState) -> None:
        st = self._store
        st.max_sub_id += 1
        sub.ID = st.max_sub_id
        s = st.stmts
        st.journal(
            (
                s.create_sub,
                {"id": self.cid, "subid": sub.ID, "proto": sub.SerializeToString()},
                s.create_sub_idem,
            )
        )
        if self._has_marked_del:
            st.journal((s.delete_marked_subs, {"id": self.cid}, None))
            self._has_marked_del = False
        self._ids.add(sub.ID)

    def update_sub(self, sub: spb.SubState) -> None:
        st = self._store
        params = {"id": self.cid, "subid": sub.ID, "proto": sub.SerializeToString()}
        stmts = st.stmts

        def op(conn: Connection, retry: bool) -> None:
            if conn.execute(stmts.update_sub, params).rowcount == 0:
                conn.execute(stmts.create_sub_idem if retry else stmts.create_sub, params)

        st.journal(op)
        self._ids.add(sub.ID)
        # an update may create a record (no existence check): never hand its
        # ID out again
        if sub.ID > st.max_sub_id:
            st.max_sub_id = sub.ID

    def delete_sub(self, sub_id: int) -> None:
        st = self._store
        s = st.stmts
        if sub_id == st.max_sub_id:
            # keep the row (marked) so that MAX(subid) never goes back
            st.journal((s.mark_sub_deleted, {"id": self.cid, "subid": sub_id}, None))
            self._has_marked_del = True
        else:
            st.journal((s.delete_sub, {"id": self.cid, "subid": sub_id}, None))
        st.journal((s.delete_sub_pending, {"subid": sub_id}, None))
        self._ids.discard(sub_id)
        self._subs.pop(sub_id, None)
        self._dirty.discard(sub_id)

    def add_seq_pending(self, sub_id: int, seq: int) -> None:
        ap = self._ap(sub_id)
        if seq > ap.last_sent:
            ap.last_sent = seq
        st = self._store
        if st.no_caching:
            self._cur_row += 1
            row = _Row(self._cur_row, {seq})
            old = ap.seq_row.get(seq)
            if old is not None:
                old.open.discard(seq)
            ap.seq_row[seq] = row
            s = st.stmts
            st.journal(
                (
                    s.sub_add_pending,
                    {"subid": sub_id, "row": self._cur_row, "seq": seq},
                    s.sub_add_pending_idem,
                )
            )
            return
        ap.new.add(seq)
        self._mark(sub_id)

    def ack_seq_pending(self, sub_id: int, seq: int) -> None:
        ap = self._ap(sub_id)
        st = self._store
        if st.no_caching:
            s = st.stmts
            if seq >= ap.last_sent:
                ap.last_sent = seq
                ap.col_last_sent = seq
                st.journal(
                    (
                        s.sub_update_lastsent,
                        {"lastsent": seq, "id": self.cid, "subid": sub_id},
                        None,
                    )
                )
            # by primary key when the row is known: Go's "WHERE subid AND seq"
            # lets the planner AND in a scan of all the sub's (dead) entries
            row = ap.seq_row.pop(seq, None)
            if row is not None:
                st.journal((s.sub_delete_pending_row, {"subid": sub_id, "row": row.id}, None))
            else:
                st.journal((s.sub_delete_pending, {"subid": sub_id, "seq": seq}, None))
            return
        if seq > ap.last_sent:
            ap.last_sent = seq
        if seq in ap.new:
            # never written: cancel without any write
            ap.new.discard(seq)
        else:
            row = ap.seq_row.pop(seq, None)
            if row is None:
                return
            row.open.discard(seq)
            ap.new_acks.add(seq)
            if not row.open and not row.acks:
                self._delete_row(sub_id, ap, row)
        self._mark(sub_id)

    def _delete_row(self, sub_id: int, ap: _SubPending, row: _Row) -> None:
        """Delete a row whose entries are all settled, and cascade to rows
        that only held acks for it."""
        st = self._store
        stack = [row]
        while stack:
            r = stack.pop()
            st.journal((st.stmts.sub_delete_pending_row, {"subid": sub_id, "row": r.id}, None))
            # the row may have carried the highest lastsent: rewrite the column
            ap.col_last_sent = -1
            for s in r.seqs:
                ar = ap.ack_row.pop(s, None)
                if ar is not None:
                    ar.acks.discard(s)
                    if not ar.open and not ar.acks and ar is not r:
                        stack.append(ar)
                else:
                    ap.new_acks.discard(s)

    def _mark(self, sub_id: int) -> None:
        if not self._dirty:
            self._store.mark_subs(self)
        self._dirty.add(sub_id)

    def take(self, batch: _Batch) -> None:
        """Write one row per subscription with new pending entries or acks
        (caching mode, stores.md §4.5)."""
        dirty, self._dirty = self._dirty, set()
        if self.deleted:
            return
        st = self._store
        s = st.stmts
        for sub_id in sorted(dirty):
            ap = self._subs.get(sub_id)
            if ap is None:
                continue
            if not ap.new and not ap.new_acks:
                if ap.last_sent != ap.col_last_sent:
                    batch.ops.append(
                        (
                            s.sub_update_lastsent,
                            {"lastsent": ap.last_sent, "id": self.cid, "subid": sub_id},
                            None,
                        )
                    )
                    ap.col_last_sent = ap.last_sent
                continue
            self._cur_row += 1
            row = _Row(self._cur_row, ap.new)
            for q in ap.new:
                ap.seq_row[q] = row
            row.acks = ap.new_acks
            for q in ap.new_acks:
                ap.ack_row[q] = row
            batch.ops.append(
                (
                    s.sub_add_pending_row,
                    {
                        "subid": sub_id,
                        "row": row.id,
                        "lastsent": ap.last_sent,
                        "pending": _json_seqs(ap.new),
                        "acks": _json_seqs(ap.new_acks),
                    },
                    s.sub_add_pending_row_idem,
                )
            )
            ap.new = set()
            ap.new_acks = set()

    async def flush(self) -> None:
        await self._store.flush()


# ============================================================================ store


class SQLStore(Store):
    """The SQL store. ``ft=True`` fences every write with the StoreLock row
    (see the module docstring); the FT loop drives the lock ``lock()`` hands
    out."""

    name = "SQL"

    def __init__(self, limits: StoreLimits, opts: SQLOptions, *, ft: bool = False) -> None:
        super().__init__(limits)
        self.opts = opts
        self.target: SQLTarget = parse_source(opts.driver, opts.source)
        self.postgres = self.target.postgres
        self.no_caching = opts.no_caching
        self.stmts = _Statements(self.postgres)
        self.ft = ft
        self.max_sub_id = 0
        self._max_channel_id = 0
        self._info: spb.ServerInfo | None = None
        # journal
        self._ops: list[_Op] = []
        self._dirty_msgs: dict[SQLMsgStore, None] = {}
        self._dirty_subs: dict[SQLSubStore, None] = {}
        self._backlog: _Batch | None = None  # a batch whose commit failed
        self._inflight = False
        self._flush_lock: asyncio.Lock | None = None
        self._idle_handle: asyncio.TimerHandle | None = None
        # health
        self._healthy = True
        self._last_error = ""
        self._reconnect_task: asyncio.Task[None] | None = None
        self._purge_task: asyncio.Task[None] | None = None
        self._to_purge: list[int] = []
        self._closed = False
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="nss-sql-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="nss-sql-reader")
        self._wengine, self._rengine = self._engines()
        self._lock = SQLLock(self._wengine, self.stmts, opts.lock_steal_after)
        try:
            with self._wengine.connect() as c:
                c.execute(self.stmts.ping)
                check_schema(c, self.postgres)
        except StoreError:
            self._dispose()
            raise
        except SQLAlchemyError as e:
            self._dispose()
            raise StoreError(f"sql: unable to open the database: {_err_text(e)}") from e

    # ------------------------------------------------------------------ setup
    def _engines(self) -> tuple[Engine, Engine]:
        tgt = self.target
        n = self.opts.max_open_conns
        if n > 0:
            wpool: dict[str, Any] = {"pool_size": max(1, n - 1), "max_overflow": 0}
        else:
            wpool = {"pool_size": 4, "max_overflow": 16}
        rpool: dict[str, Any] = {"pool_size": 2, "max_overflow": 0}
        # pre-ping: a pooled connection that died with a database restart is
        # replaced at checkout instead of failing the batch that gets it
        common: dict[str, Any] = {"pool_timeout": 30, "pool_pre_ping": True}
        if tgt.postgres:
            import psycopg

            conninfo = tgt.conninfo

            def creator() -> Any:
                return psycopg.connect(conninfo)

            w = create_engine(tgt.url, creator=creator, **wpool, **common)
            r = create_engine(
                tgt.url, creator=creator, isolation_level="AUTOCOMMIT", **rpool, **common
            )
        else:
            w = create_engine(tgt.url, connect_args=tgt.connect_args, **wpool, **common)
            r = create_engine(
                tgt.url,
                connect_args=tgt.connect_args,
                isolation_level="AUTOCOMMIT",
                **rpool,
                **common,
            )
        return w, r

    def _dispose(self) -> None:
        self._writer.shutdown(wait=False)
        self._reader.shutdown(wait=False)
        self._wengine.dispose()
        self._rengine.dispose()

    # ------------------------------------------------------------------ journal
    def journal(self, op: _Op) -> None:
        self._ops.append(op)
        if self._idle_handle is None:
            self.schedule_idle_flush()

    def mark_msgs(self, ms: SQLMsgStore) -> None:
        self._dirty_msgs[ms] = None
        if self._idle_handle is None:
            self.schedule_idle_flush()

    def mark_subs(self, ss: SQLSubStore) -> None:
        self._dirty_subs[ss] = None
        if self._idle_handle is None:
            self.schedule_idle_flush()

    def _has_journal(self) -> bool:
        return bool(self._ops or self._dirty_msgs or self._dirty_subs)

    def check_writable(self) -> None:
        """Fail fast (before anything is changed) while the database is
        unreachable or this server was fenced off."""
        if self._lock.fenced:
            raise StoreError(ERR_LOCK_LOST)
        if not self._healthy:
            raise StoreError(f"sql: database unavailable: {self._last_error}")

    def _take(self) -> _Batch:
        b = _Batch()
        b.ops, self._ops = self._ops, []
        dm, self._dirty_msgs = self._dirty_msgs, {}
        ds, self._dirty_subs = self._dirty_subs, {}
        for ss in ds:
            ss.take(b)
        for ms in dm:
            ms.take(b)
        return b

    def schedule_idle_flush(self) -> None:
        """Commit changes made outside a server batch (expiry, timers) soon,
        even if nothing else flushes."""
        if self._idle_handle is not None or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._idle_handle = loop.call_later(IDLE_FLUSH_DELAY, self._idle_flush, loop)

    def _idle_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._idle_handle = None
        if self._closed or not self._healthy:
            return

        async def run() -> None:
            try:
                await self.flush()
            except StoreError:
                pass

        loop.create_task(run())

    # ------------------------------------------------------------------ flush
    async def flush(self) -> None:
        """Commit everything journaled by this store, in one transaction."""
        if not self._has_journal() and not self._inflight and self._backlog is None:
            return
        await self._commit(force=False)

    async def _commit(self, force: bool) -> None:
        if self._flush_lock is None:
            self._flush_lock = asyncio.Lock()
        async with self._flush_lock:
            if self._lock.fenced:
                raise StoreError(ERR_LOCK_LOST)
            if not self._healthy and not force:
                raise StoreError(f"sql: database unavailable: {self._last_error}")
            batch = self._take()
            retry = self._backlog is not None
            if self._backlog is not None:
                self._backlog.merge(batch)
                batch, self._backlog = self._backlog, None
            if batch.empty():
                self._after_commit(batch)
                return
            self._inflight = True
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(self._writer, self._exec_batch, batch, retry)
            except LockLost:
                self._lock.lost()
                raise StoreError(ERR_LOCK_LOST) from None
            except Exception as e:
                err = f"sql: unable to store: {_err_text(e)}"
                self._drop_marked_rows(batch, err)
                self._backlog = batch
                self._unhealthy(e)
                raise StoreError(err) from e
            finally:
                self._inflight = False
            self._after_commit(batch)

    def _drop_marked_rows(self, batch: _Batch, err: str) -> None:
        """A failed transaction: the messages of publish batches (marked
        channels) are answered with errors, so they must never be committed
        by a retry. Done here, before anything else can run, because the
        background retry would otherwise commit them behind the caller's
        back; every such channel's ``flush`` raises ``err`` from now on
        until its ``rollback``."""
        for ms in list(batch.committed):
            m = ms._mark
            if m is None:
                continue
            ms._failed = err
            self._discard_from(batch, ms, m[0], m[1])

    def discard_rows(self, ms: SQLMsgStore, first: int, last: int) -> None:
        """``ms`` rolled back to ``last``: its later rows must not be
        committed by the retry of a failed batch."""
        if self._backlog is not None and ms in self._backlog.committed:
            self._discard_from(self._backlog, ms, first, last)

    def _discard_from(self, batch: _Batch, ms: SQLMsgStore, first: int, last: int) -> None:
        cid = ms.cid
        rows = [r for r in batch.msgs.get(cid, ()) if r[0] <= last]
        if rows:
            batch.msgs[cid] = rows
            batch.committed[ms] = rows[-1][0]
        else:
            batch.msgs.pop(cid, None)
            batch.committed.pop(ms, None)
        if cid in batch.floors:
            # the limits of the failed batch removed nothing after all; what
            # was below the first message at the mark still goes
            if first > 0:
                batch.floors[cid] = first
            else:
                del batch.floors[cid]
        # the commit may have happened before the connection broke: the
        # retry removes what it would have stored
        batch.ops.append((self.stmts.delete_above, {"id": cid, "seq": last}, None))

    def _after_commit(self, batch: _Batch) -> None:
        for ms, upto in batch.committed.items():
            ms.committed(upto)
        if self._to_purge and self._purge_task is None and not self._closed:
            self._purge_task = asyncio.get_running_loop().create_task(self._purge())

    def _exec_batch(self, batch: _Batch, retry: bool) -> None:
        """Writer thread: run one batch in one transaction."""
        s = self.stmts
        with self._wengine.begin() as conn:
            self._fence(conn)
            self._run_ops(conn, batch.ops, retry)
            for cid, rows in batch.msgs.items():
                self._insert_msgs(conn, cid, rows, retry)
            for cid, floor in batch.floors.items():
                conn.execute(s.delete_below, {"id": cid, "seq": floor})
            for cid, maxseq in batch.maxseq.items():
                conn.execute(s.update_maxseq, {"maxseq": maxseq, "id": cid})

    @staticmethod
    def _run_ops(conn: Connection, ops: list[_Op], retry: bool) -> None:
        # consecutive uses of one statement go as one executemany (pipelined
        # by psycopg) instead of one round trip each
        i, n = 0, len(ops)
        while i < n:
            op = ops[i]
            if callable(op):
                op(conn, retry)
                i += 1
                continue
            stmt, params, idem = op
            j = i + 1
            while j < n:
                nxt = ops[j]
                if callable(nxt) or nxt[0] is not stmt:
                    break
                j += 1
            use = idem if (retry and idem is not None) else stmt
            if j - i == 1:
                conn.execute(use, params)
            else:
                conn.execute(use, [o[1] for o in ops[i:j]])  # type: ignore[index]
            i = j

    def _insert_msgs(
        self, conn: Connection, cid: int, rows: list[tuple[int, int, bytes]], retry: bool
    ) -> None:
        s = self.stmts
        limit = self.opts.bulk_insert_limit
        if retry or self.no_caching or (not self.postgres and limit < MIN_BULK_INSERT_LIMIT):
            stmt = s.store_msg_idem if retry else s.store_msg
            conn.execute(
                stmt,
                [
                    {"id": cid, "seq": q, "timestamp": ts, "size": len(d), "data": d}
                    for q, ts, d in rows
                ],
            )
            return
        if limit >= MIN_BULK_INSERT_LIMIT:
            # multi-row INSERT ... VALUES of at most ``limit`` rows; built for
            # the driver cursor (both psycopg and PyMySQL take %s), since
            # binding thousands of named parameters costs more than the query
            raw = conn.connection.driver_connection
            assert raw is not None
            head = "INSERT INTO Messages (id, seq, timestamp, size, data) VALUES "
            cur = raw.cursor()
            try:
                for k in range(0, len(rows), limit):
                    part = rows[k : k + limit]
                    flat: list[Any] = []
                    for q, ts, d in part:
                        flat += (cid, q, ts, len(d), d)
                    cur.execute(head + ",".join(["(%s,%s,%s,%s,%s)"] * len(part)), flat)
            finally:
                cur.close()
            return
        # PostgreSQL: COPY in binary format, by far the fastest (see sql/README.md)
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cur:
            with cur.copy(
                "COPY Messages (id, seq, timestamp, size, data) FROM STDIN (FORMAT BINARY)"
            ) as cp:
                cp.set_types(["int4", "int8", "int8", "int4", "bytea"])
                for q, ts, d in rows:
                    cp.write_row((cid, q, ts, len(d), d))

    # ------------------------------------------------------------------ health
    def _unhealthy(self, e: BaseException) -> None:
        text_ = _err_text(e)
        if self._healthy:
            _log.error(f"SQL store: database error, retrying in the background: {text_}")
        self._healthy = False
        self._last_error = text_
        if self._reconnect_task is None and not self._closed:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._reconnect_task = loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        """Re-establish the connection with exponential backoff, commit what
        the failed batch(es) held, then accept writes again."""
        delay = BACKOFF_MIN
        loop = asyncio.get_running_loop()
        try:
            while not self._closed and not self._lock.fenced:
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                try:
                    await loop.run_in_executor(self._writer, self._ping)
                    await self._commit(force=True)
                except StoreError as e:
                    self._last_error = str(e)
                    continue
                except Exception as e:
                    self._last_error = _err_text(e)
                    continue
                self._healthy = True
                _log.info("SQL store: database connection restored")
                return
        finally:
            self._reconnect_task = None

    def _ping(self) -> None:
        with self._wengine.connect() as c:
            c.execute(self.stmts.ping)

    @property
    def healthy(self) -> bool:
        return self._healthy

    def read(self, fn: Callable[[Connection], T]) -> T:
        """A synchronous read on the autocommit connection (loop thread)."""
        if not self._healthy:
            raise StoreError(f"sql: database unavailable: {self._last_error}")
        try:
            with self._rengine.connect() as c:
                return fn(c)
        except SQLAlchemyError as e:
            if _is_disconnect(e):
                self._unhealthy(e)
            raise StoreError(f"sql: {_err_text(e)}") from e

    async def aread(self, fn: Callable[[Connection], T]) -> T:
        """``read`` on the reader thread, for prefetching off the loop."""
        if not self._healthy:
            raise StoreError(f"sql: database unavailable: {self._last_error}")

        def run() -> T:
            with self._rengine.connect() as c:
                return fn(c)

        try:
            return await asyncio.get_running_loop().run_in_executor(self._reader, run)
        except SQLAlchemyError as e:
            if _is_disconnect(e):
                self._unhealthy(e)
            raise StoreError(f"sql: {_err_text(e)}") from e

    # ------------------------------------------------------------------ Store API
    def init(self, info: spb.ServerInfo) -> None:
        """Write the server info at once (not journaled): the server calls
        ``init`` then ``recover`` again when channels exist without it, and
        that second recovery must see the row. Rare (start-up), so a
        synchronous statement is fine; any thread may call it."""
        self._info = info
        stmts = self.stmts
        params = {"id": info.ClusterID, "proto": info.SerializeToString(), "version": SQL_VERSION}

        def op(conn: Connection, retry: bool) -> None:
            if conn.execute(stmts.update_server_info, params).rowcount == 0:
                conn.execute(stmts.add_server_info, params)

        b = _Batch()
        b.ops.append(op)
        try:
            self._exec_batch(b, False)
        except LockLost:
            self._lock.lost()
            raise StoreError(ERR_LOCK_LOST) from None
        except SQLAlchemyError as e:
            raise StoreError(f"sql: unable to store server info: {_err_text(e)}") from e

    def _new_channel(self, name: str, limits: ChannelLimits) -> ChannelStore:
        self.check_writable()
        cid = self._max_channel_id + 1
        self._max_channel_id = cid
        s = self.stmts
        self.journal(
            (
                s.add_channel,
                {
                    "id": cid,
                    "name": name,
                    "maxmsgs": limits.max_msgs,
                    "maxbytes": limits.max_bytes,
                    "maxage": int(limits.max_age * 1e9),
                },
                s.add_channel_idem,
            )
        )
        return ChannelStore(
            name, SQLMsgStore(self, name, cid, limits), SQLSubStore(self, cid, limits)
        )

    def _drop_channel(self, cs: ChannelStore) -> None:
        ms = cs.msgs
        assert isinstance(ms, SQLMsgStore)
        ss = cs.subs
        assert isinstance(ss, SQLSubStore)
        ms.deleted = True
        ss.deleted = True
        self.journal((self.stmts.delete_channel_fast, {"id": ms.cid}, None))
        # the rows go in the background once the fast delete is committed
        self._to_purge.append(ms.cid)

    def add_client(self, info: spb.ClientInfo) -> None:
        self.check_writable()
        s = self.stmts
        params = {"id": info.ID, "hbinbox": info.HbInbox, "proto": info.SerializeToString()}
        # a row left by a previous connection of the same ID is replaced
        self.journal((s.delete_client, {"id": info.ID}, None))
        self.journal((s.add_client, params, s.add_client_idem))

    def delete_client(self, client_id: str) -> None:
        self.journal((self.stmts.delete_client, {"id": client_id}, None))

    async def close(self) -> None:
        if self._closed:
            return
        try:
            if self._healthy and not self._lock.fenced:
                await self.flush()
        except StoreError as e:
            _log.error(f"SQL store: unable to flush on close: {e}")
        self._closed = True
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        for t in (self._reconnect_task, self._purge_task):
            if t is not None:
                t.cancel()
        if self._backlog is not None or self._has_journal():
            _log.error("SQL store: closing with changes that could not be committed")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._writer, self._lock.release)
        except StoreError as e:
            _log.error(f"SQL store: unable to release the store lock: {e}")
        await loop.run_in_executor(None, self._dispose_wait)

    def _dispose_wait(self) -> None:
        self._writer.shutdown(wait=True)
        self._reader.shutdown(wait=True)
        self._wengine.dispose()
        self._rengine.dispose()

    # ------------------------------------------------------------------ channel purge
    async def _purge(self) -> None:
        """Delete the rows of deleted channels (stores.md §4.6), a chunk per
        transaction so that purging never holds long locks."""
        loop = asyncio.get_running_loop()
        try:
            while self._to_purge and not self._closed:
                cid = self._to_purge[0]
                try:
                    await loop.run_in_executor(self._writer, self._purge_channel, cid)
                except LockLost:
                    self._lock.lost()
                    return
                except Exception as e:
                    _log.error(f"Unable to completely delete channel id {cid}: {_err_text(e)}")
                    if _is_disconnect(e):
                        self._unhealthy(e)
                    return  # tried again after the next successful commit
                self._to_purge.pop(0)
        finally:
            self._purge_task = None

    def _purge_channel(self, cid: int) -> None:
        s = self.stmts
        with self._wengine.begin() as c:
            self._fence(c)
            subids = [int(r[0]) for r in c.execute(s.channel_sub_ids, {"id": cid}).all()]
        for k in range(0, len(subids), PURGE_CHUNK):
            with self._wengine.begin() as c:
                self._fence(c)
                c.execute(s.delete_sub_pending, [{"subid": x} for x in subids[k : k + PURGE_CHUNK]])
        while True:
            with self._wengine.begin() as c:
                self._fence(c)
                upto = c.execute(s.first_seq_chunk, {"id": cid, "n": PURGE_CHUNK}).scalar()
                if not upto:
                    break
                c.execute(s.delete_msgs_upto, {"id": cid, "seq": upto})
        with self._wengine.begin() as c:
            self._fence(c)
            c.execute(s.delete_channel_subs, {"id": cid})
            c.execute(s.delete_channel_row, {"id": cid})

    # ------------------------------------------------------------------ recovery
    def recover(self) -> RecoveredState | None:
        """Read the whole state (stores.md §4.7-4.9). Synchronous: the server
        runs it in a thread before it serves anything."""
        if self.ft and not self._lock.owner:
            raise StoreError("sql: recovery needs the store lock (acquire lock() first)")
        try:
            return self._recover()
        except LockLost:
            self._lock.lost()
            raise StoreError(ERR_LOCK_LOST) from None
        except SQLAlchemyError as e:
            raise StoreError(f"sql: unable to recover: {_err_text(e)}") from e

    def _recover(self) -> RecoveredState | None:
        s = self.stmts
        with self._wengine.connect() as c:
            row = c.execute(s.recover_server_info).first()
            if row is None:
                if (c.execute(s.max_channel_id).scalar() or 0) > 0:
                    raise StoreError(ERR_NO_SRV_BUT_CHANNELS)
                return None
            cluster_id, data, version = row
            if version != SQL_VERSION:
                raise StoreError(
                    f"sql: unsupported version: {version} (supports [1..{SQL_VERSION}])"
                )
            info = spb.ServerInfo()
            info.ParseFromString(bytes(data or b""))
            if info.ClusterID != cluster_id:
                raise StoreError(
                    f'sql: id "{cluster_id}" in column does not match cluster ID in data '
                    f'"{info.ClusterID}"'
                )
            self._info = info
            rs = RecoveredState(info=info)
            for cid_, hb, proto in c.execute(s.recover_clients).all():
                ci = spb.ClientInfo()
                if proto:
                    ci.ParseFromString(bytes(proto))
                else:
                    ci.ID, ci.HbInbox = cid_, hb or ""
                rs.clients.append(ci)
            self._max_channel_id = int(c.execute(s.max_channel_id).scalar() or 0)
            if self._max_channel_id == 0:
                return rs
            self.max_sub_id = int(c.execute(s.max_sub_id).scalar() or 0)
            chans = [(int(r[0]), r[1], int(r[2] or 0)) for r in c.execute(s.channels_list).all()]
            self._to_purge = [int(r[0]) for r in c.execute(s.deleted_channels).all()]
            c.rollback()
        for cid, name, maxseq in chans:
            with self._wengine.begin() as c:
                self._fence(c)
                rc = self._recover_channel(c, cid, name, maxseq)
            rs.channels[name] = rc
            self.channels[name] = rc.channel
        return rs

    def _recover_channel(self, c: Connection, cid: int, name: str, maxseq: int) -> RecoveredChannel:
        s = self.stmts
        limits = self.channel_limits(name)
        ms = SQLMsgStore(self, name, cid, limits)
        ss = SQLSubStore(self, cid, limits)
        stored_maxseq = maxseq
        maxseq = max(maxseq, int(c.execute(s.last_seq, {"id": cid}).scalar() or 0))
        self._limits_on_recovery(c, cid, limits)
        count, first, last, total = c.execute(s.channel_msgs, {"id": cid}).one()
        ms._count, ms._first, ms._last, ms._bytes = int(count), int(first), int(last), int(total)
        subs: list[RecoveredSubscription] = []
        rows_by_sub: dict[int, list[Any]] = {}
        for r in c.execute(s.channel_pending, {"id": cid}).all():
            rows_by_sub.setdefault(int(r[0]), []).append(r)
        for subid, lastsent, proto, deleted in c.execute(s.channel_subs, {"id": cid}).all():
            subid = int(subid)
            if deleted:
                ss._has_marked_del = True
                continue
            ss._ids.add(subid)
            lastsent = int(lastsent or 0)
            if proto is None:
                maxseq = max(maxseq, lastsent)
                continue
            sub = spb.SubState()
            sub.ParseFromString(bytes(proto))
            if lastsent > sub.lastSent:
                sub.lastSent = lastsent
            pending = self._recover_pending(c, ss, sub, lastsent, rows_by_sub.get(subid, []), ms)
            maxseq = max(maxseq, sub.lastSent)
            subs.append(RecoveredSubscription(sub=sub, pending=pending))
        if maxseq > ms._last:
            ms._first = maxseq + 1
            ms._last = maxseq
            if ms._count == 0 and maxseq > stored_maxseq:
                # nothing left: keep the sequence for the next restart too
                c.execute(s.update_maxseq, {"maxseq": maxseq, "id": cid})
        ms._committed_upto = ms._last
        return RecoveredChannel(channel=ChannelStore(name, ms, ss), subscriptions=subs)

    def _limits_on_recovery(self, c: Connection, cid: int, limits: ChannelLimits) -> None:
        s = self.stmts
        smm, smb, sma = c.execute(s.channel_limits, {"id": cid}).one()
        smm, smb, sma = int(smm or 0), int(smb or 0), int(sma or 0)
        max_age = int(limits.max_age * 1e9)
        if max_age > 0:
            c.execute(s.expire_msgs, {"id": cid, "ts": time.time_ns() - max_age})
        mm = limits.max_msgs
        if 0 < mm < smm:
            count = int(c.execute(s.msgs_count, {"id": cid}).scalar() or 0)
            if count > 1 and count > mm:
                floor = c.execute(s.seq_floor_max_msgs, {"id": cid, "n": mm}).scalar()
                if floor:
                    c.execute(s.delete_below, {"id": cid, "seq": int(floor)})
        mb = limits.max_bytes
        if 0 < mb < smb:
            total = int(c.execute(s.total_size, {"id": cid}).scalar() or 0)
            if total > mb:
                floor = int(c.execute(s.seq_floor_max_bytes, {"id": cid, "n": mb}).scalar() or 0)
                if floor == 0:
                    floor = int(c.execute(s.last_seq, {"id": cid}).scalar() or 0)
                if floor > 0:
                    c.execute(s.delete_below, {"id": cid, "seq": floor})
        if (smm, smb, sma) != (mm, mb, max_age):
            c.execute(
                s.update_channel_limits,
                {"maxmsgs": mm, "maxbytes": mb, "maxage": max_age, "id": cid},
            )

    def _recover_pending(
        self,
        c: Connection,
        ss: SQLSubStore,
        sub: spb.SubState,
        col_last_sent: int,
        rows: list[Any],
        ms: SQLMsgStore,
    ) -> set[int]:
        """Pending set of a subscription from its SubsPending rows (either
        shape, stores.md §4.7); rebuilds the row bookkeeping so that later
        acks delete exactly the rows they settle."""
        s = self.stmts
        subid = sub.ID
        ap = ss._ap(subid)
        pending: set[int] = set()
        json_rows = False
        live: list[_Row] = []
        for _, rid, seq, lastsent, pend_b, acks_b in rows:
            rid, seq = int(rid), int(seq or 0)
            ss._cur_row = max(ss._cur_row, rid)
            if seq > 0:
                if self.no_caching and ms._first and seq < ms._first:
                    continue  # purged below (message gone)
                if seq > sub.lastSent:
                    sub.lastSent = seq
                pending.add(seq)
                r = _Row(rid, {seq})
                old = ap.seq_row.get(seq)
                if old is not None:
                    old.open.discard(seq)
                ap.seq_row[seq] = r
                live.append(r)
                continue
            json_rows = True
            ls = int(lastsent or 0)
            if ls > sub.lastSent:
                sub.lastSent = ls
            r = _Row(rid, set(_decode_seqs(pend_b)))
            for q in r.seqs:
                pending.add(q)
                old = ap.seq_row.get(q)
                if old is not None:
                    old.open.discard(q)
                ap.seq_row[q] = r
            for q in _decode_seqs(acks_b):
                if q in pending:
                    pending.discard(q)
                    a = ap.seq_row.pop(q, None)
                    if a is not None:
                        a.open.discard(q)
                    r.acks.add(q)
                    ap.ack_row[q] = r
            live.append(r)
        ap.last_sent = sub.lastSent
        ap.col_last_sent = col_last_sent
        if self.no_caching:
            if ms._first:
                c.execute(s.purge_sub_pending_below, {"subid": subid, "seq": ms._first})
            if json_rows:
                # rewrite in this mode's shape: one row per pending sequence
                c.execute(s.delete_sub_pending, {"subid": subid})
                ap.seq_row.clear()
                ap.ack_row.clear()
                for q in sorted(pending):
                    ss._cur_row += 1
                    ap.seq_row[q] = _Row(ss._cur_row, {q})
                    c.execute(s.sub_add_pending, {"subid": subid, "row": ss._cur_row, "seq": q})
                if sub.lastSent > col_last_sent:
                    c.execute(
                        s.sub_update_lastsent,
                        {"lastsent": sub.lastSent, "id": ss.cid, "subid": subid},
                    )
                    ap.col_last_sent = sub.lastSent
            return pending
        # caching mode: garbage-collect the rows that recovery found settled
        dead = [r for r in live if not r.open and not r.acks]
        gone: set[int] = set()
        while dead:
            r = dead.pop()
            if r.id in gone:
                continue
            gone.add(r.id)
            c.execute(s.sub_delete_pending_row, {"subid": subid, "row": r.id})
            for q in r.seqs:
                ar = ap.ack_row.pop(q, None)
                if ar is not None:
                    ar.acks.discard(q)
                    if not ar.open and not ar.acks and ar.id not in gone:
                        dead.append(ar)
        if gone and sub.lastSent > col_last_sent:
            c.execute(
                s.sub_update_lastsent, {"lastsent": sub.lastSent, "id": ss.cid, "subid": subid}
            )
            ap.col_last_sent = sub.lastSent
        return pending

    # ------------------------------------------------------------------ FT lock
    def lock(self) -> SQLLock | None:
        """The StoreLock row, when opened for FT (the only mode that fences
        its writes)."""
        return self._lock if self.ft else None

    def _fence(self, conn: Connection) -> None:
        if self.ft:
            self._lock.fence(conn)

    @property
    def fenced(self) -> bool:
        return self._lock.fenced


def _is_disconnect(e: BaseException) -> bool:
    if isinstance(e, DBAPIError):
        if e.connection_invalidated:
            return True
        name = type(e.orig).__name__ if e.orig is not None else ""
        return name in ("OperationalError", "InterfaceError")
    return False


def _err_text(e: BaseException) -> str:
    if isinstance(e, DBAPIError) and e.orig is not None:
        return str(e.orig).strip().splitlines()[0] if str(e.orig).strip() else type(e).__name__
    return str(e) or type(e).__name__

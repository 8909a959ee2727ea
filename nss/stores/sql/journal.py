"""The SQL store's journal: writes are journaled, then committed in one
transaction.

Every synchronous mutation (``store``, ``create_sub``, ``add_seq_pending``,
``add_client``, ...) only updates memory and appends to one store-wide
journal: statements in order, and the channels whose messages or pending
rows changed. ``take`` turns it into a ``Batch``, which ``run_batch``
executes inside one transaction: generic statements first in journal
order, then message inserts (COPY on PostgreSQL), then range deletes for
purged messages, so a purge never misses a row inserted by the same batch.

A batch whose commit failed is kept and runs again, with idempotent
inserts, before anything newer (the commit may have happened before the
connection broke); except the rows of publish batches answered with errors
(marked channels), which must never be committed by a retry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import TextClause

from nss.stores.sql.statements import Statements

# An op of the journal: a statement with its parameters and the idempotent
# variant used when a batch is retried, or a callable for anything else.
Stmt = tuple[TextClause, dict[str, Any], TextClause | None]
Call = Callable[[Connection, bool], None]
Op = Stmt | Call
MsgRow = tuple[int, int, bytes]  # seq, timestamp, MsgProto

# bulk_insert_limit below this keeps the default insert method (as in Go)
MIN_BULK_INSERT_LIMIT = 5


class JournaledSubs(Protocol):
    """A channel's subscriptions with pending rows to write."""

    def take(self, batch: Batch) -> None: ...


class JournaledMsgs(Protocol):
    """A channel's messages with rows to write."""

    cid: int

    def take(self, batch: Batch) -> None: ...

    def committed(self, upto: int) -> None: ...

    def commit_failed(self, err: str) -> tuple[int, int] | None: ...


class Batch:
    """What one transaction commits: the journal taken at flush time."""

    __slots__ = ("ops", "msgs", "floors", "maxseq", "committed")

    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.msgs: dict[int, list[MsgRow]] = {}
        self.floors: dict[int, int] = {}
        self.maxseq: dict[int, int] = {}
        # channel msg stores and the highest sequence this batch inserts
        self.committed: dict[JournaledMsgs, int] = {}

    def empty(self) -> bool:
        return not (self.ops or self.msgs or self.floors or self.maxseq)

    def merge(self, later: Batch) -> None:
        """Append ``later`` (taken after this one failed) to this batch."""
        self.ops.extend(later.ops)
        for cid, rows in later.msgs.items():
            self.msgs.setdefault(cid, []).extend(rows)
        for cid, floor in later.floors.items():
            self.floors[cid] = max(floor, self.floors.get(cid, 0))
        self.maxseq.update(later.maxseq)
        for ms, seq in later.committed.items():
            self.committed[ms] = max(seq, self.committed.get(ms, 0))


class Journal:
    """Everything journaled and not committed yet, for all channels."""

    def __init__(self, stmts: Statements) -> None:
        self._stmts = stmts
        self.ops: list[Op] = []
        self._msgs: dict[JournaledMsgs, None] = {}
        self._subs: dict[JournaledSubs, None] = {}
        self.backlog: Batch | None = None  # a batch whose commit failed

    def add(self, op: Op) -> None:
        self.ops.append(op)

    def mark_msgs(self, ms: JournaledMsgs) -> None:
        self._msgs[ms] = None

    def mark_subs(self, ss: JournaledSubs) -> None:
        self._subs[ss] = None

    def pending(self) -> bool:
        """Changes not taken yet (a failed batch aside)."""
        return bool(self.ops or self._msgs or self._subs)

    def idle(self) -> bool:
        return not self.pending() and self.backlog is None

    def take(self) -> tuple[Batch, bool]:
        """The batch to commit now, and whether it is a retry (idempotent
        inserts): a failed batch comes first, with the new changes behind."""
        b = Batch()
        b.ops, self.ops = self.ops, []
        dm, self._msgs = self._msgs, {}
        ds, self._subs = self._subs, {}
        for ss in ds:
            ss.take(b)
        for ms in dm:
            ms.take(b)
        if self.backlog is None:
            return b, False
        self.backlog.merge(b)
        b, self.backlog = self.backlog, None
        return b, True

    def failed(self, batch: Batch, err: str) -> None:
        """The commit of ``batch`` failed: keep it for the retry, without
        the rows of publish batches (marked channels): those are answered
        with errors, so they must never be committed by a retry. Done at
        once, before anything else can run, because the background retry
        would otherwise commit them behind the caller's back; every such
        channel's ``flush`` raises ``err`` until its ``rollback``."""
        for ms in list(batch.committed):
            m = ms.commit_failed(err)
            if m is not None:
                self._discard_from(batch, ms, m[0], m[1])
        self.backlog = batch

    def discard_rows(self, ms: JournaledMsgs, first: int, last: int) -> None:
        """``ms`` rolled back to ``last``: its later rows must not be
        committed by the retry of a failed batch."""
        if self.backlog is not None and ms in self.backlog.committed:
            self._discard_from(self.backlog, ms, first, last)

    def _discard_from(self, batch: Batch, ms: JournaledMsgs, first: int, last: int) -> None:
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
        batch.ops.append((self._stmts.delete_above, {"id": cid, "seq": last}, None))


def run_batch(
    conn: Connection,
    s: Statements,
    batch: Batch,
    retry: bool,
    no_caching: bool,
    bulk_insert_limit: int,
) -> None:
    """Execute ``batch`` in the transaction of ``conn``."""
    _run_ops(conn, batch.ops, retry)
    for cid, rows in batch.msgs.items():
        _insert_msgs(conn, s, cid, rows, retry, no_caching, bulk_insert_limit)
    for cid, floor in batch.floors.items():
        conn.execute(s.delete_below, {"id": cid, "seq": floor})
    for cid, maxseq in batch.maxseq.items():
        conn.execute(s.update_maxseq, {"maxseq": maxseq, "id": cid})


def _run_ops(conn: Connection, ops: list[Op], retry: bool) -> None:
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
    conn: Connection,
    s: Statements,
    cid: int,
    rows: list[MsgRow],
    retry: bool,
    no_caching: bool,
    limit: int,
) -> None:
    if retry or no_caching or (not s.postgres and limit < MIN_BULK_INSERT_LIMIT):
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

"""A channel's subscriptions in the SQL store: rows of ``Subscriptions``
and ``SubsPending`` (stores.md §4.5).

Caching mode writes one ``SubsPending`` row per subscription per batch with
JSON arrays of the new pending sequences and acks; ``no_caching`` keeps the
Go row shape of that mode (one row per pending message,
``Subscriptions.lastsent`` on acks). Subscription IDs are global to the
store (``MAX(subid)``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy.engine import Connection

from nss.options import ChannelLimits
from nss.pb import spb_pb2 as spb
from nss.stores.base import RecoveredSubscription, SubStore
from nss.stores.sql.context import StoreServices
from nss.stores.sql.journal import Batch


def json_seqs(seqs: Iterable[int]) -> bytes:
    return json.dumps(sorted(seqs), separators=(",", ":")).encode() if seqs else b""


def decode_seqs(data: bytes | memoryview | None) -> list[int]:
    if not data:
        return []
    v = json.loads(bytes(data))
    return [int(x) for x in v] if v else []


class Row:
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


class SubPending:
    __slots__ = ("last_sent", "col_last_sent", "new", "new_acks", "seq_row", "ack_row")

    def __init__(self) -> None:
        self.last_sent = 0
        self.col_last_sent = 0  # value known to be in Subscriptions.lastsent
        self.new: set[int] = set()  # pending, not yet in a row
        self.new_acks: set[int] = set()  # acks of row entries, not yet written
        self.seq_row: dict[int, Row] = {}
        self.ack_row: dict[int, Row] = {}


class SQLSubStore(SubStore):
    """Subscriptions of one channel and their pending messages."""

    def __init__(self, store: StoreServices, cid: int, limits: ChannelLimits) -> None:
        super().__init__(limits)
        self._store = store
        self.cid = cid
        self.deleted = False
        self._ids: set[int] = set()  # rows with deleted=FALSE (MaxSubscriptions)
        self._has_marked_del = False
        self._cur_row = 0
        self._subs: dict[int, SubPending] = {}
        self._dirty: set[int] = set()

    def _ap(self, sub_id: int) -> SubPending:
        ap = self._subs.get(sub_id)
        if ap is None:
            ap = self._subs[sub_id] = SubPending()
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
            row = Row(self._cur_row, {seq})
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

    def _delete_row(self, sub_id: int, ap: SubPending, row: Row) -> None:
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

    def take(self, batch: Batch) -> None:
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
            row = Row(self._cur_row, ap.new)
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
                        "pending": json_seqs(ap.new),
                        "acks": json_seqs(ap.new_acks),
                    },
                    s.sub_add_pending_row_idem,
                )
            )
            ap.new = set()
            ap.new_acks = set()

    async def flush(self) -> None:
        await self._store.flush()

    # ------------------------------------------------------------------ recovery
    def recover(self, c: Connection, first: int) -> tuple[list[RecoveredSubscription], int]:
        """The channel's subscriptions with their pending sets (stores.md
        §4.7), and the highest sequence they were sent (the channel's
        sequence carries on from there). ``first``: the channel's first
        message."""
        s = self._store.stmts
        rows_by_sub: dict[int, list[Any]] = {}
        for r in c.execute(s.channel_pending, {"id": self.cid}).all():
            rows_by_sub.setdefault(int(r[0]), []).append(r)
        subs: list[RecoveredSubscription] = []
        maxseq = 0
        for subid, lastsent, proto, deleted in c.execute(s.channel_subs, {"id": self.cid}).all():
            subid = int(subid)
            if deleted:
                self._has_marked_del = True
                continue
            self._ids.add(subid)
            lastsent = int(lastsent or 0)
            if proto is None:
                maxseq = max(maxseq, lastsent)
                continue
            sub = spb.SubState()
            sub.ParseFromString(bytes(proto))
            if lastsent > sub.lastSent:
                sub.lastSent = lastsent
            pending = self._recover_pending(c, sub, lastsent, rows_by_sub.get(subid, []), first)
            maxseq = max(maxseq, sub.lastSent)
            subs.append(RecoveredSubscription(sub=sub, pending=pending))
        return subs, maxseq

    def _recover_pending(
        self, c: Connection, sub: spb.SubState, col_last_sent: int, rows: list[Any], first: int
    ) -> set[int]:
        """Pending set of a subscription from its SubsPending rows (either
        shape, stores.md §4.7); rebuilds the row bookkeeping so that later
        acks delete exactly the rows they settle."""
        s = self._store.stmts
        no_caching = self._store.no_caching
        subid = sub.ID
        ap = self._ap(subid)
        pending: set[int] = set()
        json_rows = False
        live: list[Row] = []
        for _, rid, seq, lastsent, pend_b, acks_b in rows:
            rid, seq = int(rid), int(seq or 0)
            self._cur_row = max(self._cur_row, rid)
            if seq > 0:
                if no_caching and first and seq < first:
                    continue  # purged below (message gone)
                if seq > sub.lastSent:
                    sub.lastSent = seq
                pending.add(seq)
                r = Row(rid, {seq})
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
            r = Row(rid, set(decode_seqs(pend_b)))
            for q in r.seqs:
                pending.add(q)
                old = ap.seq_row.get(q)
                if old is not None:
                    old.open.discard(q)
                ap.seq_row[q] = r
            for q in decode_seqs(acks_b):
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
        if no_caching:
            if first:
                c.execute(s.purge_sub_pending_below, {"subid": subid, "seq": first})
            if json_rows:
                # rewrite in this mode's shape: one row per pending sequence
                c.execute(s.delete_sub_pending, {"subid": subid})
                ap.seq_row.clear()
                ap.ack_row.clear()
                for q in sorted(pending):
                    self._cur_row += 1
                    ap.seq_row[q] = Row(self._cur_row, {q})
                    c.execute(s.sub_add_pending, {"subid": subid, "row": self._cur_row, "seq": q})
                if sub.lastSent > col_last_sent:
                    c.execute(
                        s.sub_update_lastsent,
                        {"lastsent": sub.lastSent, "id": self.cid, "subid": subid},
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
                s.sub_update_lastsent, {"lastsent": sub.lastSent, "id": self.cid, "subid": subid}
            )
            ap.col_last_sent = sub.lastSent
        return pending

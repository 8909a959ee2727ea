"""A channel's subscriptions in the FILE store: ``subs.dat`` (stores.md §3.5)."""

from __future__ import annotations

import math
import os
import time

from google.protobuf.message import DecodeError

from nss.hot import AckNoter, append_sub_ops
from nss.log import get_logger
from nss.options import ChannelLimits
from nss.pb import spb_pb2 as spb
from nss.stores.base import RecoveredSubscription, StoreError, SubStore
from nss.stores.file.diskio import (
    SyncState,
    append_records,
    close_quietly,
    open_store_file,
    rewrite_file,
)
from nss.stores.file.records import (
    REC_HDR,
    REC_HEADER_SIZE,
    SUB_REC_ACK,
    SUB_REC_DEL,
    SUB_REC_MSG,
    SUB_REC_NEW,
    SUB_REC_UPDATE,
    VERSION_SIZE,
    BadRecord,
    RecordReader,
    decode_id_seq,
    encode_id_seq,
    open_file,
)
from nss.stores.file.shared import Shared

_log = get_logger()

SUBS_FILE = "subs.dat"
_OPS_MAX = 8192  # noted pending/ack operations (2 entries each) encoded at once


class FileSubStore(SubStore):
    """Subscription log of one channel (``subs.dat``, stores.md §3.5).

    The live state (SubState and pending set per subscription) is in memory
    because compaction rewrites it and recovery returns it; pending sets are
    bounded by MaxInflight per subscription."""

    def __init__(self, shared: Shared, name: str, directory: str, limits: ChannelLimits) -> None:
        super().__init__(limits)
        self._shared = shared
        self.name = name
        self.path = os.path.join(directory, SUBS_FILE)
        self._crc = shared.crc
        self._crc_poly = shared.opts.crc_poly
        self._opts = shared.opts
        self._bufsize = shared.opts.buffer_size
        self._fd = -1
        self._off = VERSION_SIZE  # end of the file on disk
        self._buf = bytearray()
        self._subs: dict[int, spb.SubState] = {}
        self._pending: dict[int, set[int]] = {}
        self._max_id = 0
        self._num_recs = 0
        self._del_recs = 0
        self._file_size = 0  # record bytes (without the version), as Go counts
        self._compact_ts = -math.inf
        self._sync = SyncState()
        self.last_used = 0
        self._closed = False
        # a subscription record (not just pending/ack) awaits its fsync
        self._structural = False
        # noted pending/ack operations: sub ID and seq, and beside them one
        # byte each, 0 for a pending and 1 for an ack; cleared in place,
        # never replaced (the ack noter holds them)
        self._ops: list[int] = []
        self._kinds = bytearray()
        self._check_compact = False  # an ack since the last check
        # the per-ack record, compiled where the hot path is (an ack from
        # the compiled DirectBatch then costs no Python call)
        self.ack_seq_pending = AckNoter(
            self._ops, self._kinds, self._pending, self._encode_ops, _OPS_MAX
        )

    # -- holder protocol ---------------------------------------------------

    def close_fds(self) -> None:
        if self._fd < 0:
            return
        if self._buf:
            try:
                self._write_out()
            except OSError as e:
                _log.error(f'Unable to write to "{self.path}": {e}')
        close_quietly(self._fd)
        self._fd = -1
        self._shared.pool.closed(self)

    def idle_closable(self, limited: bool) -> bool:
        return limited

    def _open(self) -> None:
        if self._fd >= 0:
            self._shared.pool.touch(self)
            return
        self._fd = os.open(self.path, os.O_RDWR)
        self._shared.pool.opened(self, 1)

    # -- interface ---------------------------------------------------------

    def _sub_count(self) -> int:
        return len(self._subs)

    def _create_sub(self, sub: spb.SubState) -> None:
        self._max_id += 1
        sub.ID = self._max_id
        self._record(SUB_REC_NEW, sub.SerializeToString())
        self._structural = True
        self._num_recs += 1
        c = spb.SubState()
        c.CopyFrom(sub)
        self._subs[sub.ID] = c
        self._pending[sub.ID] = set()

    def update_sub(self, sub: spb.SubState) -> None:
        self._record(SUB_REC_UPDATE, sub.SerializeToString())
        self._structural = True
        self._num_recs += 1
        self._del_recs += 1
        c = spb.SubState()
        c.CopyFrom(sub)
        self._subs[sub.ID] = c
        self._pending.setdefault(sub.ID, set())

    def delete_sub(self, sub_id: int) -> None:
        self._record(SUB_REC_DEL, encode_id_seq(sub_id, 0))
        self._structural = True
        self._del_recs += 1
        if self._subs.pop(sub_id, None) is not None:
            self._del_recs += len(self._pending.pop(sub_id, ()))
            if self._should_compact():  # deletes are rare: at once, as Go does
                self._compact()

    # Pending and ack records are the per-message part of subs.dat: each
    # call only notes (sub ID and seq, and a kind: pending or ack)
    # and the records are encoded together when the batch is flushed
    # (``_encode_ops``); fragmentation is checked then too, once per batch.

    def add_seq_pending(self, sub_id: int, seq: int) -> None:
        ops = self._ops
        ops.append(sub_id)
        ops.append(seq)
        self._kinds.append(0)
        st = self._subs.get(sub_id)
        if st is not None:
            if seq > st.lastSent:
                st.lastSent = seq
            self._pending[sub_id].add(seq)
        if len(ops) >= _OPS_MAX:
            self._encode_ops()

    def add_seqs_pending(self, sub_id: int, seqs: list[int]) -> None:
        if not seqs:
            return
        noted = [sub_id] * (2 * len(seqs))
        noted[1::2] = seqs
        ops = self._ops
        ops.extend(noted)
        self._kinds.extend(bytes(len(seqs)))
        st = self._subs.get(sub_id)
        if st is not None:
            top = max(seqs)
            if top > st.lastSent:
                st.lastSent = top
            self._pending[sub_id].update(seqs)
        if len(ops) >= _OPS_MAX:
            self._encode_ops()

    def ack_seq_pending(self, sub_id: int, seq: int) -> None:
        """Shadowed on each instance by its ``nss.hot.AckNoter`` (set in
        ``__init__``), which is what callers reach; this is only the way
        through the class."""
        self.__dict__["ack_seq_pending"](sub_id, seq)

    async def flush(self) -> None:
        """Write everything; fsync only when a subscription record changed.

        Pending and ack records are written (page cache) but not fsynced on
        every batch: losing them to a power cut can only cause a message to
        be sent again, which at-least-once delivery allows, while an fsync
        per delivery batch and per ack batch would cost two more disk round
        trips per synchronous publish. Subscription creates, updates and
        deletes are fsynced before the server answers. The periodic
        ``auto_sync`` makes the rest durable too."""
        if self._closed:
            return
        try:
            self._encode_ops()
            if self._check_compact and self._should_compact():
                self._compact()
            self._write_out()
            if self._opts.do_sync and self._structural and self._sync.dirty():
                self._structural = False
                await self._sync.sync(self._sync_fds, fsync_here=self._fsync_here)
        except OSError as e:
            raise StoreError(str(e)) from e

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._write_out()
            if self._sync.dirty():
                self._sync.sync_now(self._sync_fds)
        finally:
            self.close_fds()

    # -- internals ---------------------------------------------------------

    def _encode_ops(self) -> None:
        """Append the records of the noted pending/ack operations to the
        buffer, in order, in one loop."""
        ops = self._ops
        if not ops:
            return
        buf = self._buf
        start = len(buf)
        n_ops = len(ops) // 2
        try:
            n_acks = append_sub_ops(
                buf, ops, self._kinds, SUB_REC_MSG, SUB_REC_ACK, self._crc_poly
            )
        finally:
            # in place: the ack noter holds these
            ops.clear()
            self._kinds.clear()
        self._file_size += len(buf) - start
        self._num_recs += n_ops - n_acks
        self._del_recs += n_acks
        if n_acks:
            self._check_compact = True
        if self._bufsize == 0 or len(buf) >= self._bufsize:
            try:
                self._write_out()
            except OSError as e:
                raise StoreError(str(e)) from e

    def _record(self, rtype: int, payload: bytes) -> None:
        self._encode_ops()  # the records stay in the order of the calls
        rec = REC_HDR.pack((rtype << 24) | len(payload), self._crc(payload)) + payload
        self._file_size += len(rec)
        self._buf += rec
        if self._bufsize == 0 or len(self._buf) >= self._bufsize:
            try:
                self._write_out()
            except OSError as e:
                raise StoreError(str(e)) from e

    def _write_out(self) -> None:
        self._encode_ops()
        if not self._buf:
            return
        self._open()
        append_records(self._fd, self._buf, self._off, self.path)
        self._off += len(self._buf)
        self._buf = bytearray()
        self._sync.written += 1

    def _fsync_here(self) -> None:
        self._open()
        os.fsync(self._fd)

    def _sync_fds(self) -> list[int]:
        self._open()
        return [os.dup(self._fd)]

    async def auto_sync(self) -> None:
        if self._closed:
            return
        self._encode_ops()
        if self._check_compact and self._should_compact():
            self._compact()
        self._write_out()
        if self._sync.dirty():
            await self._sync.sync(self._sync_fds, self._shared.executor())

    def _should_compact(self) -> bool:
        self._check_compact = False  # until the next ack
        o = self._opts
        if not o.compact_enabled:
            return False
        if o.compact_min_size > 0 and self._file_size < o.compact_min_size:
            return False
        frag = 100 if self._num_recs == 0 else self._del_recs * 100 // self._num_recs
        if frag < o.compact_frag:
            return False
        return time.monotonic() - self._compact_ts >= o.compact_interval

    def _compact(self) -> None:
        """Rewrite the live subscriptions (a type-1 record each, then a
        type-5 record per pending sequence) into a temporary file in the
        root, fsync it and rename it over subs.dat."""
        out = bytearray()
        crc = self._crc
        nrecs = 0
        for sid, st in self._subs.items():
            p = st.SerializeToString()
            out += REC_HDR.pack((SUB_REC_NEW << 24) | len(p), crc(p)) + p
            nrecs += 1
            for seq in self._pending.get(sid, ()):
                p = encode_id_seq(sid, seq)
                out += REC_HDR.pack((SUB_REC_MSG << 24) | len(p), crc(p)) + p
                nrecs += 1
        if not rewrite_file(self._shared.root, "subs", self.path, out):
            return
        self._ops.clear()
        self._kinds.clear()
        self._buf = bytearray()
        if self._fd >= 0:
            close_quietly(self._fd)
            self._fd = -1
            self._shared.pool.closed(self)
        self._off = VERSION_SIZE + len(out)
        self._file_size = len(out)
        self._num_recs = nrecs
        self._del_recs = 0
        self._compact_ts = time.monotonic()
        self._sync.synced = self._sync.written

    def create_file(self) -> None:
        """A new channel starts a new log, even over leftovers of a channel
        directory that was not fully removed (they are not store state)."""
        fd = open_file(self.path, truncate=True)
        self._off = VERSION_SIZE
        self._fd = fd
        self._shared.pool.opened(self, 1)

    def recover(self) -> None:
        """Replay subs.dat (stores.md §3.5)."""
        fd = open_store_file(self.path)
        try:
            rr = RecordReader(fd, True, self._crc, self._opts.do_crc)
            subs, pending = self._subs, self._pending
            while True:
                off = rr.offset
                try:
                    r = rr.next()
                except BadRecord as e:
                    self._shared.end_of_records(self.path, fd, e)
                    break
                if r is None:
                    break
                t, payload = r
                self._file_size += REC_HEADER_SIZE + len(payload)
                try:
                    if t == SUB_REC_MSG or t == SUB_REC_ACK or t == SUB_REC_DEL:
                        ids = decode_id_seq(payload)
                        if ids is None:
                            if t == SUB_REC_DEL:
                                d = spb.SubStateDelete.FromString(payload)
                                ids = (d.ID, 0)
                            else:
                                u = spb.SubStateUpdate.FromString(payload)
                                ids = (u.ID, u.seqno)
                        sid, seq = ids
                        if t == SUB_REC_MSG:
                            st = subs.get(sid)
                            if st is not None:
                                if seq > st.lastSent:
                                    st.lastSent = seq
                                pending[sid].add(seq)
                                self._num_recs += 1
                        elif t == SUB_REC_ACK:
                            p = pending.get(sid)
                            if p is not None:
                                p.discard(seq)
                                self._del_recs += 1
                        else:
                            if subs.pop(sid, None) is not None:
                                self._del_recs += 1 + len(pending.pop(sid, ()))
                            if sid > self._max_id:
                                self._max_id = sid
                    elif t == SUB_REC_NEW or t == SUB_REC_UPDATE:
                        st = spb.SubState.FromString(payload)
                        if t == SUB_REC_UPDATE and st.ID in subs:
                            self._del_recs += 1  # the previous version is now garbage
                        else:
                            pending[st.ID] = set()
                        subs[st.ID] = st
                        if st.ID > self._max_id:
                            self._max_id = st.ID
                        self._num_recs += 1
                    else:
                        raise StoreError(f"unexpected record type: {t}")
                except DecodeError as e:
                    raise StoreError(f'{e} (file "{self.path}", offset {off})') from e
            self._off = os.fstat(fd).st_size
        finally:
            os.close(fd)

    def recovered(self) -> list[RecoveredSubscription]:
        out = []
        for sid, st in self._subs.items():
            c = spb.SubState()
            c.CopyFrom(st)
            out.append(RecoveredSubscription(sub=c, pending=set(self._pending.get(sid, ()))))
        return out

    def discard(self) -> None:
        self._closed = True
        self._ops.clear()
        self._kinds.clear()
        self._buf = bytearray()
        self.close_fds()

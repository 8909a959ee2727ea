"""Message file slices: one ``msgs.N.dat``/``msgs.N.idx`` pair each
(stores.md §3.6, §3.7), the files of a channel's slices, and the cuts a
rolled-back batch could not make.

A slice is described by a handful of counters; positions and timestamps
stay in its ``.idx`` file and are read on demand, so memory does not grow
with the number of messages. Writes go to buffers that ``write_out``
writes with ``pwrite`` at known offsets on the event loop thread (page cache,
microseconds); the ``fsync`` runs on a worker thread over duplicated
descriptors (group commit, see ``diskio.SyncState``).
"""

from __future__ import annotations

import os
from array import array
from bisect import bisect_left
from typing import Protocol

from nss.log import get_logger
from nss.stores.base import StoreError
from nss.stores.file.diskio import SyncState, close_quietly
from nss.stores.file.records import (
    IDX_REC,
    IDX_REC_SIZE,
    MSG_OVERHEAD,
    REC_HDR,
    REC_HEADER_SIZE,
    VERSION_SIZE,
    pwrite_all,
)
from nss.stores.file.shared import Shared

_log = get_logger()

# Counters of a slice that a publish batch may change (``Slice.snapshot``).
SliceCounters = tuple[int, int, int, int, int, int, int, int]


class SliceOwner(Protocol):
    """What a slice asks of the log it belongs to (the descriptor pool
    closes slices through it)."""

    name: str  # the channel's
    dir: str

    def close_slice(self, sl: Slice) -> None: ...

    def is_write_slice(self, sl: Slice) -> bool: ...


class Slice:
    """One ``msgs.N.dat``/``msgs.N.idx`` pair, described by counters only.

    ``base`` is the sequence at index position 0, so the index record of
    ``seq`` is at ``4 + (seq - base) * 32`` (Go's ``firstSeq - rmCount``
    arithmetic). Only slices with sequence gaps inside (written by very old
    servers) carry an explicit ``seqs`` array."""

    __slots__ = (
        "owner",
        "num",
        "dat_path",
        "idx_path",
        "base",
        "first_seq",
        "last_seq",
        "count",
        "rm_count",
        "size",
        "first_write",
        "dat_fd",
        "idx_fd",
        "idx_n",
        "dat_end",
        "seqs",
        "last_used",
    )

    def __init__(self, owner: SliceOwner, num: int) -> None:
        self.owner = owner
        self.num = num
        self.dat_path = os.path.join(owner.dir, f"msgs.{num}.dat")
        self.idx_path = os.path.join(owner.dir, f"msgs.{num}.idx")
        self.base = 0
        self.first_seq = 0
        self.last_seq = 0
        self.count = 0  # records in the slice, removed ones included
        self.rm_count = 0
        self.size = 0  # payload + 40 per record: the slice size limit
        self.first_write = 0
        self.dat_fd = -1
        self.idx_fd = -1
        self.idx_n = 0  # index records on disk
        self.dat_end = VERSION_SIZE
        self.seqs: array[int] | None = None
        self.last_used = 0

    # the descriptor pool's holder protocol
    def close_fds(self) -> None:
        self.owner.close_slice(self)

    def idle_closable(self, limited: bool) -> bool:
        return limited or not self.owner.is_write_slice(self)

    def pos(self, seq: int) -> int:
        """Index position of ``seq``; -1 if the slice does not hold it."""
        seqs = self.seqs
        if seqs is None:
            return seq - self.base
        i = bisect_left(seqs, seq)
        return i if i < len(seqs) and seqs[i] == seq else -1

    def read_idx(self, pos: int, n: int) -> bytes:
        """Index records ``[pos, pos + n)`` from the file (fewer when it is
        shorter); the slice's files must be open."""
        out = os.pread(self.idx_fd, n * IDX_REC_SIZE, VERSION_SIZE + pos * IDX_REC_SIZE)
        return out[: len(out) // IDX_REC_SIZE * IDX_REC_SIZE]

    def snapshot(self) -> SliceCounters:
        """The counters a publish batch may change, for ``restore``."""
        n = -1 if self.seqs is None else len(self.seqs)
        return (
            self.base,
            self.first_seq,
            self.last_seq,
            self.count,
            self.rm_count,
            self.size,
            self.first_write,
            n,
        )

    def restore(self, snap: SliceCounters) -> None:
        (
            self.base,
            self.first_seq,
            self.last_seq,
            self.count,
            self.rm_count,
            self.size,
            self.first_write,
            n,
        ) = snap
        if n < 0:
            self.seqs = None
        elif self.seqs is not None:
            del self.seqs[n:]

    def add(self, seq: int, ts: int, size: int) -> None:
        """Account for one record (recovery scans and appends)."""
        if self.count == 0:
            self.base = self.first_seq = seq
            self.first_write = ts
        elif self.seqs is not None:
            self.seqs.append(seq)
        elif seq != self.last_seq + 1:
            self.seqs = array("Q", range(self.base, self.last_seq + 1))
            self.seqs.append(seq)
        self.count += 1
        self.last_seq = seq
        self.size += size + MSG_OVERHEAD


class PendingCuts:
    """Truncations and deletions a rollback could not make (the file system
    refused): until they are made the channel takes no new message, or new
    records would land behind records that were answered with an error."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.left: list[tuple[str, int]] = []  # (path, size; -1: remove the file)

    def cut(self, path: str, size: int) -> None:
        """Truncate ``path`` to ``size`` (-1: delete it); remembered when
        the file system refuses."""
        try:
            _cut_now(path, size)
        except OSError as e:
            self.left.append((path, size))
            what = "delete" if size < 0 else f"truncate to {size} bytes"
            _log.error(
                f'Unable to {what} "{path}" after a failed write on channel "{self.channel}": '
                f"{e}. Messages answered with an error are still in it: the channel "
                "refuses new messages until it can be done (a restart before then may "
                "recover them)"
            )

    def retry(self) -> None:
        """Make the remembered cuts; StoreError while one still fails."""
        left: list[tuple[str, int]] = []
        err: OSError | None = None
        for path, size in self.left:
            try:
                _cut_now(path, size)
            except OSError as e:
                left.append((path, size))
                err = err or e
        self.left = left
        if err is not None:
            raise StoreError(
                f'channel "{self.channel}" is unable to undo a failed write on '
                f'"{left[0][0]}": {err}'
            )
        _log.notice(f'Channel "{self.channel}": the failed write has been undone, storing again')


def _cut_now(path: str, size: int) -> None:
    try:
        if size < 0:
            os.remove(path)
        elif os.stat(path).st_size > size:
            os.truncate(path, size)
    except FileNotFoundError:
        pass


class SliceFiles:
    """The slices of one channel, oldest first, with the write buffers of
    the newest: descriptors, writes, fsync and reads by sequence. The
    message log (``msglog.SliceLog``) builds its counters, limits and
    batches on it."""

    def __init__(self, shared: Shared, name: str, directory: str) -> None:
        self._shared = shared
        self.name = name
        self.dir = directory
        o = shared.opts
        self.crc = shared.crc
        self.crc_poly = shared.opts.crc_poly
        self.do_crc = o.do_crc
        self.do_sync = o.do_sync
        self.bufsize = o.buffer_size
        self.rbs = o.read_buffer_size
        self.slices: dict[int, Slice] = {}
        self.order: list[int] = []  # slice numbers, oldest first
        self.lasts: list[int] = []  # their last sequences (bisect)
        self.write: Slice | None = None
        self.last_num = 0
        self.w_off = VERSION_SIZE  # offset of the next record in the write slice
        self.wbuf = bytearray()  # records not yet written...
        self.wbuf_off = VERSION_SIZE  # ...which go at this offset
        self.ibuf = bytearray()  # their index records
        self.sync = SyncState()
        self._sync_later: list[int] = []  # dups of rolled-over slices to fsync

    # -- slice owner (see SliceOwner) ---------------------------------------

    def is_write_slice(self, sl: Slice) -> bool:
        return sl is self.write

    def close_slice(self, sl: Slice) -> None:
        if sl.dat_fd < 0:
            return
        if sl is self.write and (self.wbuf or self.ibuf):
            try:
                self.write_out()
            except OSError as e:
                _log.error(f'Unable to write to "{sl.dat_path}": {e}')
        close_quietly(sl.dat_fd)
        close_quietly(sl.idx_fd)
        sl.dat_fd = sl.idx_fd = -1
        self._shared.pool.closed(sl)

    # -- writing -----------------------------------------------------------

    def write_out(self) -> bool:
        """``pwrite`` the buffers (page cache, no fsync); False when there
        was nothing to write. Raises OSError."""
        sl = self.write
        if sl is None or (not self.wbuf and not self.ibuf):
            return False
        self._open(sl)
        if self.wbuf:
            pwrite_all(sl.dat_fd, self.wbuf, self.wbuf_off)
            self.wbuf_off += len(self.wbuf)
            self.wbuf = bytearray()
            sl.dat_end = self.wbuf_off
        if self.ibuf:
            pwrite_all(sl.idx_fd, self.ibuf, VERSION_SIZE + sl.idx_n * IDX_REC_SIZE)
            sl.idx_n += len(self.ibuf) // IDX_REC_SIZE
            self.ibuf = bytearray()
        self.sync.written += 1
        return True

    async def fsync(self, force: bool) -> None:
        """Make what is written durable (with ``do_sync``, or ``force`` for
        the periodic auto-sync), off the event loop."""
        if (force or self.do_sync) and (self.sync.dirty() or self._sync_later):
            await self.sync.sync(self._sync_fds, self._shared.executor())

    def _dup_fds(self, sl: Slice) -> list[int]:
        if sl.dat_fd >= 0:
            return [os.dup(sl.dat_fd), os.dup(sl.idx_fd)]
        return [os.open(sl.dat_path, os.O_RDONLY), os.open(sl.idx_path, os.O_RDONLY)]

    def _sync_fds(self) -> list[int]:
        fds = self._sync_later
        self._sync_later = []
        w = self.write
        if w is not None:
            try:
                fds.extend(self._dup_fds(w))
            except OSError:
                for fd in fds:
                    close_quietly(fd)
                raise
        return fds

    def _open(self, sl: Slice) -> None:
        if sl.dat_fd >= 0:
            self._shared.pool.touch(sl)
            return
        dat_fd = os.open(sl.dat_path, os.O_RDWR)
        try:
            idx_fd = os.open(sl.idx_path, os.O_RDWR)
        except BaseException:
            os.close(dat_fd)
            raise
        sl.dat_fd, sl.idx_fd = dat_fd, idx_fd
        self._shared.pool.opened(sl, 2)

    def close(self) -> None:
        """Write and fsync what is pending (always, like Go's Close), then
        release every descriptor."""
        try:
            self.write_out()
            if self.sync.dirty() or self._sync_later:
                self.sync.sync_now(self._sync_fds)
        finally:
            self.close_all()

    def close_all(self) -> None:
        for sl in list(self.slices.values()):
            self.close_slice(sl)
        for fd in self._sync_later:
            close_quietly(fd)
        self._sync_later = []

    def discard(self) -> None:
        """Drop everything without writing (the channel is being deleted)."""
        self.wbuf = bytearray()
        self.ibuf = bytearray()
        self.close_all()

    # -- reading -----------------------------------------------------------

    def _slice_for(self, seq: int) -> Slice | None:
        w = self.write
        if w is not None and w.first_seq <= seq <= w.last_seq:
            return w
        i = bisect_left(self.lasts, seq)
        if i < len(self.order):
            sl = self.slices[self.order[i]]
            if sl.first_seq <= seq <= sl.last_seq:
                return sl
        return None

    def locate(self, seq: int) -> tuple[str, int] | None:
        """(data file, record offset) of ``seq``, for error messages."""
        sl = self._slice_for(seq)
        pos = sl.pos(seq) if sl is not None else -1
        if sl is None or pos < 0:
            return None
        idx = self._read_idx(sl, pos, 1)
        if len(idx) < IDX_REC_SIZE:
            return None
        return sl.dat_path, IDX_REC.unpack_from(idx, 0)[1]

    def _read_idx(self, sl: Slice, pos: int, n: int) -> bytes:
        """Index records ``[pos, pos + n)`` of ``sl`` (fewer at its end),
        from the file and, for the write slice, the unwritten buffer."""
        out = b""
        disk = sl.idx_n
        if pos < disk:
            k = min(n, disk - pos)
            self._open(sl)
            out = sl.read_idx(pos, k)
            if len(out) < k * IDX_REC_SIZE:
                return out
        if sl is self.write and self.ibuf and pos + n > disk:
            a = max(pos, disk) - disk
            b = pos + n - disk
            out += bytes(self.ibuf[a * IDX_REC_SIZE : b * IDX_REC_SIZE])
        return out

    def timestamp(self, seq: int) -> int | None:
        """Timestamp of ``seq`` from its index record (None when absent or
        unreadable: logged)."""
        sl = self._slice_for(seq)
        if sl is None:
            return None
        pos = sl.pos(seq)
        if pos < 0:
            return None
        try:
            b = self._read_idx(sl, pos, 1)
        except OSError as e:
            _log.error(f'Error reading index of message {seq} on channel "{self.name}": {e}')
            return None
        if len(b) < IDX_REC_SIZE:
            return None
        s, _, ts, _, _ = IDX_REC.unpack_from(b)
        return ts if s == seq else None

    def read(self, seq: int) -> list[bytes]:
        """The payload of ``seq`` and, as read-ahead, those of the following
        messages of its slice up to ``read_buffer_size`` bytes, in the same
        two reads (empty when ``seq`` is not in the files). StoreError when
        its own record is corrupt; OSError."""
        sl = self._slice_for(seq)
        if sl is None:
            return []
        pos = sl.pos(seq)
        if pos < 0:
            return []
        rbs = self.rbs
        n = 1
        if rbs > 0 and sl.seqs is None:
            # as many index records as messages of average size fit in the
            # read buffer (Go reads rbs/32 records whatever the sizes)
            avg_rec = max(sl.size // max(sl.count, 1) - IDX_REC_SIZE, REC_HEADER_SIZE)
            n = min(sl.last_seq - seq + 1, rbs // avg_rec + 1, max(1, rbs // IDX_REC_SIZE))
        idx = self._read_idx(sl, pos, n)
        nrec = len(idx) // IDX_REC_SIZE
        dat_limit = self.wbuf_off if sl is self.write else sl.dat_end
        crc = self.crc
        do_crc = self.do_crc
        first_off = 0
        total = 0
        sizes: list[int] = []
        for i in range(nrec):
            s, off, _ts, size, c = IDX_REC.unpack_from(idx, i * IDX_REC_SIZE)
            if do_crc and crc(idx[i * IDX_REC_SIZE : i * IDX_REC_SIZE + 28]) != c:
                if i == 0:
                    raise StoreError(
                        f'corrupted index record for sequence {seq} in "{sl.idx_path}"'
                    )
                break
            if s != seq + i:
                if i == 0:
                    return []
                break
            rec = REC_HEADER_SIZE + size
            if i == 0:
                first_off = off
            elif off != first_off + total or total + rec > rbs:
                break
            if off + rec > dat_limit:
                if i == 0:
                    return []
                break
            total += rec
            sizes.append(size)
        if not sizes:
            return []
        self._open(sl)
        buf = os.pread(sl.dat_fd, total, first_off)
        out: list[bytes] = []
        p = 0
        for i, size in enumerate(sizes):
            end = p + REC_HEADER_SIZE + size
            if end > len(buf):
                break
            hsize, c = REC_HDR.unpack_from(buf, p)
            payload = buf[p + REC_HEADER_SIZE : end]
            if hsize != size or (do_crc and crc(payload) != c):
                if i == 0:
                    raise StoreError(
                        f'corrupted record for sequence {seq} in "{sl.dat_path}" '
                        f"at offset {first_off}"
                    )
                break
            out.append(payload)
            p = end
        return out

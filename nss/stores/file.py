"""FILE store: the Go server's on-disk layout (stores.md §3), both directions.

A Go server must be able to take over what nss wrote and vice versa (FT
fail-over, in-place upgrade), so every byte follows the Go layout; the
framing lives in ``filerec``. This module is about state and I/O policy:

* **Nothing per message stays in memory.** Positions and timestamps live in
  the ``.idx`` files and are read on demand (``pread``); a slice is described
  by a handful of counters. Only the write buffer (not yet written records)
  and a small FIFO cache of recent message bytes are kept, so resident memory
  does not grow with the size of the store.
* **Writes are buffered, durability is explicit.** ``store()`` only appends
  to in-memory buffers; ``flush()`` ``pwrite``\\ s them at known offsets on the
  event loop thread (page cache, microseconds) and runs the ``fsync`` in a
  worker thread on duplicated descriptors, so the loop keeps serving while
  the disk works and a descriptor closed meanwhile cannot be reused under
  the fsync. Concurrent flushers share an in-flight fsync (group commit).
* **Recovery reads index files, not message bodies**, a chunk at a time,
  verifying index CRCs with C-level loops, and checks only the last record
  of each slice against the data file, the way Go does. Channels are
  recovered ``parallel_recovery`` at a time in a thread pool.
"""

from __future__ import annotations

import asyncio
import copy
import errno
import fcntl
import math
import os
import random
import shutil
import subprocess
import threading
import time
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from google.protobuf.message import DecodeError

from nss.log import get_logger
from nss.options import ChannelLimits, FileOptions, StoreLimits
from nss.pb import protocol_pb2 as pb
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
from nss.stores.filerec import (
    CLI_REC_ADD,
    CLI_REC_DEL,
    CORRUPT,
    IDX_BODY,
    IDX_REC,
    IDX_REC_SIZE,
    MSG_OVERHEAD,
    PARTIAL,
    REC_HDR,
    REC_HEADER_SIZE,
    SUB_REC_ACK,
    SUB_REC_DEL,
    SUB_REC_MSG,
    SUB_REC_NEW,
    SUB_REC_UPDATE,
    U32,
    VERSION_BYTES,
    VERSION_SIZE,
    ZERO,
    BadRecord,
    RecordReader,
    decode_id_seq,
    encode_id_seq,
    first_data_after,
    idx_crc_mismatch,
    idx_record,
    make_crc,
    open_file,
    parse_slice_name,
    pwrite_all,
    u32_array,
    u64_array,
)
from nss.stores.lock import StoreLock

_log = get_logger()

SERVER_FILE = "server.dat"
CLIENTS_FILE = "clients.dat"
SUBS_FILE = "subs.dat"
LOCK_FILE = ".rootdir.lck"
TRUNCATE_WITNESS = ".truncate.lck"
BAK_SUFFIX = ".bak"

_ZERO_IDX = bytes(IDX_REC_SIZE)
_IDX_CHUNK = 65536 * IDX_REC_SIZE  # 2 MB of index records per read in recovery
_HEAD_RECS = 256  # index records read at once for the oldest messages
_MIN_CACHE = 1024 * 1024
# All channels' caches together: read-ahead on many channels at once must not
# make memory grow with the number of channels (Go bounds it by a 1 s TTL only).
_CACHE_BUDGET = 64 * 1024 * 1024
_SLICE_IDLE_TICKS = 2  # background ticks (~1 s each) before an idle slice is closed


def validate_file_options(o: FileOptions) -> None:
    """Reject bad file options with the Go texts (config.md §2.4), in the
    order Go's ``AllOptions`` checks them."""
    if o.buffer_size < 0:
        raise StoreError("buffer size value must be a positive number")
    if o.compact_interval <= 0:
        raise StoreError("compact interval value must at least be 1 seconds")
    if o.compact_frag <= 0:
        raise StoreError("compact fragmentation value must at least be 1")
    if o.compact_min_size < 0:
        raise StoreError("compact minimum file size value must be a positive number")
    if o.crc_poly <= 0 or o.crc_poly > 0xFFFFFFFF:
        raise StoreError("crc polynomial should be between 1 and 4294967295")
    if o.slice_max_msgs < 0 or o.slice_max_bytes < 0 or o.slice_max_age < 0:
        raise StoreError("slice max values must be positive numbers")
    if o.fds_limit < 0:
        raise StoreError("file descriptor limit must be a positive number")
    if o.parallel_recovery <= 0:
        raise StoreError("parallel recovery value must be at least 1")
    if o.read_buffer_size < 0:
        raise StoreError("read buffer size value must be a positive number")


def _raise_nofile_limit() -> None:
    """Raise the soft open-files limit to the hard one, as the Go runtime
    does for every Go program since 1.19: a store with many active channels
    keeps three descriptors per channel open."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, OSError, ValueError):  # pragma: no cover - best effort
        pass


def _fsync_close(fds: list[int]) -> None:
    """Worker-thread side of a flush: the descriptors are duplicates owned
    by this call, so they are closed whatever happens."""
    try:
        for fd in fds:
            os.fsync(fd)
    finally:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass


def _close_quietly(fd: int) -> None:
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


def _temp_file(root: str, prefix: str) -> tuple[int, str]:
    """A new file in the root named ``prefix`` + random digits (what Go's
    ``os.CreateTemp`` produces), holding the file version."""
    for _ in range(100):
        path = os.path.join(root, f"{prefix}{random.randrange(10**9, 10**10)}")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        pwrite_all(fd, VERSION_BYTES, 0)
        return fd, path
    raise StoreError("unable to create a temporary file")  # pragma: no cover


def _open_store_file(path: str) -> int:
    """``open_file`` of an existing (or new) store file; one that was never
    completed is recovered as empty, with a warning naming it."""
    return open_file(path, on_short=_warn_short)


def _warn_short(path: str, size: int) -> None:
    _log.warning(
        f'File "{path}" is shorter than its version header ({size} bytes): it was '
        "created but never completed (disk full or crash), recovering it as empty"
    )


def append_records(fd: int, data: bytes | bytearray, offset: int, path: str) -> None:
    """Write records at the end of a log (``offset``). A write that fails
    half way (disk full) is cut back off at once: the caller keeps the
    records and writes them again, but a crash before that would leave the
    start of a record at the end, which recovery refuses (unexpected EOF)
    without ``file_truncate_bad_eof``."""
    try:
        pwrite_all(fd, data, offset)
    except OSError:
        try:
            if os.fstat(fd).st_size > offset:
                os.ftruncate(fd, offset)
        except OSError as e:
            _log.error(f'Unable to cut "{path}" back to {offset} bytes after a failed write: {e}')
        raise


def warn_zero_padding(path: str, fd: int, offset: int) -> None:
    """Zeros where a record header was expected end the log. Behind a plain
    pre-allocated tail there is nothing; data behind the zeros means records
    were lost in the middle (a write that never reached the disk) and the
    ones after them are dropped with the tail, which the operator must
    hear about: for subs.dat those are acks, whose messages come back as
    redeliveries."""
    at = first_data_after(fd, offset)
    if at >= 0:
        size = os.fstat(fd).st_size
        _log.warning(
            f'File "{path}" has zero padding at offset {offset} with data behind it '
            f"(from offset {at}, {size - at} bytes up to the end): the records after "
            f"the padding cannot be located and are dropped, the file is truncated "
            f"at offset {offset}"
        )


def _dump(data: bytes) -> None:
    """Hex dump of a damaged record in the log, 20 bytes a line like Go."""
    for i in range(0, min(len(data), 400), 20):
        part = data[i : i + 20]
        txt = "".join(chr(c) if 32 <= c <= 128 else "." for c in part)
        _log.error(f"{part.hex(' '):<59} - {txt}")


# ---------------------------------------------------------------------------
# Descriptor management


class _Holder(Protocol):
    last_used: int

    def close_fds(self) -> None: ...

    def idle_closable(self, limited: bool) -> bool: ...


class _FdPool:
    """Open descriptors of the store, for ``file_descriptors_limit``.

    Holders (message slices, subscription files) register when they open
    their files. Non-current slices are closed after ~1 s unused (as Go
    does); with a limit, the least recently used holders are closed when
    the count goes over it (best effort: a holder reopens lazily). During
    recovery trimming is held off because recovery threads own their
    files."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.tick = 0
        self.hold = 0
        self._open: OrderedDict[int, tuple[_Holder, int]] = OrderedDict()
        self._lock = threading.Lock()

    def opened(self, h: _Holder, n: int) -> None:
        with self._lock:
            self._open[id(h)] = (h, n)
            self.count += n
        h.last_used = self.tick
        if self.limit > 0 and not self.hold:
            self.trim(h)

    def closed(self, h: _Holder) -> None:
        with self._lock:
            e = self._open.pop(id(h), None)
            if e is not None:
                self.count -= e[1]

    def touch(self, h: _Holder) -> None:
        h.last_used = self.tick
        if self.limit > 0:
            try:
                self._open.move_to_end(id(h))
            except KeyError:
                pass

    def trim(self, keep: _Holder | None = None) -> None:
        if self.limit <= 0:
            return
        while self.count > self.limit:
            victim = None
            for h, _ in self._open.values():
                if h is not keep:
                    victim = h
                    break
            if victim is None:
                return
            victim.close_fds()

    def sweep(self) -> None:
        if self.hold:
            return  # recovery threads own their files
        self.tick += 1
        limited = self.limit > 0
        for h, _ in list(self._open.values()):
            if self.tick - h.last_used >= _SLICE_IDLE_TICKS and h.idle_closable(limited):
                h.close_fds()


class _SyncState:
    """Group commit for one file (or one slice pair).

    ``written`` counts write-outs, ``synced`` the write-outs known durable.
    A flusher waits for an fsync already in flight before starting its own,
    so PubAcks are never sent for data that is written but not yet synced,
    and concurrent flushers of the same data share one fsync."""

    __slots__ = ("written", "synced", "_inflight")

    def __init__(self) -> None:
        self.written = 0
        self.synced = 0
        self._inflight: asyncio.Future[Any] | None = None

    def dirty(self) -> bool:
        return self.synced < self.written

    async def sync(self, get_fds: Callable[[], list[int]], executor: ThreadPoolExecutor) -> None:
        target = self.written
        while self.synced < target:
            fut = self._inflight
            if fut is not None:
                await asyncio.shield(fut)
                continue
            gen = self.written
            fds = get_fds()
            loop = asyncio.get_running_loop()
            if len(fds) > 1:
                # A message slice: the .dat is synced right here while its
                # .idx syncs on a thread. Measured faster both for a lone
                # synchronous publisher and under load than handing both to
                # threads: a thread hand-off costs more than the loop loses
                # by waiting one disk round trip it would wait for anyway.
                rest = loop.run_in_executor(executor, _fsync_close, fds[1:])
                try:
                    _fsync_close(fds[:1])
                finally:
                    fut = asyncio.ensure_future(rest)
            else:
                fut = asyncio.gather(
                    *(loop.run_in_executor(executor, _fsync_close, [fd]) for fd in fds)
                )
            self._inflight = fut
            try:
                await asyncio.shield(fut)
            finally:
                if self._inflight is fut:
                    self._inflight = None
            if gen > self.synced:
                self.synced = gen

    def sync_now(self, get_fds: Callable[[], list[int]]) -> None:
        gen = self.written
        _fsync_close(get_fds())
        if gen > self.synced:
            self.synced = gen


# ---------------------------------------------------------------------------
# Message store


class _IndexProblem(Exception):
    """Anything wrong with an index file: it is rebuilt from the data file."""


class _Slice:
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

    def __init__(self, owner: FileMsgStore, num: int) -> None:
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

    def close_fds(self) -> None:
        self.owner._close_slice(self)

    def idle_closable(self, limited: bool) -> bool:
        return limited or self is not self.owner._write

    def pos(self, seq: int) -> int:
        """Index position of ``seq``; -1 if the slice does not hold it."""
        seqs = self.seqs
        if seqs is None:
            return seq - self.base
        i = bisect_left(seqs, seq)
        return i if i < len(seqs) and seqs[i] == seq else -1

    def snapshot(self) -> tuple[int, int, int, int, int, int, int, int]:
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

    def restore(self, snap: tuple[int, int, int, int, int, int, int, int]) -> None:
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


class _MsgMark:
    """Where ``FileMsgStore.rollback`` returns to (see ``MsgStore.mark``).

    Appends only grow the write slice, so its files are cut back to the
    offsets of the mark; slices the batch started are deleted; slices the
    limits removed are only detached (their files stay until ``release``)
    so that they can be put back."""

    __slots__ = (
        "first",
        "last",
        "count",
        "bytes",
        "hit_limit",
        "write",
        "last_num",
        "w_off",
        "w_count",
        "slices",
        "rolled",
        "detached",
    )

    def __init__(self, ms: FileMsgStore) -> None:
        self.first = ms._first
        self.last = ms._last
        self.count = ms._count
        self.bytes = ms._bytes
        self.hit_limit = ms.hit_limit
        self.write = ms._write
        self.last_num = ms._last_num
        self.w_off = ms._w_off
        self.w_count = 0
        # counters of the slices the batch changed, as they were
        self.slices: dict[_Slice, tuple[int, int, int, int, int, int, int, int]] = {}
        self.rolled: list[_Slice] = []
        self.detached: list[_Slice] = []
        if self.write is not None:
            self.slices[self.write] = self.write.snapshot()
            self.w_count = self.write.count


class FileMsgStore(MsgStore):
    """Messages of one channel in ``msgs.N.dat``/``.idx`` slices."""

    def __init__(self, fs: FileStore, name: str, directory: str, limits: ChannelLimits) -> None:
        super().__init__(name, limits)
        self._fs = fs
        self.dir = directory
        o = fs.opts
        self._crc = fs.crc
        self._do_crc = o.do_crc
        self._do_sync = o.do_sync
        self._bufsize = o.buffer_size
        self._rbs = o.read_buffer_size
        self._max_age_ns = int(limits.max_age * 1e9) if limits.max_age > 0 else 0
        self._set_slice_limits(o)
        self._slices: dict[int, _Slice] = {}
        self._order: list[int] = []  # slice numbers, oldest first
        self._lasts: list[int] = []  # their last sequences (bisect)
        self._write: _Slice | None = None
        self._last_num = 0
        self._first = 0
        self._last = 0
        self._count = 0
        self._bytes = 0
        self._w_off = VERSION_SIZE  # offset of the next record in the write slice
        self._wbuf = bytearray()  # records not yet written...
        self._wbuf_off = VERSION_SIZE  # ...which go at this offset
        self._ibuf = bytearray()  # their index records
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._cache_bytes = 0
        self._cache_max = max(2 * self._rbs, _MIN_CACHE)
        self._flushed_seq = 0  # cached sequences above this are not written yet
        self._head_sl: _Slice | None = None
        self._head_buf = b""
        self._head_pos = 0
        self._sync = _SyncState()
        self._sync_later: list[int] = []  # dups of rolled-over slices to fsync
        self._active = False
        self._closed = False
        self._cur_file = ""
        self._mark: _MsgMark | None = None
        # cuts a rollback could not make (path, size; -1: remove the file):
        # no store() until they are made, or new records would land before
        # records that were answered with an error
        self._undo: list[tuple[str, int]] = []

    def _set_slice_limits(self, o: FileOptions) -> None:
        """Slice limits from the options or, when none is set, a quarter of
        the channel limits (Go's ``setSliceLimits``)."""
        self._sl_msgs = o.slice_max_msgs
        self._sl_bytes = o.slice_max_bytes
        self._sl_age = int(o.slice_max_age * 1e9)
        if self._sl_msgs > 0 or self._sl_bytes > 0 or self._sl_age > 0:
            return
        lim = self.limits
        if lim.max_msgs > 0:
            self._sl_msgs = max(lim.max_msgs // 4, 1)
        if lim.max_bytes > 0:
            self._sl_bytes = max(lim.max_bytes // 4, 1)
        if lim.max_age > 0:
            self._sl_age = max(int(lim.max_age * 1e9) // 4, 1_000_000_000)

    # -- interface ---------------------------------------------------------

    def store(self, seq: int, timestamp: int, data: bytes) -> None:
        if seq <= self._last:
            return
        if self._undo:
            self._redo_undo()
        try:
            sl = self._write
            if sl is None:
                sl = self._roll()
            if self._last and seq > self._last + 1:
                self._fill_gaps(sl, seq, timestamp)
            if sl.count and (
                (self._sl_msgs > 0 and sl.count >= self._sl_msgs)
                or (self._sl_bytes > 0 and sl.size >= self._sl_bytes)
                or (self._sl_age > 0 and timestamp - sl.first_write >= self._sl_age)
            ):
                sl = self._roll()
            self._append(sl, seq, timestamp, data)
        except OSError as e:
            raise StoreError(str(e)) from e
        self._cache[seq] = data
        self._cache_bytes += len(data)
        self._fs.cache_total += len(data)
        self._active = True
        self.apply_limits()
        if self._bufsize == 0 or len(self._wbuf) >= self._bufsize:
            try:
                self._write_out()
            except OSError as e:
                raise StoreError(str(e)) from e

    def lookup(self, seq: int) -> bytes | None:
        if seq < self._first or seq > self._last:
            return None
        self._active = True
        d = self._cache.get(seq)
        if d is not None:
            return d
        try:
            return self._load(seq)
        except (OSError, StoreError) as e:
            _log.error(f'Error looking up message {seq} on channel "{self.name}": {e}')
            return None

    def first_sequence(self) -> int:
        return self._first

    def last_sequence(self) -> int:
        return self._last

    def timestamp_of(self, seq: int) -> int | None:
        if seq < self._first or seq > self._last:
            return None
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

    def state(self) -> tuple[int, int]:
        return self._count, self._bytes

    # -- batches (see MsgStore.mark) ----------------------------------------

    def mark(self) -> None:
        if self._mark is not None:
            self.release()
        self._mark = _MsgMark(self)

    def release(self) -> None:
        m = self._mark
        if m is None:
            return
        self._mark = None
        for sl in m.detached:
            self._dispose_slice(sl)

    def rollback(self) -> None:
        m = self._mark
        if m is None:
            return
        self._mark = None
        last = self._last
        if m.rolled:
            # the buffers belong to the newest rolled slice: never written
            self._wbuf = bytearray()
            self._ibuf = bytearray()
            for sl in reversed(m.rolled):
                self._forget_rolled(sl)
        for sl in reversed(m.detached):
            if sl not in m.rolled:  # else: deleted with the other rolled ones
                self._order.insert(0, sl.num)
                self._slices[sl.num] = sl
        for sl, snap in m.slices.items():
            sl.restore(snap)
        self._lasts = [self._slices[n].last_seq for n in self._order]
        self._write = m.write
        self._last_num = m.last_num
        if m.write is None:
            self._w_off = self._wbuf_off = VERSION_SIZE
        else:
            self._cut_back(m.write, m)
        self._first, self._last, self._count, self._bytes = m.first, m.last, m.count, m.bytes
        self.hit_limit = m.hit_limit
        self._flushed_seq = min(self._flushed_seq, m.last)
        self._head_sl = None
        self._head_buf = b""
        cache = self._cache
        for s in range(m.last + 1, last + 1):
            d = cache.pop(s, None)
            if d is not None:
                self._cache_bytes -= len(d)
                self._fs.cache_total -= len(d)

    def _forget_rolled(self, sl: _Slice) -> None:
        """A slice the failed batch started: closed, out of the lists, its
        files deleted."""
        self._close_slice(sl)
        self._slices.pop(sl.num, None)
        if self._order and self._order[-1] == sl.num:
            self._order.pop()
        for p in (sl.dat_path, sl.idx_path):
            self._cut(p, -1)

    def _cut_back(self, w: _Slice, m: _MsgMark) -> None:
        """Cut the mark's write slice back to its size at the mark.

        What the slice held at the mark may still be partly buffered; that
        part stays buffered. Anything on disk past the mark (records of the
        batch, or the start of a record a failed write left) is cut off."""
        if m.rolled:
            disk_dat, disk_idx = w.dat_end, w.idx_n  # fully written by _roll
        else:
            disk_dat, disk_idx = self._wbuf_off, w.idx_n
            # new buffers: a failed write's memoryview may still hold the old
            self._wbuf = self._wbuf[: max(0, m.w_off - disk_dat)]
            self._ibuf = self._ibuf[: max(0, m.w_count - disk_idx) * IDX_REC_SIZE]
        dat_end = min(disk_dat, m.w_off)
        idx_n = min(disk_idx, m.w_count)
        self._cut(w.dat_path, dat_end)
        self._cut(w.idx_path, VERSION_SIZE + idx_n * IDX_REC_SIZE)
        w.dat_end = dat_end
        w.idx_n = idx_n
        self._wbuf_off = dat_end
        self._w_off = m.w_off

    def _cut(self, path: str, size: int) -> None:
        """Truncate ``path`` to ``size`` (-1: delete it); remembered in
        ``_undo`` when the file system refuses."""
        try:
            self._cut_now(path, size)
        except OSError as e:
            self._undo.append((path, size))
            what = "delete" if size < 0 else f"truncate to {size} bytes"
            _log.error(
                f'Unable to {what} "{path}" after a failed write on channel "{self.name}": '
                f"{e}. Messages answered with an error are still in it: the channel "
                "refuses new messages until it can be done (a restart before then may "
                "recover them)"
            )

    @staticmethod
    def _cut_now(path: str, size: int) -> None:
        try:
            if size < 0:
                os.remove(path)
            elif os.stat(path).st_size > size:
                os.truncate(path, size)
        except FileNotFoundError:
            pass

    def _redo_undo(self) -> None:
        """Retry the cuts a rollback could not make; StoreError while one
        still fails."""
        left: list[tuple[str, int]] = []
        err: OSError | None = None
        for path, size in self._undo:
            try:
                self._cut_now(path, size)
            except OSError as e:
                left.append((path, size))
                err = err or e
        self._undo = left
        if err is not None:
            raise StoreError(
                f'channel "{self.name}" is unable to undo a failed write on "{left[0][0]}": {err}'
            )
        _log.notice(f'Channel "{self.name}": the failed write has been undone, storing again')

    async def flush(self) -> None:
        if self._closed:
            return
        try:
            self._write_out()
            if self._do_sync and (self._sync.dirty() or self._sync_later):
                await self._sync.sync(self._sync_fds, self._fs.executor())
        except OSError as e:
            raise StoreError(str(e)) from e

    def expire(self, now_ns: int) -> float | None:
        max_age = self._max_age_ns
        if max_age <= 0:
            return None
        while self._count > 0:
            try:
                h = self._head()
            except (OSError, StoreError) as e:
                _log.error(f"Error during expiration: {e}")
                return 5.0
            if h is None:
                return None
            ts, size = h
            if now_ns - ts >= max_age:
                self._remove_first(size)
            else:
                return (ts + max_age - now_ns) / 1e9
        return None

    def empty(self) -> None:
        """Remove every message; like the MEMORY store the sequence carries
        on from ``last`` in this process."""
        for sl in list(self._slices.values()):
            if sl is self._write:
                self._wbuf = bytearray()
                self._ibuf = bytearray()
            self._close_slice(sl)
        for fd in self._sync_later:
            _close_quietly(fd)
        self._sync_later = []
        try:
            names = os.listdir(self.dir)
        except OSError:
            names = []
        for n in names:
            if n.startswith("msgs.") and "." in n[5:]:
                try:
                    os.remove(os.path.join(self.dir, n))
                except OSError:
                    pass
        self._slices.clear()
        self._order.clear()
        self._lasts.clear()
        self._write = None
        self._last_num = 0
        self._w_off = self._wbuf_off = VERSION_SIZE
        self._cache_drop(0, everything=True)
        self._head_sl = None
        self._head_buf = b""
        self._count = self._bytes = 0
        self._first = self._last + 1 if self._last else 0
        self._flushed_seq = self._last
        self.hit_limit = False
        self._sync.synced = self._sync.written

    def close(self) -> None:
        """Write and fsync what is pending (always, like Go's Close), then
        release every descriptor."""
        if self._closed:
            return
        self._closed = True
        try:
            self._write_out()
            if self._sync.dirty() or self._sync_later:
                self._sync.sync_now(self._sync_fds)
        finally:
            self._close_all()

    # -- write path --------------------------------------------------------

    def _append(self, sl: _Slice, seq: int, ts: int, data: bytes) -> None:
        n = len(data)
        off = self._w_off
        crc = self._crc
        wbuf = self._wbuf
        wbuf += REC_HDR.pack(n, crc(data))
        wbuf += data
        body = IDX_BODY.pack(seq, off, ts, n)
        ibuf = self._ibuf
        ibuf += body
        ibuf += U32.pack(crc(body))
        self._w_off = off + REC_HEADER_SIZE + n
        if sl.count == 0:
            sl.base = sl.first_seq = seq
            sl.first_write = ts
        elif sl.seqs is not None:
            sl.seqs.append(seq)
        sl.count += 1
        sl.last_seq = seq
        sl.size += n + MSG_OVERHEAD
        self._lasts[-1] = seq
        if not self._first:
            self._first = seq
        self._last = seq
        self._count += 1
        self._bytes += n + MSG_OVERHEAD

    def _fill_gaps(self, sl: _Slice, seq: int, ts: int) -> None:
        """Placeholder messages for missing sequences: the log has no gaps."""
        for s in range(self._last + 1, seq):
            data = pb.MsgProto(sequence=s, subject=self.name, timestamp=ts).SerializeToString()
            self._append(sl, s, ts, data)

    def _write_out(self) -> None:
        sl = self._write
        if sl is None or (not self._wbuf and not self._ibuf):
            return
        self._open(sl)
        if self._wbuf:
            pwrite_all(sl.dat_fd, self._wbuf, self._wbuf_off)
            self._wbuf_off += len(self._wbuf)
            self._wbuf = bytearray()
            sl.dat_end = self._wbuf_off
        if self._ibuf:
            pwrite_all(sl.idx_fd, self._ibuf, VERSION_SIZE + sl.idx_n * IDX_REC_SIZE)
            sl.idx_n += len(self._ibuf) // IDX_REC_SIZE
            self._ibuf = bytearray()
        self._flushed_seq = self._last
        self._sync.written += 1
        if self._cache_bytes > self._cache_max:
            self._cache_drop(self._cache_max)
        self._fs.cache_touch(self)

    def _roll(self) -> _Slice:
        """Start the next slice (the current one is full, or none exists)."""
        old = self._write
        if old is not None:
            self._write_out()
            if self._do_sync and self._sync.dirty():
                self._sync_later.extend(self._dup_fds(old))
        num = self._last_num + 1
        sl = _Slice(self, num)
        try:
            dat_fd = open_file(sl.dat_path, truncate=True)
            try:
                idx_fd = open_file(sl.idx_path, truncate=True)
            except BaseException:
                os.close(dat_fd)
                raise
        except OSError:
            # a disk full now must not leave a file without its version
            for p in (sl.dat_path, sl.idx_path):
                try:
                    os.remove(p)
                except OSError:
                    pass
            raise
        sl.dat_fd, sl.idx_fd = dat_fd, idx_fd
        if self._mark is not None:
            self._mark.rolled.append(sl)
        sl.first_seq = self._last + 1
        sl.last_seq = self._last
        self._slices[num] = sl
        self._order.append(num)
        self._lasts.append(self._last)
        self._last_num = num
        self._write = sl
        self._w_off = self._wbuf_off = VERSION_SIZE
        self._fs.pool.opened(sl, 2)
        if old is not None and len(self._order) == 2 and old.count == old.rm_count:
            self._remove_first_slice()
        return sl

    def _dup_fds(self, sl: _Slice) -> list[int]:
        if sl.dat_fd >= 0:
            return [os.dup(sl.dat_fd), os.dup(sl.idx_fd)]
        return [os.open(sl.dat_path, os.O_RDONLY), os.open(sl.idx_path, os.O_RDONLY)]

    def _sync_fds(self) -> list[int]:
        fds = self._sync_later
        self._sync_later = []
        w = self._write
        if w is not None:
            try:
                fds.extend(self._dup_fds(w))
            except OSError:
                for fd in fds:
                    _close_quietly(fd)
                raise
        return fds

    async def _auto_sync(self) -> None:
        """Background flush + fsync regardless of ``do_sync``."""
        if self._closed:
            return
        self._write_out()
        if self._sync.dirty() or self._sync_later:
            await self._sync.sync(self._sync_fds, self._fs.executor())

    # -- descriptors -------------------------------------------------------

    def _open(self, sl: _Slice) -> None:
        if sl.dat_fd >= 0:
            self._fs.pool.touch(sl)
            return
        dat_fd = os.open(sl.dat_path, os.O_RDWR)
        try:
            idx_fd = os.open(sl.idx_path, os.O_RDWR)
        except BaseException:
            os.close(dat_fd)
            raise
        sl.dat_fd, sl.idx_fd = dat_fd, idx_fd
        self._fs.pool.opened(sl, 2)

    def _close_slice(self, sl: _Slice) -> None:
        if sl.dat_fd < 0:
            return
        if sl is self._write and (self._wbuf or self._ibuf):
            try:
                self._write_out()
            except OSError as e:
                _log.error(f'Unable to write to "{sl.dat_path}": {e}')
        _close_quietly(sl.dat_fd)
        _close_quietly(sl.idx_fd)
        sl.dat_fd = sl.idx_fd = -1
        self._fs.pool.closed(sl)

    def _close_all(self) -> None:
        for sl in list(self._slices.values()):
            self._close_slice(sl)
        for fd in self._sync_later:
            _close_quietly(fd)
        self._sync_later = []

    def _discard(self) -> None:
        """Drop everything without writing (the channel is being deleted)."""
        self._closed = True
        self._wbuf = bytearray()
        self._ibuf = bytearray()
        self._close_all()
        self._cache_drop(0, everything=True)

    # -- reading -----------------------------------------------------------

    def _slice_for(self, seq: int) -> _Slice | None:
        w = self._write
        if w is not None and w.first_seq <= seq <= w.last_seq:
            return w
        i = bisect_left(self._lasts, seq)
        if i < len(self._order):
            sl = self._slices[self._order[i]]
            if sl.first_seq <= seq <= sl.last_seq:
                return sl
        return None

    def _read_idx(self, sl: _Slice, pos: int, n: int) -> bytes:
        """Index records ``[pos, pos + n)`` of ``sl`` (fewer at its end),
        from the file and, for the write slice, the unwritten buffer."""
        out = b""
        disk = sl.idx_n
        if pos < disk:
            k = min(n, disk - pos)
            self._open(sl)
            out = os.pread(sl.idx_fd, k * IDX_REC_SIZE, VERSION_SIZE + pos * IDX_REC_SIZE)
            if len(out) < k * IDX_REC_SIZE:
                return out[: len(out) // IDX_REC_SIZE * IDX_REC_SIZE]
        if sl is self._write and self._ibuf and pos + n > disk:
            a = max(pos, disk) - disk
            b = pos + n - disk
            out += bytes(self._ibuf[a * IDX_REC_SIZE : b * IDX_REC_SIZE])
        return out

    def _load(self, seq: int) -> bytes | None:
        """Read ``seq`` from its slice, with read-ahead: the following
        messages of the slice, up to ``read_buffer_size`` bytes, come in the
        same two reads and go to the cache for the next lookups."""
        sl = self._slice_for(seq)
        if sl is None:
            return None
        pos = sl.pos(seq)
        if pos < 0:
            return None
        rbs = self._rbs
        n = 1
        if rbs > 0 and sl.seqs is None:
            # as many index records as messages of average size fit in the
            # read buffer (Go reads rbs/32 records whatever the sizes)
            avg_rec = max(sl.size // max(sl.count, 1) - IDX_REC_SIZE, REC_HEADER_SIZE)
            n = min(sl.last_seq - seq + 1, rbs // avg_rec + 1, max(1, rbs // IDX_REC_SIZE))
        idx = self._read_idx(sl, pos, n)
        nrec = len(idx) // IDX_REC_SIZE
        dat_limit = self._wbuf_off if sl is self._write else sl.dat_end
        crc = self._crc
        do_crc = self._do_crc
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
                    return None
                break
            rec = REC_HEADER_SIZE + size
            if i == 0:
                first_off = off
            elif off != first_off + total or total + rec > rbs:
                break
            if off + rec > dat_limit:
                if i == 0:
                    return None
                break
            total += rec
            sizes.append(size)
        if not sizes:
            return None
        self._open(sl)
        buf = os.pread(sl.dat_fd, total, first_off)
        cache = self._cache
        result = None
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
            s = seq + i
            if s not in cache:
                cache[s] = payload
                self._cache_bytes += size
                self._fs.cache_total += size
            if i == 0:
                result = payload
            p = end
        if self._cache_bytes > self._cache_max:
            self._cache_drop(self._cache_max)
        self._fs.cache_touch(self)
        return result

    def _cache_drop(self, limit: int, everything: bool = False) -> None:
        """Evict the oldest cached messages until at most ``limit`` bytes
        remain; messages not written yet stay (they are the only copy)
        unless ``everything``."""
        cache = self._cache
        if everything:
            self._fs.cache_total -= self._cache_bytes
            cache.clear()
            self._cache_bytes = 0
            return
        fl = self._flushed_seq
        freed = 0
        while self._cache_bytes - freed > limit and cache:
            k = next(iter(cache))
            if k > fl:
                break
            freed += len(cache.popitem(last=False)[1])
        self._cache_bytes -= freed
        self._fs.cache_total -= freed

    def _sweep_cache(self) -> None:
        """Background tick: forget cached messages of an idle channel (Go
        keeps read/written messages ~1 s after their last use)."""
        if not self._active and self._cache:
            self._cache_drop(0)
        self._active = False

    # -- removal -----------------------------------------------------------

    def _head(self) -> tuple[int, int] | None:
        """(timestamp, size) of the first message, read through a small
        window of index records so removing many messages in a row costs one
        read per window."""
        while self._count > 0:
            sl = self._slices[self._order[0]]
            if self._first < sl.first_seq:
                self._first = sl.first_seq
            if self._first > sl.last_seq:
                if len(self._order) > 1:
                    self._remove_first_slice()
                    continue
                return None
            pos = sl.pos(self._first)
            if pos < 0:  # missing sequence inside an old gapped slice
                self._first += 1
                self._touch(sl)
                sl.first_seq = self._first
                continue
            rel = pos - self._head_pos
            hb = self._head_buf
            if self._head_sl is not sl or rel < 0 or (rel + 1) * IDX_REC_SIZE > len(hb):
                hb = self._read_idx(sl, pos, _HEAD_RECS)
                self._head_sl, self._head_buf, self._head_pos = sl, hb, pos
                rel = 0
                if not hb:
                    raise StoreError(
                        f'missing index record for sequence {self._first} in "{sl.idx_path}"'
                    )
            o = rel * IDX_REC_SIZE
            s, _, ts, size, c = IDX_REC.unpack_from(hb, o)
            if s != self._first or (self._do_crc and self._crc(hb[o : o + 28]) != c):
                raise StoreError(
                    f'invalid index record for sequence {self._first} in "{sl.idx_path}"'
                )
            return ts, size
        return None

    def _touch(self, sl: _Slice) -> None:
        """``sl``'s counters are about to change outside an append: keep
        them for a rollback."""
        m = self._mark
        if m is not None and sl not in m.slices:
            m.slices[sl] = sl.snapshot()

    def _remove_first(self, size: int) -> None:
        sl = self._slices[self._order[0]]
        self._touch(sl)
        first = self._first
        self._count -= 1
        self._bytes -= size + MSG_OVERHEAD
        d = self._cache.pop(first, None)
        if d is not None:
            self._cache_bytes -= len(d)
            self._fs.cache_total -= len(d)
        self._first = first + 1
        sl.rm_count += 1
        if sl.rm_count >= sl.count and len(self._order) > 1:
            self._remove_first_slice()
        else:
            sl.first_seq = self._first

    def _remove_first_slice(self) -> None:
        """Delete (or hand to the archive script) the oldest slice; never
        called for the last one, which keeps the sequence across restarts."""
        num = self._order.pop(0)
        self._lasts.pop(0)
        sl = self._slices.pop(num)
        self._close_slice(sl)
        if self._head_sl is sl:
            self._head_sl = None
            self._head_buf = b""
        nxt = self._slices[self._order[0]]
        if self._first < nxt.first_seq:
            self._first = nxt.first_seq
        if self._mark is not None:
            self._mark.detached.append(sl)  # deleted at release()
        else:
            self._dispose_slice(sl)

    def _dispose_slice(self, sl: _Slice) -> None:
        script = self._fs.opts.slice_archive_script
        removed = False
        if script:
            dat_bak, idx_bak = sl.dat_path + BAK_SUFFIX, sl.idx_path + BAK_SUFFIX
            try:
                os.rename(sl.dat_path, dat_bak)
                try:
                    os.rename(sl.idx_path, idx_bak)
                except OSError:
                    os.remove(dat_bak)
                    raise
            except OSError as e:
                _log.error(f"Unable to rename slice files for archiving: {e}")
            else:
                removed = True
                self._fs.run_archive_script(self.name, dat_bak, idx_bak)
        if not removed:
            for p in (sl.dat_path, sl.idx_path):
                try:
                    os.remove(p)
                except OSError:
                    pass

    def _drop_oldest(self) -> bool:
        try:
            h = self._head()
        except (OSError, StoreError) as e:
            _log.error(f"Unable to remove first message: {e}")
            return False
        if h is None:
            return False
        self._remove_first(h[1])
        return True

    # -- recovery ----------------------------------------------------------

    def recover(self) -> None:
        """Rebuild the state from the slices on disk (stores.md §3.8), then
        re-apply count/bytes limits and expire by age."""
        found: list[int] = []
        with os.scandir(self.dir) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    continue
                num = parse_slice_name(e.name)
                if num is not None:
                    found.append(num)
        found.sort()
        pool = self._fs.pool
        for num in found:
            sl = self._recover_slice(num)
            if sl is None:
                continue
            self._slices[num] = sl
            self._order.append(num)
            self._lasts.append(sl.last_seq)
            self._count += sl.count
            self._bytes += sl.size
            if self._first == 0 or sl.first_seq < self._first:
                self._first = sl.first_seq
            if sl.last_seq > self._last:
                self._last = sl.last_seq
        if self._order:
            self._write = w = self._slices[self._order[-1]]
            self._last_num = self._order[-1]
            self._w_off = self._wbuf_off = w.dat_end
        self._flushed_seq = self._last
        pool.hold += 1
        try:
            self.apply_limits(report=False)
            if self._max_age_ns > 0 and self._count > 0:
                self.expire(time.time_ns())
        finally:
            pool.hold -= 1
            self._close_all()

    def _recover_slice(self, num: int) -> _Slice | None:
        sl = _Slice(self, num)
        self._cur_file = os.path.join(self.name, os.path.basename(sl.dat_path))
        idx_exists = os.path.exists(sl.idx_path)
        dat_fd = _open_store_file(sl.dat_path)
        try:
            self._cur_file = os.path.join(self.name, os.path.basename(sl.idx_path))
            try:
                idx_fd = _open_store_file(sl.idx_path)
            except StoreError as e:
                # The index is derived data: a bad header (e.g. a crash right
                # after creating it) only means it has to be rebuilt.
                _log.error(f'Error with index file "{sl.idx_path}": {e}. Recreating it')
                idx_fd = open_file(sl.idx_path, truncate=True)
                idx_exists = False
        except BaseException:
            os.close(dat_fd)
            raise
        try:
            ok = False
            if idx_exists:
                try:
                    ok = self._recover_from_idx(sl, dat_fd, idx_fd)
                except _IndexProblem as e:
                    _log.error(
                        f'Error with index file "{sl.idx_path}": {e}. '
                        "Truncating and recovering from data file"
                    )
                    os.ftruncate(idx_fd, VERSION_SIZE)
                    sl = _Slice(self, num)
            if not ok:
                self._cur_file = os.path.join(self.name, os.path.basename(sl.dat_path))
                try:
                    self._rebuild_idx(sl, dat_fd, idx_fd)
                except BaseException:
                    # Like Go: no half-built index, the next start rebuilds again.
                    try:
                        os.remove(sl.idx_path)
                    except OSError:
                        pass
                    raise
            sl.idx_n = sl.count
            sl.dat_end = os.fstat(dat_fd).st_size
        finally:
            os.close(dat_fd)
            os.close(idx_fd)
        return sl if sl.count else None

    def _recover_from_idx(self, sl: _Slice, dat_fd: int, idx_fd: int) -> bool:
        """Account for the slice from its index (False: the index is empty,
        scan the data file instead). Raises ``_IndexProblem``."""
        size = os.fstat(idx_fd).st_size
        off = VERSION_SIZE
        crc = self._crc
        last: tuple[int, int, int, int, int] | None = None
        zero_at = -1
        while off + IDX_REC_SIZE <= size:
            want = min(_IDX_CHUNK, (size - off) // IDX_REC_SIZE * IDX_REC_SIZE)
            chunk = os.pread(idx_fd, want, off)
            n = len(chunk) // IDX_REC_SIZE
            if n == 0:
                break
            chunk = chunk[: n * IDX_REC_SIZE]
            seqs = u64_array(chunk)[0::4]
            if 0 in seqs:
                i = seqs.index(0)
                if chunk[i * IDX_REC_SIZE : (i + 1) * IDX_REC_SIZE] == _ZERO_IDX:
                    zero_at = off + i * IDX_REC_SIZE
                    n = i
                    chunk = chunk[: n * IDX_REC_SIZE]
                    seqs = seqs[:n]
                elif not self._do_crc:
                    raise _IndexProblem("invalid record with sequence 0")
            if n and self._do_crc:
                j = idx_crc_mismatch(chunk, crc)
                if j >= 0:
                    o = j * IDX_REC_SIZE
                    stored = U32.unpack_from(chunk, o + 28)[0]
                    got = crc(chunk[o : o + 28])
                    raise _IndexProblem(
                        f"corrupted data, expected crc to be 0x{stored:08x}, got 0x{got:08x}"
                    )
            if n:
                self._account_chunk(sl, chunk, seqs, n)
                last = IDX_REC.unpack_from(chunk, (n - 1) * IDX_REC_SIZE)
            if zero_at >= 0:
                break
            off += n * IDX_REC_SIZE
        if zero_at >= 0:
            os.ftruncate(idx_fd, zero_at)
        elif (size - VERSION_SIZE) % IDX_REC_SIZE:
            raise _IndexProblem("unexpected EOF")
        if last is None:
            return False
        end = self._verify_last(sl, dat_fd, last)
        if os.fstat(dat_fd).st_size > end:
            self._index_tail(sl, dat_fd, idx_fd, end)
        return True

    def _account_chunk(self, sl: _Slice, chunk: bytes, seqs: array[int], n: int) -> None:
        s0 = seqs[0]
        if sl.count == 0:
            sl.base = sl.first_seq = s0
            sl.first_write = IDX_REC.unpack_from(chunk, 0)[2]
        contiguous = (
            sl.seqs is None
            and (sl.count == 0 or s0 == sl.last_seq + 1)
            and seqs[-1] - s0 == n - 1
            and seqs == array("Q", range(s0, s0 + n))
        )
        if not contiguous:
            prev = sl.last_seq if sl.count else -1
            for s in seqs:
                if s <= prev:
                    raise _IndexProblem(f"sequence {s} out of order")
                prev = s
            if sl.seqs is None:
                sl.seqs = array("Q", range(sl.base, sl.last_seq + 1)) if sl.count else array("Q")
            sl.seqs.extend(seqs)
        sl.count += n
        sl.last_seq = seqs[-1]
        sl.size += sum(u32_array(chunk)[6::8]) + MSG_OVERHEAD * n

    def _verify_last(self, sl: _Slice, dat_fd: int, last: tuple[int, int, int, int, int]) -> int:
        """Check the last index record against the data file (always with
        CRC, as Go does); returns the end offset of that record."""
        seq, off, _ts, size, _ = last
        pre = f'Verification of last message for file "{sl.dat_path}" failed'
        if off + REC_HEADER_SIZE + size > os.fstat(dat_fd).st_size:
            raise _IndexProblem(f"{pre}: unable to read last record: unexpected EOF")
        rec = os.pread(dat_fd, REC_HEADER_SIZE + size, off)
        if len(rec) < REC_HEADER_SIZE + size:
            raise _IndexProblem(f"{pre}: unable to read last record: unexpected EOF")
        hsize, c = REC_HDR.unpack_from(rec)
        if hsize != size:
            raise _IndexProblem(
                f"{pre}: unable to read last record: expected record size to be "
                f"{size} bytes, got {hsize} bytes"
            )
        payload = rec[REC_HEADER_SIZE:]
        got = self._crc(payload)
        if got != c:
            raise _IndexProblem(
                f"{pre}: unable to read last record: corrupted data, "
                f"expected crc to be 0x{c:08x}, got 0x{got:08x}"
            )
        try:
            m = pb.MsgProto.FromString(payload)
        except DecodeError as e:
            raise _IndexProblem(f"{pre}: error decoding message: {e}") from e
        if m.sequence != seq:
            raise _IndexProblem(
                f"{pre}: last message sequence in index is {seq}, data file is {m.sequence}"
            )
        return off + REC_HEADER_SIZE + size

    def _index_tail(self, sl: _Slice, dat_fd: int, idx_fd: int, start: int) -> None:
        """Records written after the last indexed one (a crash between the
        data and index writes): index the complete ones that continue the
        sequence, truncate the rest. None of it was ever acknowledged, since
        a flush completes only after both files are written."""
        rr = RecordReader(dat_fd, False, self._crc, True, start)
        out = bytearray()
        bad: str | None = None
        before = sl.snapshot()
        while True:
            off = rr.offset
            try:
                r = rr.next()
            except BadRecord as e:
                if e.kind == ZERO:
                    warn_zero_padding(sl.dat_path, dat_fd, e.offset)
                    bad = ""
                else:
                    bad = e.detail
                break
            if r is None:
                break
            payload = r[1]
            try:
                m = pb.MsgProto.FromString(payload)
            except DecodeError as e:
                rr.offset, bad = off, str(e)
                break
            if m.sequence != sl.last_seq + 1:
                rr.offset, bad = off, f"sequence {m.sequence} does not follow {sl.last_seq}"
                break
            out += idx_record(m.sequence, off, m.timestamp, len(payload), self._crc)
            sl.add(m.sequence, m.timestamp, len(payload))
        if bad is not None:
            if bad:
                _log.warning(
                    f'Truncating unindexed data at the end of "{sl.dat_path}" '
                    f"(offset {rr.offset}): {bad}"
                )
            os.ftruncate(dat_fd, rr.offset)
        if not out:
            return
        idx_end = os.fstat(idx_fd).st_size
        try:
            pwrite_all(idx_fd, out, idx_end)
            os.fsync(idx_fd)
        except OSError as e:
            # A full disk must not stop the start: these messages were never
            # acknowledged, so dropping them is as correct as keeping them.
            os.ftruncate(idx_fd, idx_end)
            os.ftruncate(dat_fd, start)
            n = len(out) // IDX_REC_SIZE
            sl.restore(before)
            _log.warning(
                f'Unable to index {n} trailing (never acknowledged) messages of '
                f'"{sl.dat_path}": {e}. They are dropped'
            )
            return
        _log.notice(f'Indexed {len(out) // IDX_REC_SIZE} trailing messages of "{sl.dat_path}"')

    def _rebuild_idx(self, sl: _Slice, dat_fd: int, idx_fd: int) -> None:
        """Scan the data file record by record, writing the index anew."""
        rr = RecordReader(dat_fd, False, self._crc, self._do_crc)
        out = bytearray()
        wpos = VERSION_SIZE
        while True:
            off = rr.offset
            try:
                r = rr.next()
            except BadRecord as e:
                self._fs.end_of_records(sl.dat_path, dat_fd, e)
                break
            if r is None:
                break
            payload = r[1]
            try:
                m = pb.MsgProto.FromString(payload)
            except DecodeError as e:
                self._fs.bad_record(sl.dat_path, dat_fd, BadRecord(CORRUPT, off, str(e)))
                break
            if sl.count and m.sequence <= sl.last_seq:
                bad = BadRecord(CORRUPT, off, f"sequence {m.sequence} out of order")
                self._fs.bad_record(sl.dat_path, dat_fd, bad)
                break
            out += idx_record(m.sequence, off, m.timestamp, len(payload), self._crc)
            sl.add(m.sequence, m.timestamp, len(payload))
            if len(out) >= _IDX_CHUNK:
                pwrite_all(idx_fd, out, wpos)
                wpos += len(out)
                out = bytearray()
        if out:
            pwrite_all(idx_fd, out, wpos)
            wpos += len(out)
        os.ftruncate(idx_fd, wpos)
        os.fsync(idx_fd)


# ---------------------------------------------------------------------------
# Subscription store


class FileSubStore(SubStore):
    """Subscription log of one channel (``subs.dat``, stores.md §3.5).

    The live state (SubState and pending set per subscription) is in memory
    because compaction rewrites it and recovery returns it; pending sets are
    bounded by MaxInflight per subscription."""

    def __init__(self, fs: FileStore, name: str, directory: str, limits: ChannelLimits) -> None:
        super().__init__(limits)
        self._fs = fs
        self.name = name
        self.path = os.path.join(directory, SUBS_FILE)
        self._crc = fs.crc
        self._opts = fs.opts
        self._bufsize = fs.opts.buffer_size
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
        self._sync = _SyncState()
        self.last_used = 0
        self._closed = False
        # a subscription record (not just pending/ack) awaits its fsync
        self._structural = False

    # -- holder protocol ---------------------------------------------------

    def close_fds(self) -> None:
        if self._fd < 0:
            return
        if self._buf:
            try:
                self._write_out()
            except OSError as e:
                _log.error(f'Unable to write to "{self.path}": {e}')
        _close_quietly(self._fd)
        self._fd = -1
        self._fs.pool.closed(self)

    def idle_closable(self, limited: bool) -> bool:
        return limited

    def _open(self) -> None:
        if self._fd >= 0:
            self._fs.pool.touch(self)
            return
        self._fd = os.open(self.path, os.O_RDWR)
        self._fs.pool.opened(self, 1)

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
            if self._should_compact():
                self._compact()

    def add_seq_pending(self, sub_id: int, seq: int) -> None:
        self._record(SUB_REC_MSG, encode_id_seq(sub_id, seq))
        self._num_recs += 1
        st = self._subs.get(sub_id)
        if st is not None:
            if seq > st.lastSent:
                st.lastSent = seq
            self._pending[sub_id].add(seq)

    def ack_seq_pending(self, sub_id: int, seq: int) -> None:
        self._record(SUB_REC_ACK, encode_id_seq(sub_id, seq))
        self._del_recs += 1
        p = self._pending.get(sub_id)
        if p is not None:
            p.discard(seq)
            if self._should_compact():
                self._compact()

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
            self._write_out()
            if self._opts.do_sync and self._structural and self._sync.dirty():
                self._structural = False
                await self._sync.sync(self._sync_fds, self._fs.executor())
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

    def _record(self, rtype: int, payload: bytes) -> None:
        rec = REC_HDR.pack((rtype << 24) | len(payload), self._crc(payload)) + payload
        self._file_size += len(rec)
        self._buf += rec
        if self._bufsize == 0 or len(self._buf) >= self._bufsize:
            try:
                self._write_out()
            except OSError as e:
                raise StoreError(str(e)) from e

    def _write_out(self) -> None:
        if not self._buf:
            return
        self._open()
        append_records(self._fd, self._buf, self._off, self.path)
        self._off += len(self._buf)
        self._buf = bytearray()
        self._sync.written += 1

    def _sync_fds(self) -> list[int]:
        self._open()
        return [os.dup(self._fd)]

    async def _auto_sync(self) -> None:
        if self._closed:
            return
        self._write_out()
        if self._sync.dirty():
            await self._sync.sync(self._sync_fds, self._fs.executor())

    def _should_compact(self) -> bool:
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
        fd, tmp = _temp_file(self._fs.root, "subs")
        try:
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
            pwrite_all(fd, out, VERSION_SIZE)
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, self.path)
        except OSError as e:
            _close_quietly(fd)
            try:
                os.remove(tmp)
            except OSError:
                pass
            _log.error(f'Unable to compact "{self.path}": {e}')
            return
        self._buf = bytearray()
        if self._fd >= 0:
            _close_quietly(self._fd)
            self._fd = -1
            self._fs.pool.closed(self)
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
        self._fs.pool.opened(self, 1)

    def recover(self) -> None:
        """Replay subs.dat (stores.md §3.5)."""
        fd = _open_store_file(self.path)
        try:
            rr = RecordReader(fd, True, self._crc, self._opts.do_crc)
            subs, pending = self._subs, self._pending
            while True:
                off = rr.offset
                try:
                    r = rr.next()
                except BadRecord as e:
                    self._fs.end_of_records(self.path, fd, e)
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

    def _discard(self) -> None:
        self._closed = True
        self._buf = bytearray()
        self.close_fds()


# ---------------------------------------------------------------------------
# The lock


class FileLock(StoreLock):
    """POSIX record lock on ``<root>/.rootdir.lck`` (stores.md §3.9); never
    ``flock``, which a Go server would not see."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.path = os.path.join(root, LOCK_FILE)
        self._fd = -1

    def acquire(self) -> bool:
        """Never blocks: a lock held elsewhere is False at once."""
        if self._fd >= 0:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        except (FileNotFoundError, PermissionError) as e:
            raise StoreError(str(e)) from e
        except OSError as e:
            if e.errno == errno.EROFS:
                # not a lock held by someone else: nobody can write here
                raise StoreError(
                    f'datastore "{self.root}" is on a read-only file system '
                    f"(unable to open its lock file {self.path})"
                ) from e
            return False
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EINTR, errno.ENOLCK):
                return False
            raise StoreError(str(e)) from e
        self._fd = fd
        return True

    def check(self) -> bool:
        """The lock is ours and the lock file is still the one we locked. If
        someone removed or replaced it, another server could lock the new
        file while we keep the old one, so that counts as lost. Two stats
        and a non-blocking re-lock: never blocks."""
        if self._fd < 0:
            return False
        try:
            mine = os.fstat(self._fd)
            now = os.stat(self.path)
        except OSError:
            return False
        if (mine.st_dev, mine.st_ino) != (now.st_dev, now.st_ino):
            return False
        # Re-assert the lock: a no-op for a lock we hold, but on NFS a lock
        # whose lease expired fails here (ENOLCK/EIO) instead of silently
        # letting another host in.
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        except OSError:
            pass
        _close_quietly(self._fd)
        self._fd = -1


# ---------------------------------------------------------------------------
# The store


class FileStore(Store):
    """The FILE store rooted at ``root_dir`` (one directory per channel)."""

    name = "FILE"

    def __init__(self, root_dir: str, limits: StoreLimits, file_opts: FileOptions) -> None:
        super().__init__(limits)
        if not root_dir:
            raise StoreError("for FILE stores, root directory must be specified")
        validate_file_options(file_opts)
        self.opts = copy.copy(file_opts)
        self.root = root_dir
        self.crc = make_crc(file_opts.crc_poly)
        try:
            os.makedirs(root_dir, 0o777, exist_ok=True)
        except OSError as e:
            raise StoreError(f"unable to create the root directory [{root_dir}]: {e}") from e
        witness = os.path.join(root_dir, TRUNCATE_WITNESS)
        if self.opts.truncate_bad_eof:
            try:
                os.close(os.open(witness, os.O_CREAT | os.O_EXCL | os.O_RDONLY, 0o666))
            except OSError as e:
                raise StoreError(
                    "file store should not be opened consecutively with the "
                    "TruncateUnexpectedEOF option set to true"
                ) from e
        else:
            try:
                os.remove(witness)
            except OSError:
                pass
        _raise_nofile_limit()
        self.pool = _FdPool(self.opts.fds_limit)
        self.cache_total = 0
        self.cache_budget = max(_CACHE_BUDGET, 4 * max(2 * self.opts.read_buffer_size, _MIN_CACHE))
        self._cached: OrderedDict[FileMsgStore, None] = OrderedDict()  # LRU of caches
        # the same stores, typed, for the background work
        self._stores: dict[str, tuple[FileMsgStore, FileSubStore]] = {}
        self.clients: dict[str, spb.ClientInfo] = {}
        self._cli_path = os.path.join(root_dir, CLIENTS_FILE)
        self._cli_fd = -1
        self._cli_off = VERSION_SIZE
        self._cli_buf = bytearray()
        self._cli_del_recs = 0
        self._cli_file_size = 0
        self._cli_compact_ts = -math.inf
        self._cli_sync = _SyncState()
        self._lock = FileLock(root_dir)
        self._executor: ThreadPoolExecutor | None = None
        self._bg: asyncio.Task[None] | None = None
        self._archivers: list[threading.Thread] = []
        self._archivers_lock = threading.Lock()
        self._closed = False

    # -- helpers used by the channel stores --------------------------------

    def executor(self) -> ThreadPoolExecutor:
        """Threads for fsync: the loop never waits on the disk."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="nss-fsync")
        return self._executor

    def end_of_records(self, path: str, fd: int, e: BadRecord) -> None:
        """Where recovery stopped reading ``path``: a zero-filled tail (space
        allocated but never written before a crash) is cut off; anything
        else goes to ``bad_record``."""
        if e.kind == ZERO:
            warn_zero_padding(path, fd, e.offset)
            os.ftruncate(fd, e.offset)
        else:
            self.bad_record(path, fd, e)

    def bad_record(self, path: str, fd: int, e: BadRecord) -> None:
        """A truncated or corrupt record met during recovery: log it with a
        dump like Go, then truncate the file there if ``truncate_bad_eof``,
        else fail naming the file and the offset."""
        if e.kind == PARTIAL:
            _log.error(f'Unexpected EOF for file "{path}"')
            if not self.opts.truncate_bad_eof:
                _log.error(
                    f'It is recommended that you make a copy of the whole datastore "{self.root}".'
                )
                _log.error(
                    "Restart with the file_truncate_bad_eof option to truncate this file "
                    f"to this offset: {e.offset}."
                )
                _log.error(
                    "Dataloss may occur. Details about the first corrupted record follows..."
                )
        else:
            _log.error(f'Corrupted record in file "{path}": {e.detail}')
        try:
            raw = os.pread(fd, 400, e.offset)
            _log.error("Record bytes:")
            _dump(raw)
        except OSError:  # pragma: no cover
            pass
        if self.opts.truncate_bad_eof:
            os.ftruncate(fd, e.offset)
            _log.notice(f'File "{path}" has been truncated to offset: {e.offset}')
            _log.notice("Recovery resumes...")
            return
        raise StoreError(f'{e.detail} (file "{path}", offset {e.offset})')

    def run_archive_script(self, channel: str, dat: str, idx: str) -> None:
        """Run ``slice_archive_script <channel> <dat.bak> <idx.bak>`` in the
        background; the script owns (and must remove) the files."""
        script = self.opts.slice_archive_script

        def run() -> None:
            try:
                p = subprocess.run(
                    [script, channel, dat, idx],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
            except OSError as e:
                _log.notice(f'Error invoking archive script "{script}": {e} (output=)')
                return
            out = p.stdout.decode(errors="replace")
            if p.returncode != 0:
                _log.notice(
                    f'Error invoking archive script "{script}": exit status {p.returncode} '
                    f"(output={out})"
                )
            else:
                _log.notice(f"Output of archive script for {channel} ({dat} and {idx}): {out}")

        t = threading.Thread(target=run, name="nss-archive", daemon=True)
        with self._archivers_lock:  # recovery threads remove slices too
            self._archivers = [a for a in self._archivers if a.is_alive()]
            self._archivers.append(t)
        t.start()

    def cache_touch(self, ms: FileMsgStore) -> None:
        """``ms`` just used its cache: most recently used; over the global
        budget, the least recently used channels lose their cached messages
        (down to 3/4 of the budget, so this does not run on every call)."""
        cached = self._cached
        if ms._cache_bytes:
            cached[ms] = None
            cached.move_to_end(ms)
        if self.cache_total <= self.cache_budget:
            return
        target = self.cache_budget * 3 // 4
        for other in list(cached):
            if self.cache_total <= target:
                break
            if other is ms:
                continue
            other._cache_drop(0)
            if not other._cache_bytes:
                del cached[other]

    def wait_archive_scripts(self, timeout: float | None = None) -> None:
        with self._archivers_lock:
            threads = list(self._archivers)
        for t in threads:
            t.join(timeout)

    def _ensure_bg(self) -> None:
        if self._bg is not None and not self._bg.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._bg = loop.create_task(self._bg_loop())

    async def _bg_loop(self) -> None:
        """Once a second: close idle slices, forget idle caches; every
        ``auto_sync``: write and fsync whatever had activity."""
        auto = self.opts.auto_sync
        period = min(1.0, auto) if auto > 0 else 1.0
        last_sweep = last_sync = time.monotonic()
        while not self._closed:
            await asyncio.sleep(period)
            now = time.monotonic()
            if now - last_sweep >= 0.99:
                last_sweep = now
                self.pool.sweep()
                for ms, _ in list(self._stores.values()):
                    ms._sweep_cache()
            if auto > 0 and now - last_sync >= auto * 0.99:
                last_sync = now
                try:
                    for ms, ss in list(self._stores.values()):
                        await ms._auto_sync()
                        await ss._auto_sync()
                    await self._clients_sync(force=True)
                except (OSError, StoreError) as e:
                    _log.error(f"Error during auto-sync: {e}")

    # -- Store interface ---------------------------------------------------

    def lock(self) -> FileLock:
        return self._lock

    def init(self, info: spb.ServerInfo) -> None:
        path = os.path.join(self.root, SERVER_FILE)
        payload = info.SerializeToString()
        try:
            fd = _open_store_file(path)
            try:
                os.ftruncate(fd, VERSION_SIZE)
                rec = REC_HDR.pack(len(payload), self.crc(payload)) + payload
                append_records(fd, rec, VERSION_SIZE, path)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise StoreError(str(e)) from e

    def recover(self) -> RecoveredState | None:
        self._ensure_bg()
        info = self._recover_server_info()
        _close_quietly(self._cli_fd)  # recover() may be called again after init()
        self._cli_fd = -1
        self.clients.clear()
        self._cli_del_recs = self._cli_file_size = 0
        try:
            self._cli_fd = _open_store_file(self._cli_path)
        except (OSError, StoreError) as e:
            raise StoreError(f'unable to recover client file "{self._cli_path}": {e}') from e
        self._cli_off = os.fstat(self._cli_fd).st_size
        names = []
        with os.scandir(self.root) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    names.append(e.name)
        if info is None:
            if names:
                raise StoreError(ERR_NO_SRV_BUT_CHANNELS)
            return None
        try:
            self._recover_clients()
        except (OSError, StoreError) as e:
            raise StoreError(f'unable to recover client file "{self._cli_path}": {e}') from e
        recovered = self._recover_channels(sorted(names))
        return RecoveredState(info=info, clients=list(self.clients.values()), channels=recovered)

    def _recover_server_info(self) -> spb.ServerInfo | None:
        path = os.path.join(self.root, SERVER_FILE)
        try:
            fd = _open_store_file(path)
        except (OSError, StoreError) as e:
            raise StoreError(f'unable to recover server file "{path}": {e}') from e
        try:
            rr = RecordReader(fd, False, self.crc, self.opts.do_crc)
            try:
                r = rr.next()
            except BadRecord as e:
                _log.error(f'Server file "{path}" corrupted: {e.detail}')
                _log.error("Follow instructions in documentation in order to recover from this")
                raise StoreError(f'unable to recover server file "{path}": {e.detail}') from e
            if r is None:
                return None
            size = os.fstat(fd).st_size
            expected = VERSION_SIZE + REC_HEADER_SIZE + len(r[1])
            if size != expected:
                raise StoreError(
                    f'unable to recover server file "{path}": incorrect file size, '
                    f"expected {expected} bytes, got {size} bytes"
                )
            try:
                return spb.ServerInfo.FromString(r[1])
            except DecodeError as e:
                raise StoreError(f'unable to recover server file "{path}": {e}') from e
        finally:
            os.close(fd)

    def _recover_clients(self) -> None:
        fd = self._cli_fd
        rr = RecordReader(fd, True, self.crc, self.opts.do_crc)
        while True:
            off = rr.offset
            try:
                r = rr.next()
            except BadRecord as e:
                self.end_of_records(self._cli_path, fd, e)
                break
            if r is None:
                break
            t, payload = r
            self._cli_file_size += REC_HEADER_SIZE + len(payload)
            try:
                if t == CLI_REC_ADD:
                    ci = spb.ClientInfo.FromString(payload)
                    self.clients[ci.ID] = ci
                elif t == CLI_REC_DEL:
                    cd = spb.ClientDelete.FromString(payload)
                    self.clients.pop(cd.ID, None)
                    self._cli_del_recs += 1
                else:
                    raise StoreError(f"invalid client record type: {t}")
            except DecodeError as e:
                raise StoreError(f"{e} (offset {off})") from e
        self._cli_off = os.fstat(fd).st_size

    def _recover_channels(self, names: list[str]) -> dict[str, RecoveredChannel]:
        out: dict[str, RecoveredChannel] = {}
        self.pool.hold += 1
        try:
            if self.opts.parallel_recovery <= 1 or len(names) <= 1:
                try:
                    for n in names:
                        out[n] = self._recover_channel(n)
                except BaseException:
                    self._close_recovered(out)
                    raise
            else:
                with ThreadPoolExecutor(
                    max_workers=self.opts.parallel_recovery, thread_name_prefix="nss-recover"
                ) as ex:
                    futs: dict[Future[RecoveredChannel], str] = {
                        ex.submit(self._recover_channel, n): n for n in names
                    }
                    err: BaseException | None = None
                    for f, n in futs.items():
                        try:
                            out[n] = f.result()
                        except BaseException as e:
                            if err is None:
                                err = e
                                for g in futs:
                                    g.cancel()
                    if err is not None:
                        self._close_recovered(out)
                        raise err
        finally:
            self.pool.hold -= 1
        for name, rc in out.items():
            ms, ss = rc.channel.msgs, rc.channel.subs
            assert isinstance(ms, FileMsgStore) and isinstance(ss, FileSubStore)
            self.channels[name] = rc.channel
            self._stores[name] = (ms, ss)
        self.pool.trim()
        return out

    @staticmethod
    def _close_recovered(out: dict[str, RecoveredChannel]) -> None:
        for rc in out.values():
            rc.channel.msgs.close()
            rc.channel.subs.close()

    def _recover_channel(self, name: str) -> RecoveredChannel:
        d = os.path.join(self.root, name)
        limits = self.channel_limits(name)
        ms = FileMsgStore(self, name, d, limits)
        try:
            ms.recover()
        except (OSError, StoreError) as e:
            ms._discard()
            raise StoreError(
                f'unable to recover message store for [{name}](file: "{ms._cur_file}"): {e}'
            ) from e
        ss = FileSubStore(self, name, d, limits)
        try:
            ss.recover()
        except (OSError, StoreError) as e:
            ms._discard()
            ss._discard()
            raise StoreError(f"unable to recover subscription store for [{name}]: {e}") from e
        return RecoveredChannel(channel=ChannelStore(name, ms, ss), subscriptions=ss.recovered())

    def _new_channel(self, name: str, limits: ChannelLimits) -> ChannelStore:
        d = os.path.join(self.root, name)
        existed = os.path.isdir(d)
        try:
            os.makedirs(d, 0o777, exist_ok=True)
            ms = FileMsgStore(self, name, d, limits)
            ss = FileSubStore(self, name, d, limits)
            ss.create_file()
        except OSError as e:
            # (disk full) no half-made channel for the next start to recover
            if not existed:
                shutil.rmtree(d, ignore_errors=True)
            raise StoreError(str(e)) from e
        self._stores[name] = (ms, ss)
        self._ensure_bg()
        return ChannelStore(name, ms, ss)

    def _drop_channel(self, cs: ChannelStore) -> None:
        ms, ss = self._stores.pop(cs.name)
        ms._discard()
        ss._discard()
        self._cached.pop(ms, None)
        try:
            shutil.rmtree(os.path.join(self.root, cs.name))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise StoreError(str(e)) from e

    # -- clients -----------------------------------------------------------

    def _cli_record(self, rtype: int, payload: bytes) -> None:
        rec = REC_HDR.pack((rtype << 24) | len(payload), self.crc(payload)) + payload
        self._cli_file_size += len(rec)
        self._cli_buf += rec
        if self.opts.buffer_size == 0 or len(self._cli_buf) >= self.opts.buffer_size:
            self._cli_write_out()

    def _cli_write_out(self) -> None:
        if not self._cli_buf:
            return
        try:
            if self._cli_fd < 0:
                self._cli_fd = _open_store_file(self._cli_path)
                self._cli_off = os.fstat(self._cli_fd).st_size
            append_records(self._cli_fd, self._cli_buf, self._cli_off, self._cli_path)
        except OSError as e:
            raise StoreError(str(e)) from e
        self._cli_off += len(self._cli_buf)
        self._cli_buf = bytearray()
        self._cli_sync.written += 1

    def _cli_sync_fds(self) -> list[int]:
        return [os.dup(self._cli_fd)]

    async def _clients_sync(self, force: bool) -> None:
        self._cli_write_out()
        if (force or self.opts.do_sync) and self._cli_sync.dirty():
            await self._cli_sync.sync(self._cli_sync_fds, self.executor())

    def add_client(self, info: spb.ClientInfo) -> None:
        self._cli_record(CLI_REC_ADD, info.SerializeToString())
        c = spb.ClientInfo()
        c.CopyFrom(info)
        self.clients[info.ID] = c

    def delete_client(self, client_id: str) -> None:
        self._cli_record(CLI_REC_DEL, spb.ClientDelete(ID=client_id).SerializeToString())
        self.clients.pop(client_id, None)
        self._cli_del_recs += 1
        if self._should_compact_clients():
            self._compact_clients()

    def _should_compact_clients(self) -> bool:
        o = self.opts
        if not o.compact_enabled:
            return False
        if o.compact_min_size > 0 and self._cli_file_size < o.compact_min_size:
            return False
        frag = self._cli_del_recs * 100 // (self._cli_del_recs + len(self.clients))
        if frag < o.compact_frag:
            return False
        return time.monotonic() - self._cli_compact_ts >= o.compact_interval

    def _compact_clients(self) -> None:
        """Rewrite the live clients into a temporary ``clients.dat…`` file
        in the root and rename it over clients.dat."""
        fd, tmp = _temp_file(self.root, CLIENTS_FILE)
        try:
            out = bytearray()
            for ci in self.clients.values():
                p = ci.SerializeToString()
                out += REC_HDR.pack((CLI_REC_ADD << 24) | len(p), self.crc(p)) + p
            pwrite_all(fd, out, VERSION_SIZE)
            os.fsync(fd)
            os.close(fd)
            fd = -1
            os.replace(tmp, self._cli_path)
        except OSError as e:
            _close_quietly(fd)
            try:
                os.remove(tmp)
            except OSError:
                pass
            _log.error(f'Unable to compact "{self._cli_path}": {e}')
            return
        _close_quietly(self._cli_fd)
        self._cli_fd = _open_store_file(self._cli_path)
        self._cli_off = VERSION_SIZE + len(out)
        self._cli_buf = bytearray()
        self._cli_del_recs = 0
        self._cli_file_size = len(out)
        self._cli_compact_ts = time.monotonic()
        self._cli_sync.synced = self._cli_sync.written

    async def flush(self) -> None:
        self._ensure_bg()
        try:
            await self._clients_sync(force=False)
        except OSError as e:
            raise StoreError(str(e)) from e

    # -- closing -----------------------------------------------------------

    async def close(self) -> None:
        """Flush and fsync everything (like Go's Close), stop the background
        task, wait for archive scripts and release the FT lock. The blocking
        part runs in a thread so the loop stays responsive at shutdown."""
        if self._closed:
            return
        self._closed = True
        bg = self._bg
        if bg is not None and not bg.done():
            bg.cancel()
            try:
                await bg
            except asyncio.CancelledError:
                pass
        await asyncio.to_thread(self._close_sync)

    def close_sync(self) -> None:
        """``close`` for callers without an event loop."""
        if self._closed:
            return
        self._closed = True
        if self._bg is not None:
            self._bg.cancel()
        self._close_sync()

    def _close_sync(self) -> None:
        err: BaseException | None = None
        for ms, ss in list(self._stores.values()):
            for s in (ms, ss):
                try:
                    s.close()
                except (OSError, StoreError) as e:
                    err = err or e
        try:
            self._cli_write_out()
            if self._cli_fd >= 0:
                if self._cli_sync.dirty():
                    os.fsync(self._cli_fd)
                os.close(self._cli_fd)
                self._cli_fd = -1
        except (OSError, StoreError) as e:
            err = err or e
        self.wait_archive_scripts()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        self._lock.release()
        if err is not None:
            raise StoreError(str(err))

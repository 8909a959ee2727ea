"""A channel's message log in the FILE store: its slices and counters.

``SliceLog`` keeps sequences ``first..last`` (``count`` messages, ``bytes``
counted as stores.md §2.6: payload + 40) in the slices of ``SliceFiles``:
appended (a new slice when the current one is full), removed from the
oldest, and cut back to a mark when a publish batch fails. It knows
nothing of limits, expiry or the message cache (``FileMsgStore`` in
``msgs.py``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from nss.hot import append_msg_record, append_msg_records
from nss.log import get_logger
from nss.options import ChannelLimits, FileOptions
from nss.pb import protocol_pb2 as pb
from nss.stores.base import StoreError
from nss.stores.file.diskio import close_quietly
from nss.stores.file.records import (
    IDX_REC,
    IDX_REC_SIZE,
    MSG_OVERHEAD,
    REC_HEADER_SIZE,
    VERSION_SIZE,
    open_file,
)
from nss.stores.file.shared import Shared
from nss.stores.file.slices import PendingCuts, Slice, SliceCounters, SliceFiles

_log = get_logger()

_HEAD_RECS = 256  # index records read at once for the oldest messages


class LogMark:
    """Where ``SliceLog.rollback`` returns to (see ``MsgStore.mark``).

    Appends only grow the write slice, so its files are cut back to the
    offsets of the mark; slices the batch started are deleted; slices the
    limits removed are only detached (their files stay until ``release``)
    so that they can be put back."""

    __slots__ = (
        "first",
        "last",
        "count",
        "bytes",
        "write",
        "last_num",
        "w_off",
        "w_count",
        "slices",
        "rolled",
        "detached",
    )

    def __init__(self, log: SliceLog) -> None:
        self.first = log.first
        self.last = log.last
        self.count = log.count
        self.bytes = log.bytes
        self.write = log.write
        self.last_num = log.last_num
        self.w_off = log.w_off
        self.w_count = 0
        # counters of the slices the batch changed, as they were
        self.slices: dict[Slice, SliceCounters] = {}
        self.rolled: list[Slice] = []
        self.detached: list[Slice] = []
        if self.write is not None:
            self.slices[self.write] = self.write.snapshot()
            self.w_count = self.write.count


class SliceLog(SliceFiles):
    """The message log of one channel (see the module docstring)."""

    def __init__(self, shared: Shared, name: str, directory: str, limits: ChannelLimits) -> None:
        super().__init__(shared, name, directory)
        self._set_slice_limits(shared.opts, limits)
        self.first = 0
        self.last = 0
        self.count = 0
        self.bytes = 0
        # records up to this sequence are written (the cache may drop them)
        self.flushed_seq = 0
        self._head_sl: Slice | None = None
        self._head_buf = b""
        self._head_pos = 0
        self._mark: LogMark | None = None
        self._cuts = PendingCuts(name)

    def _set_slice_limits(self, o: FileOptions, lim: ChannelLimits) -> None:
        """Slice limits from the options or, when none is set, a quarter of
        the channel limits (Go's ``setSliceLimits``)."""
        self._sl_msgs = o.slice_max_msgs
        self._sl_bytes = o.slice_max_bytes
        self._sl_age = int(o.slice_max_age * 1e9)
        if self._sl_msgs > 0 or self._sl_bytes > 0 or self._sl_age > 0:
            return
        if lim.max_msgs > 0:
            self._sl_msgs = max(lim.max_msgs // 4, 1)
        if lim.max_bytes > 0:
            self._sl_bytes = max(lim.max_bytes // 4, 1)
        if lim.max_age > 0:
            self._sl_age = max(int(lim.max_age * 1e9) // 4, 1_000_000_000)

    # -- writing -----------------------------------------------------------

    def append(self, seq: int, ts: int, data: bytes, may_roll: bool = True) -> None:
        """Buffer the record of ``seq`` (> ``last``); placeholders fill a
        gap before it, since the log has none. A new slice starts when the
        current one is full (``may_roll``: placeholders stay in the slice of
        the message they come with)."""
        if self._cuts.left:
            self._cuts.retry()
        try:
            sl = self.write
            if sl is None:
                sl = self._roll()
            if self.last and seq > self.last + 1:
                for s in range(self.last + 1, seq):
                    ph = pb.MsgProto(sequence=s, subject=self.name, timestamp=ts)
                    self.append(s, ts, ph.SerializeToString(), may_roll=False)
            if may_roll and sl.count and (
                (self._sl_msgs > 0 and sl.count >= self._sl_msgs)
                or (self._sl_bytes > 0 and sl.size >= self._sl_bytes)
                or (self._sl_age > 0 and ts - sl.first_write >= self._sl_age)
            ):
                sl = self._roll()
        except OSError as e:
            raise StoreError(str(e)) from e
        n = len(data)
        off = self.w_off
        append_msg_record(self.wbuf, self.ibuf, seq, off, ts, data, self.crc_poly)
        self.w_off = off + REC_HEADER_SIZE + n
        if sl.count == 0:
            sl.base = sl.first_seq = seq
            sl.first_write = ts
        elif sl.seqs is not None:
            sl.seqs.append(seq)
        sl.count += 1
        sl.last_seq = seq
        sl.size += n + MSG_OVERHEAD
        self.lasts[-1] = seq
        if not self.first:
            self.first = seq
        self.last = seq
        self.count += 1
        self.bytes += n + MSG_OVERHEAD

    def append_many(self, first: int, tss: Sequence[int], datas: list[bytes], nbytes: int) -> None:
        """``append`` of ``first``, ``first + 1``, ... (``nbytes`` payload
        bytes in all): framed in one call when they all go right after
        ``last`` into the current slice without filling it, else one by one."""
        n = len(datas)
        sl = self.write
        if (
            sl is None
            or not sl.count
            or self._cuts.left
            or not self.last
            or first != self.last + 1
            or (self._sl_msgs > 0 and sl.count + n > self._sl_msgs)
            or (self._sl_bytes > 0 and sl.size + nbytes + n * MSG_OVERHEAD >= self._sl_bytes)
            or (self._sl_age > 0 and tss[-1] - sl.first_write >= self._sl_age)
        ):
            for k in range(n):
                self.append(first + k, tss[k], datas[k])
            return
        off = self.w_off
        append_msg_records(self.wbuf, self.ibuf, first, off, tss, datas, self.crc_poly)
        self.w_off = off + n * REC_HEADER_SIZE + nbytes
        last = first + n - 1
        if sl.seqs is not None:
            sl.seqs.extend(range(first, last + 1))
        sl.count += n
        sl.last_seq = last
        sl.size += nbytes + n * MSG_OVERHEAD
        self.lasts[-1] = last
        if not self.first:
            self.first = first
        self.last = last
        self.count += n
        self.bytes += nbytes + n * MSG_OVERHEAD

    def _roll(self) -> Slice:
        """Start the next slice (the current one is full, or none exists)."""
        old = self.write
        if old is not None:
            self.write_out()
            if self.do_sync and self.sync.dirty():
                self._sync_later.extend(self._dup_fds(old))
        num = self.last_num + 1
        sl = Slice(self, num)
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
        sl.first_seq = self.last + 1
        sl.last_seq = self.last
        self.slices[num] = sl
        self.order.append(num)
        self.lasts.append(self.last)
        self.last_num = num
        self.write = sl
        self.w_off = self.wbuf_off = VERSION_SIZE
        self._shared.pool.opened(sl, 2)
        if old is not None and len(self.order) == 2 and old.count == old.rm_count:
            self._remove_first_slice()
        return sl

    def write_out(self) -> bool:
        if not super().write_out():
            return False
        self.flushed_seq = self.last
        return True

    # -- removal -----------------------------------------------------------

    def head(self) -> tuple[int, int] | None:
        """(timestamp, size) of the first message, read through a small
        window of index records so removing many messages in a row costs one
        read per window."""
        while self.count > 0:
            sl = self.slices[self.order[0]]
            if self.first < sl.first_seq:
                self.first = sl.first_seq
            if self.first > sl.last_seq:
                if len(self.order) > 1:
                    self._remove_first_slice()
                    continue
                return None
            pos = sl.pos(self.first)
            if pos < 0:  # missing sequence inside an old gapped slice
                self.first += 1
                self._touch(sl)
                sl.first_seq = self.first
                continue
            rel = pos - self._head_pos
            hb = self._head_buf
            if self._head_sl is not sl or rel < 0 or (rel + 1) * IDX_REC_SIZE > len(hb):
                hb = self._read_idx(sl, pos, _HEAD_RECS)
                self._head_sl, self._head_buf, self._head_pos = sl, hb, pos
                rel = 0
                if not hb:
                    raise StoreError(
                        f'missing index record for sequence {self.first} in "{sl.idx_path}"'
                    )
            o = rel * IDX_REC_SIZE
            s, _, ts, size, c = IDX_REC.unpack_from(hb, o)
            if s != self.first or (self.do_crc and self.crc(hb[o : o + 28]) != c):
                raise StoreError(
                    f'invalid index record for sequence {self.first} in "{sl.idx_path}"'
                )
            return ts, size
        return None

    def remove_first(self, size: int) -> int:
        """Remove the first message (``size`` from ``head``); its sequence."""
        sl = self.slices[self.order[0]]
        self._touch(sl)
        first = self.first
        self.count -= 1
        self.bytes -= size + MSG_OVERHEAD
        self.first = first + 1
        sl.rm_count += 1
        if sl.rm_count >= sl.count and len(self.order) > 1:
            self._remove_first_slice()
        else:
            sl.first_seq = self.first
        return first

    def _touch(self, sl: Slice) -> None:
        """``sl``'s counters are about to change outside an append: keep
        them for a rollback."""
        m = self._mark
        if m is not None and sl not in m.slices:
            m.slices[sl] = sl.snapshot()

    def _remove_first_slice(self) -> None:
        """Delete (or hand to the archive script) the oldest slice; never
        called for the last one, which keeps the sequence across restarts."""
        num = self.order.pop(0)
        self.lasts.pop(0)
        sl = self.slices.pop(num)
        self.close_slice(sl)
        if self._head_sl is sl:
            self._head_sl = None
            self._head_buf = b""
        nxt = self.slices[self.order[0]]
        if self.first < nxt.first_seq:
            self.first = nxt.first_seq
        if self._mark is not None:
            self._mark.detached.append(sl)  # deleted at release()
        else:
            self._shared.dispose_slice(self.name, sl.dat_path, sl.idx_path)

    def empty(self) -> None:
        """Remove every message and slice; the sequence carries on from
        ``last`` (like the MEMORY store, in this process)."""
        for sl in list(self.slices.values()):
            if sl is self.write:
                self.wbuf = bytearray()
                self.ibuf = bytearray()
            self.close_slice(sl)
        for fd in self._sync_later:
            close_quietly(fd)
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
        self.slices.clear()
        self.order.clear()
        self.lasts.clear()
        self.write = None
        self.last_num = 0
        self.w_off = self.wbuf_off = VERSION_SIZE
        self._head_sl = None
        self._head_buf = b""
        self.count = self.bytes = 0
        self.first = self.last + 1 if self.last else 0
        self.flushed_seq = self.last
        self.sync.synced = self.sync.written

    # -- batches (see MsgStore.mark) ----------------------------------------

    def mark(self) -> None:
        if self._mark is not None:
            self.release()
        self._mark = LogMark(self)

    def release(self) -> None:
        m = self._mark
        if m is None:
            return
        self._mark = None
        for sl in m.detached:
            self._shared.dispose_slice(self.name, sl.dat_path, sl.idx_path)

    def rollback(self) -> None:
        m = self._mark
        if m is None:
            return
        self._mark = None
        if m.rolled:
            # the buffers belong to the newest rolled slice: never written
            self.wbuf = bytearray()
            self.ibuf = bytearray()
            for sl in reversed(m.rolled):
                self._forget_rolled(sl)
        for sl in reversed(m.detached):
            if sl not in m.rolled:  # else: deleted with the other rolled ones
                self.order.insert(0, sl.num)
                self.slices[sl.num] = sl
        for sl, snap in m.slices.items():
            sl.restore(snap)
        self.lasts = [self.slices[n].last_seq for n in self.order]
        self.write = m.write
        self.last_num = m.last_num
        if m.write is None:
            self.w_off = self.wbuf_off = VERSION_SIZE
        else:
            self._cut_back(m.write, m)
        self.first, self.last, self.count, self.bytes = m.first, m.last, m.count, m.bytes
        self.flushed_seq = min(self.flushed_seq, m.last)
        self._head_sl = None
        self._head_buf = b""

    def _forget_rolled(self, sl: Slice) -> None:
        """A slice the failed batch started: closed, out of the lists, its
        files deleted."""
        self.close_slice(sl)
        self.slices.pop(sl.num, None)
        if self.order and self.order[-1] == sl.num:
            self.order.pop()
        for p in (sl.dat_path, sl.idx_path):
            self._cuts.cut(p, -1)

    def _cut_back(self, w: Slice, m: LogMark) -> None:
        """Cut the mark's write slice back to its size at the mark.

        What the slice held at the mark may still be partly buffered; that
        part stays buffered. Anything on disk past the mark (records of the
        batch, or the start of a record a failed write left) is cut off."""
        if m.rolled:
            disk_dat, disk_idx = w.dat_end, w.idx_n  # fully written by _roll
        else:
            disk_dat, disk_idx = self.wbuf_off, w.idx_n
            # new buffers: a failed write's memoryview may still hold the old
            self.wbuf = self.wbuf[: max(0, m.w_off - disk_dat)]
            self.ibuf = self.ibuf[: max(0, m.w_count - disk_idx) * IDX_REC_SIZE]
        dat_end = min(disk_dat, m.w_off)
        idx_n = min(disk_idx, m.w_count)
        self._cuts.cut(w.dat_path, dat_end)
        self._cuts.cut(w.idx_path, VERSION_SIZE + idx_n * IDX_REC_SIZE)
        w.dat_end = dat_end
        w.idx_n = idx_n
        self.wbuf_off = dat_end
        self.w_off = m.w_off

    # -- recovery ----------------------------------------------------------

    def install(self, recovered: list[Slice]) -> None:
        """The slices recovery found (oldest first) become the log."""
        for sl in recovered:
            self.slices[sl.num] = sl
            self.order.append(sl.num)
            self.lasts.append(sl.last_seq)
            self.count += sl.count
            self.bytes += sl.size
            if self.first == 0 or sl.first_seq < self.first:
                self.first = sl.first_seq
            if sl.last_seq > self.last:
                self.last = sl.last_seq
        if self.order:
            self.write = w = self.slices[self.order[-1]]
            self.last_num = self.order[-1]
            self.w_off = self.wbuf_off = w.dat_end
        self.flushed_seq = self.last

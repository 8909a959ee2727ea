"""Recovery of message slices (stores.md §3.8): read index files, not
message bodies.

Index records are read a chunk at a time and their CRCs verified with
C-level loops; only the last record of each slice is checked against the
data file, the way Go does. An index that cannot be trusted is rebuilt from
its data file; records written after the last indexed one (a crash between
the two writes) are indexed or cut off.
"""

from __future__ import annotations

import os
from array import array

from google.protobuf.message import DecodeError

from nss.log import get_logger
from nss.pb import protocol_pb2 as pb
from nss.stores.base import StoreError
from nss.stores.file.diskio import open_store_file
from nss.stores.file.records import (
    CORRUPT,
    IDX_REC,
    IDX_REC_SIZE,
    MSG_OVERHEAD,
    REC_HDR,
    REC_HEADER_SIZE,
    U32,
    VERSION_SIZE,
    ZERO,
    BadRecord,
    RecordReader,
    idx_crc_mismatch,
    idx_record,
    open_file,
    pwrite_all,
    u32_array,
    u64_array,
)
from nss.stores.file.shared import Shared, warn_zero_padding
from nss.stores.file.slices import Slice, SliceOwner

_log = get_logger()

_ZERO_IDX = bytes(IDX_REC_SIZE)
_IDX_CHUNK = 65536 * IDX_REC_SIZE  # 2 MB of index records per read


class IndexProblem(Exception):
    """Anything wrong with an index file: it is rebuilt from the data file."""


class SliceRecovery:
    """Recovers the slices of one channel, one at a time."""

    def __init__(self, owner: SliceOwner, shared: Shared) -> None:
        self._owner = owner
        self._shared = shared
        self.name = owner.name
        self._crc = shared.crc
        self._do_crc = shared.opts.do_crc
        # the file being read, for the error that names it
        self.cur_file = ""

    def recover_slice(self, num: int) -> Slice | None:
        sl = Slice(self._owner, num)
        self.cur_file = os.path.join(self.name, os.path.basename(sl.dat_path))
        idx_exists = os.path.exists(sl.idx_path)
        dat_fd = open_store_file(sl.dat_path)
        try:
            self.cur_file = os.path.join(self.name, os.path.basename(sl.idx_path))
            try:
                idx_fd = open_store_file(sl.idx_path)
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
                except IndexProblem as e:
                    _log.error(
                        f'Error with index file "{sl.idx_path}": {e}. '
                        "Truncating and recovering from data file"
                    )
                    os.ftruncate(idx_fd, VERSION_SIZE)
                    sl = Slice(self._owner, num)
            if not ok:
                self.cur_file = os.path.join(self.name, os.path.basename(sl.dat_path))
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

    def _recover_from_idx(self, sl: Slice, dat_fd: int, idx_fd: int) -> bool:
        """Account for the slice from its index (False: the index is empty,
        scan the data file instead). Raises ``IndexProblem``."""
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
                    raise IndexProblem("invalid record with sequence 0")
            if n and self._do_crc:
                j = idx_crc_mismatch(chunk, crc)
                if j >= 0:
                    o = j * IDX_REC_SIZE
                    stored = U32.unpack_from(chunk, o + 28)[0]
                    got = crc(chunk[o : o + 28])
                    raise IndexProblem(
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
            raise IndexProblem("unexpected EOF")
        if last is None:
            return False
        end = self._verify_last(sl, dat_fd, last)
        if os.fstat(dat_fd).st_size > end:
            self._index_tail(sl, dat_fd, idx_fd, end)
        return True

    def _account_chunk(self, sl: Slice, chunk: bytes, seqs: array[int], n: int) -> None:
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
                    raise IndexProblem(f"sequence {s} out of order")
                prev = s
            if sl.seqs is None:
                sl.seqs = array("Q", range(sl.base, sl.last_seq + 1)) if sl.count else array("Q")
            sl.seqs.extend(seqs)
        sl.count += n
        sl.last_seq = seqs[-1]
        sl.size += sum(u32_array(chunk)[6::8]) + MSG_OVERHEAD * n

    def _verify_last(self, sl: Slice, dat_fd: int, last: tuple[int, int, int, int, int]) -> int:
        """Check the last index record against the data file (always with
        CRC, as Go does); returns the end offset of that record."""
        seq, off, _ts, size, _ = last
        pre = f'Verification of last message for file "{sl.dat_path}" failed'
        if off + REC_HEADER_SIZE + size > os.fstat(dat_fd).st_size:
            raise IndexProblem(f"{pre}: unable to read last record: unexpected EOF")
        rec = os.pread(dat_fd, REC_HEADER_SIZE + size, off)
        if len(rec) < REC_HEADER_SIZE + size:
            raise IndexProblem(f"{pre}: unable to read last record: unexpected EOF")
        hsize, c = REC_HDR.unpack_from(rec)
        if hsize != size:
            raise IndexProblem(
                f"{pre}: unable to read last record: expected record size to be "
                f"{size} bytes, got {hsize} bytes"
            )
        payload = rec[REC_HEADER_SIZE:]
        got = self._crc(payload)
        if got != c:
            raise IndexProblem(
                f"{pre}: unable to read last record: corrupted data, "
                f"expected crc to be 0x{c:08x}, got 0x{got:08x}"
            )
        try:
            m = pb.MsgProto.FromString(payload)
        except DecodeError as e:
            raise IndexProblem(f"{pre}: error decoding message: {e}") from e
        if m.sequence != seq:
            raise IndexProblem(
                f"{pre}: last message sequence in index is {seq}, data file is {m.sequence}"
            )
        return off + REC_HEADER_SIZE + size

    def _index_tail(self, sl: Slice, dat_fd: int, idx_fd: int, start: int) -> None:
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

    def _rebuild_idx(self, sl: Slice, dat_fd: int, idx_fd: int) -> None:
        """Scan the data file record by record, writing the index anew."""
        rr = RecordReader(dat_fd, False, self._crc, self._do_crc)
        out = bytearray()
        wpos = VERSION_SIZE
        while True:
            off = rr.offset
            try:
                r = rr.next()
            except BadRecord as e:
                self._shared.end_of_records(sl.dat_path, dat_fd, e)
                break
            if r is None:
                break
            payload = r[1]
            try:
                m = pb.MsgProto.FromString(payload)
            except DecodeError as e:
                self._shared.bad_record(sl.dat_path, dat_fd, BadRecord(CORRUPT, off, str(e)))
                break
            if sl.count and m.sequence <= sl.last_seq:
                bad = BadRecord(CORRUPT, off, f"sequence {m.sequence} out of order")
                self._shared.bad_record(sl.dat_path, dat_fd, bad)
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

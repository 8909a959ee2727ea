"""Byte-level building blocks of the FILE store (stores.md §3.2, §3.6).

Everything here is about the on-disk format that the Go server reads and
writes: the 4-byte file version, the ``[header word][CRC-32][payload]``
record framing, the 32-byte message index records, and Go's CRC-32 with a
configurable polynomial. Keeping it apart from the store logic lets the
stores stay about *state* while this module stays about *bytes*.

All integers are little-endian, as in the Go code.
"""

from __future__ import annotations

import os
import re
import struct
import sys
from array import array
from collections.abc import Callable
from operator import itemgetter

from nss.hot.framing import (  # noqa: F401 - the FILE format's names, used from here
    IDX_BODY,
    IEEE_POLY,
    REC_HDR,
    U32,
    CrcFunc,
    encode_id_seq,
    make_crc,
)
from nss.stores.base import StoreError

FILE_VERSION = 1
VERSION_BYTES = struct.pack("<I", FILE_VERSION)
VERSION_SIZE = 4

REC_HEADER_SIZE = 8
IDX_REC_SIZE = 32
# Bytes counted per message on top of the MsgProto size: the record header
# in the .dat file plus the index record (FILE byte accounting, §2.6).
MSG_OVERHEAD = REC_HEADER_SIZE + IDX_REC_SIZE


# Record types of the typed logs.
SUB_REC_NEW = 1
SUB_REC_UPDATE = 2
SUB_REC_DEL = 3
SUB_REC_ACK = 4
SUB_REC_MSG = 5
CLI_REC_ADD = 1
CLI_REC_DEL = 2

IDX_REC = struct.Struct("<QQqII")
_IDX_BODY_ONLY = struct.Struct("<28s4x")

_LITTLE = sys.byteorder == "little"
_first = itemgetter(0)



def frame(header: int, payload: bytes, crc: CrcFunc) -> bytes:
    """One record: header word, CRC-32 of the payload, payload."""
    return REC_HDR.pack(header, crc(payload)) + payload


def idx_record(seq: int, offset: int, ts: int, size: int, crc: CrcFunc) -> bytes:
    body = IDX_BODY.pack(seq, offset, ts, size)
    return body + U32.pack(crc(body))


def u32_array(data: bytes | bytearray | memoryview) -> array[int]:
    a = array("I")
    a.frombytes(data)
    if not _LITTLE:  # pragma: no cover - big-endian hosts
        a.byteswap()
    return a


def u64_array(data: bytes | bytearray | memoryview, signed: bool = False) -> array[int]:
    a = array("q" if signed else "Q")
    a.frombytes(data)
    if not _LITTLE:  # pragma: no cover
        a.byteswap()
    return a


def idx_crc_mismatch(data: bytes, crc: CrcFunc) -> int:
    """Position of the first index record (in ``data``, a whole number of
    records) whose stored CRC does not match, or -1.

    The common case (everything matches) runs as a few C-level loops: the
    stored CRCs are a strided view of the buffer and the computed ones come
    from ``map`` over ``iter_unpack``; only a mismatch is located in Python."""
    stored = u32_array(data)[7::8]
    computed = array("I", map(crc, map(_first, _IDX_BODY_ONLY.iter_unpack(data))))
    if computed == stored:
        return -1
    for i, (a, b) in enumerate(zip(computed, stored, strict=True)):
        if a != b:
            return i
    return -1  # pragma: no cover


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """``pwrite`` until everything is written (regular files rarely write
    short, but a signal or a full disk can make them)."""
    mv = memoryview(data)
    while mv:
        n = os.pwrite(fd, mv, offset)
        if n <= 0:  # pragma: no cover
            raise OSError("short write")
        offset += n
        mv = mv[n:]


def check_version(fd: int) -> None:
    """Go's ``checkFileVersion`` on an existing file, with its error texts."""
    b = os.pread(fd, VERSION_SIZE, 0)
    if len(b) == 0:
        raise StoreError("unable to verify file version: EOF")
    if len(b) < VERSION_SIZE:
        raise StoreError("unable to verify file version: unexpected EOF")
    (v,) = U32.unpack(b)
    if v == 0 or v > FILE_VERSION:
        raise StoreError(f"unsupported file version: {v} (supports [1..{FILE_VERSION}])")


def open_file(
    path: str, truncate: bool = False, on_short: Callable[[str, int], None] | None = None
) -> int:
    """Open (read/write) a store file, like Go's ``openFileWithFlags``.

    An existing file must carry a supported version; a new file (or one
    being truncated) gets the version written. Mode 0666 before umask.

    An existing file shorter than the version (0 to 3 bytes) was created
    but never completed: the disk filled up or the process died between
    the create and the write of the version, so it cannot hold a record.
    Go refuses to start on it ("unable to verify file version: EOF") and
    the operator has to delete it by hand; here it is completed as an empty
    file, after ``on_short(path, size)`` (the caller's warning)."""
    exists = os.path.exists(path)
    flags = os.O_RDWR | os.O_CREAT
    if truncate:
        flags |= os.O_TRUNC
    fd = os.open(path, flags, 0o666)
    try:
        if exists and not truncate:
            size = os.fstat(fd).st_size
            if size < VERSION_SIZE:
                if on_short is not None:
                    on_short(path, size)
                _complete_header(fd, path)
            else:
                check_version(fd)
        else:
            pwrite_all(fd, VERSION_BYTES, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _complete_header(fd: int, path: str) -> None:
    try:
        os.ftruncate(fd, 0)
        pwrite_all(fd, VERSION_BYTES, 0)
    except OSError as e:
        raise StoreError(f'unable to complete the version header of "{path}": {e}') from e


def first_data_after(fd: int, offset: int, chunk: int = 1 << 20) -> int:
    """Offset of the first non-zero byte at or after ``offset``, or -1.

    Recovery stops reading a log at a zero-filled header (space allocated
    but never written); data behind the zeros means records were lost
    there, which is worth telling the operator."""
    off = offset
    while True:
        b = os.pread(fd, chunk, off)
        if not b:
            return -1
        rest = b.lstrip(b"\0")
        if rest:
            return off + len(b) - len(rest)
        off += len(b)


# ---------------------------------------------------------------------------
# Reading records

ZERO = "zero"  # 8 zero bytes where a header was expected: pre-allocated tail
PARTIAL = "partial"  # the file ends inside a record: Go's "unexpected EOF"
CORRUPT = "corrupt"  # CRC mismatch


class BadRecord(Exception):
    """A record that cannot be read at ``offset`` (see ``kind``)."""

    def __init__(self, kind: str, offset: int, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.offset = offset
        self.detail = detail


class RecordReader:
    """Sequential reader of framed records from a file descriptor.

    Reads large chunks with ``pread`` and slices records out of them, so a
    log of small records costs one system call per chunk rather than two per
    record. ``offset`` is always the position of the next record, which is
    where a damaged file gets truncated."""

    def __init__(
        self,
        fd: int,
        typed: bool,
        crc: CrcFunc,
        check_crc: bool,
        offset: int = VERSION_SIZE,
        chunk: int = 1 << 20,
    ) -> None:
        self.fd = fd
        self.typed = typed
        self.crc = crc
        self.check_crc = check_crc
        self.offset = offset
        self._chunk = chunk
        self._buf = b""
        self._bstart = offset

    def _get(self, off: int, n: int) -> bytes:
        rel = off - self._bstart
        if rel < 0 or rel + n > len(self._buf):
            self._buf = os.pread(self.fd, max(n, self._chunk), off)
            self._bstart = off
            rel = 0
        return self._buf[rel : rel + n]

    def next(self) -> tuple[int, bytes] | None:
        """(record type, payload) of the next record; None at a clean end.

        Raises ``BadRecord`` for a zero-filled header, a record cut short by
        the end of the file, or a CRC mismatch."""
        off = self.offset
        hdr = self._get(off, REC_HEADER_SIZE)
        if not hdr:
            return None
        if len(hdr) < REC_HEADER_SIZE:
            raise BadRecord(PARTIAL, off, "unexpected EOF")
        word, stored = REC_HDR.unpack(hdr)
        if self.typed:
            rtype, size = word >> 24, word & 0xFFFFFF
        else:
            rtype, size = 0, word
        if size == 0 and rtype == 0 and stored == 0:
            raise BadRecord(ZERO, off, "end of file padded with zeros")
        payload = self._get(off + REC_HEADER_SIZE, size)
        if len(payload) < size:
            raise BadRecord(PARTIAL, off, "unexpected EOF")
        if self.check_crc:
            c = self.crc(payload)
            if c != stored:
                raise BadRecord(
                    CORRUPT,
                    off,
                    f"corrupted data, expected crc to be 0x{stored:08x}, got 0x{c:08x}",
                )
        self.offset = off + REC_HEADER_SIZE + size
        return rtype, payload


# ---------------------------------------------------------------------------
# Tiny protobuf helpers for the hot, fixed-shape records

_SLICE_NAME = re.compile(r"[+-]?[0-9]+")


def parse_slice_name(name: str) -> int | None:
    """N of ``msgs.N.dat`` (None for other files); a non-integer N is an
    error, as in Go (``strconv.ParseInt``)."""
    if not (name.startswith("msgs.") and name.endswith(".dat")):
        return None
    mid = name[5:-4]
    if not _SLICE_NAME.fullmatch(mid):
        raise StoreError(f"message log has an invalid name: {name}")
    return int(mid)


def decode_id_seq(data: bytes) -> tuple[int, int] | None:
    """(ID, seqno) of a SubStateUpdate/SubStateDelete payload made of fields
    1 and 2 only; None when anything else is in it (the caller then uses
    the full protobuf decoder)."""
    i, n = 0, len(data)
    vals = [0, 0, 0]
    while i < n:
        tag = data[i]
        i += 1
        if tag != 8 and tag != 16:
            return None
        v = 0
        shift = 0
        while True:
            if i >= n or shift > 63:
                return None
            b = data[i]
            i += 1
            v |= (b & 0x7F) << shift
            if b < 0x80:
                break
            shift += 7
        vals[tag >> 3] = v & 0xFFFFFFFFFFFFFFFF
    return vals[1], vals[2]

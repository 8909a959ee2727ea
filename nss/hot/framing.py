"""The FILE store's record framing, in Python: the header words, Go's
CRC-32 with a configurable polynomial, and the SubStateUpdate payload of the
subscription records.

``nss.stores.file.records`` (the rest of the FILE format) and the compiled
hot path's Python twin (``nss.hot.pure``) both build on it; it lives here,
apart from the store, so that the hot path imports no store module.
All integers are little-endian, as in the Go code.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

from nss.pb.wire import encode_varint

IEEE_POLY = 0xEDB88320

REC_HDR = struct.Struct("<II")
IDX_BODY = struct.Struct("<QQqI")  # the 28 bytes covered by the index CRC
U32 = struct.Struct("<I")

CrcFunc = Callable[[bytes | bytearray | memoryview], int]


def make_crc(poly: int) -> CrcFunc:
    """CRC-32 over a buffer with Go's ``crc32.MakeTable(poly)`` semantics.

    The default (IEEE, reflected 0xEDB88320) is zlib's, which is C speed;
    other polynomials get a table-driven pure Python version, slow but only
    used by people who changed ``file_crc_poly``."""
    if poly == IEEE_POLY:
        return zlib.crc32
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    tab = tuple(table)

    def crc(data: bytes | bytearray | memoryview) -> int:
        c = 0xFFFFFFFF
        for b in bytes(data):
            c = tab[(c ^ b) & 0xFF] ^ (c >> 8)
        return c ^ 0xFFFFFFFF

    return crc


def encode_id_seq(sub_id: int, seq: int) -> bytes:
    """``SubStateUpdate{ID, seqno}`` (or ``SubStateDelete{ID}`` with seq 0)
    exactly as gogo-protobuf marshals it: zero fields are omitted."""
    out = b""
    if sub_id:
        out = b"\x08" + encode_varint(sub_id) if sub_id > 0x7F else bytes((8, sub_id))
    if seq:
        out += b"\x10" + encode_varint(seq) if seq > 0x7F else bytes((16, seq))
    return out

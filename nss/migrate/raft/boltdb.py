"""A minimal read-only reader of BoltDB files (bbolt, the store hashicorp/raft
logs of the Go server live in), from bbolt's documented page layout.

Only what an import needs: pick the newest valid meta page, walk a bucket's
B+tree in key order, read nested buckets (including inline ones). No
writes, no freelist, no locking: the file belongs to a stopped Go server.
No well-kept Python package reads bbolt files, hence this small one.

Layout (little-endian): every page starts with a 16-byte header (id u64,
flags u16, count u16, overflow u32); a page spans ``overflow + 1`` page
sizes. Pages 0 and 1 are meta pages (magic, version, page size, flags,
root bucket {root pgid, sequence}, freelist pgid, high-water pgid, txid,
FNV-1a 64 checksum of the fields before it). Branch elements are
{pos u32, ksize u32, pgid u64}, leaf elements {flags u32, pos u32, ksize
u32, vsize u32}, ``pos`` counted from the element itself. A leaf value
flagged as a bucket starts with {root pgid u64, sequence u64}; root 0 means
an inline bucket whose page follows that header in the value.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator

MAGIC = 0xED0CDAED
VERSION = 2
PAGE_HEADER = 16
ELEM_SIZE = 16
BRANCH_PAGE = 0x01
LEAF_PAGE = 0x02
META_PAGE = 0x04
BUCKET_LEAF_FLAG = 0x01
_META = struct.Struct("<IIIIQQQQQ")  # magic..txid, then checksum u64
_PAGE = struct.Struct("<QHHI")
_BRANCH = struct.Struct("<IIQ")
_LEAF = struct.Struct("<IIII")
_BUCKET = struct.Struct("<QQ")


class BoltError(Exception):
    """The file is not a bbolt database this reader understands."""


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


class BoltDB:
    """A bbolt file, mapped read-only (as bbolt itself reads it)."""

    def __init__(self, path: str) -> None:
        with open(path, "rb") as f:
            try:
                self.data: bytes | mmap.mmap = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # an empty file cannot be mapped
                self.data = b""
        self.page_size, self.root, self.txid = self._meta()

    def _meta(self) -> tuple[int, int, int]:
        """(page size, root bucket pgid, txid) of the newest valid meta page.

        The page size is not known before a meta page is read: page 0 is at
        offset 0, page 1 at the size page 0 declares (or, if page 0 is torn,
        at the usual sizes)."""
        found: list[tuple[int, int, int]] = []
        offsets = [0]
        if len(self.data) >= PAGE_HEADER + _META.size + 8:
            magic, _, psize = struct.unpack_from("<III", self.data, PAGE_HEADER)
            offsets.append(psize if magic == MAGIC and psize else 4096)
        for off in offsets:
            m = self._read_meta(off)
            if m is not None:
                found.append(m)
        if not found:
            raise BoltError("not a BoltDB file (no valid meta page)")
        return max(found, key=lambda m: m[2])

    def _read_meta(self, off: int) -> tuple[int, int, int] | None:
        end = off + PAGE_HEADER + _META.size + 8
        if end > len(self.data):
            return None
        _, flags, _, _ = _PAGE.unpack_from(self.data, off)
        if not flags & META_PAGE:
            return None
        body = off + PAGE_HEADER
        magic, version, psize, _, root, _, _, _, txid = _META.unpack_from(self.data, body)
        (checksum,) = struct.unpack_from("<Q", self.data, body + _META.size)
        if magic != MAGIC or version != VERSION:
            return None
        if fnv1a64(self.data[body : body + _META.size]) != checksum:
            return None
        return psize, root, txid

    # -- pages ------------------------------------------------------------------

    def _page(self, pgid: int) -> tuple[bytes | mmap.mmap, int]:
        off = pgid * self.page_size
        if off + PAGE_HEADER > len(self.data):
            raise BoltError(f"page {pgid} is past the end of the file")
        return self.data, off

    def _walk(self, buf: bytes | mmap.mmap, off: int) -> Iterator[tuple[bytes, bytes, int]]:
        """(key, value, leaf flags) of the tree rooted at the page at
        ``buf[off:]``, in key order."""
        _, flags, count, _ = _PAGE.unpack_from(buf, off)
        base = off + PAGE_HEADER
        if flags & LEAF_PAGE:
            for i in range(count):
                e = base + i * ELEM_SIZE
                lflags, pos, ksize, vsize = _LEAF.unpack_from(buf, e)
                k = e + pos
                yield bytes(buf[k : k + ksize]), bytes(buf[k + ksize : k + ksize + vsize]), lflags
        elif flags & BRANCH_PAGE:
            for i in range(count):
                _, _, child = _BRANCH.unpack_from(buf, base + i * ELEM_SIZE)
                cbuf, coff = self._page(child)
                yield from self._walk(cbuf, coff)
        else:
            raise BoltError(f"unexpected page type 0x{flags:02x} at offset {off}")

    def _bucket_items(self, value: bytes) -> Iterator[tuple[bytes, bytes, int]]:
        root, _ = _BUCKET.unpack_from(value, 0)
        if root == 0:  # inline bucket: its page follows the header
            yield from self._walk(value, _BUCKET.size)
        else:
            buf, off = self._page(root)
            yield from self._walk(buf, off)

    # -- buckets ----------------------------------------------------------------

    def buckets(self) -> list[bytes]:
        """Names of the top-level buckets."""
        buf, off = self._page(self.root)
        return [k for k, _, f in self._walk(buf, off) if f & BUCKET_LEAF_FLAG]

    def items(self, *path: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Key/value pairs (nested buckets left out) of the bucket at
        ``path``, in key order. A missing bucket yields nothing."""
        buf, off = self._page(self.root)
        it = self._walk(buf, off)
        for i, name in enumerate(path):
            value = None
            for k, v, f in it:
                if k == name and f & BUCKET_LEAF_FLAG:
                    value = v
                    break
            if value is None:
                return
            it = self._bucket_items(value)
            if i == len(path) - 1:
                for k, v, f in it:
                    if not f & BUCKET_LEAF_FLAG:
                        yield k, v

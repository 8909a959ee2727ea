"""subs.dat pending/ack records: encoded a batch at a time, byte-for-byte
what Go writes, in the order of the calls; fragmentation checked once per
flush instead of on every ack.

The expected bytes come from a varint writer and the record framing of
stores.md §3.2/§3.5 written here, not from the store's encoder."""

from __future__ import annotations

import struct
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from nss.options import FileOptions, StoreLimits
from nss.pb import spb_pb2 as spb
from nss.stores.file import FileStore
from nss.stores.file.subs import FileSubStore

OPTS = FileOptions(do_sync=False)
NEW, DEL, ACK, MSG = 1, 3, 4, 5
# every varint length boundary of a sequence up to 2^35, and beyond
SEQS = [1, 0x7F, 0x80, 0x3FFF, 0x4000, 0x1FFFFF, 0x200000, 0xFFFFFFF, 0x10000000, 2**35 + 3]


def _varint(n: int) -> bytes:
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def _id_seq(sid: int, seq: int) -> bytes:
    return b"\x08" + _varint(sid) + (b"\x10" + _varint(seq) if seq else b"")


def _records(path: Path) -> list[tuple[int, bytes]]:
    data = path.read_bytes()
    assert data[:4] == b"\x01\x00\x00\x00"
    out, off = [], 4
    while off < len(data):
        word, crc = struct.unpack_from("<II", data, off)
        payload = data[off + 8 : off + 8 + (word & 0xFFFFFF)]
        assert zlib.crc32(payload) == crc
        out.append((word >> 24, payload))
        off += 8 + len(payload)
    return out


def _fresh(root: Path, **opts: object) -> FileStore:
    fs = FileStore(str(root), StoreLimits(), replace(OPTS, **opts))
    assert fs.recover() is None
    fs.init(spb.ServerInfo(ClusterID="test"))
    return fs


@pytest.mark.parametrize("buffer_size", [0, 2 * 1024 * 1024])
async def test_pending_and_ack_records_are_go_bytes_in_call_order(
    tmp_path: Path, buffer_size: int
) -> None:
    root = tmp_path / "s"
    fs = _fresh(root, buffer_size=buffer_size)
    cs = fs.create_channel("c")
    subs = [spb.SubState(clientID=f"c{i}", inbox="in") for i in range(130)]
    for s in subs:
        cs.subs.create_sub(s)
    small, big = subs[0].ID, subs[-1].ID  # a 1-byte and a 2-byte ID varint
    assert big > 0x7F
    expected: list[tuple[int, bytes]] = [(NEW, s.SerializeToString()) for s in subs]
    for sid in (small, big):
        for seq in SEQS:
            cs.subs.add_seq_pending(sid, seq)
            expected.append((MSG, _id_seq(sid, seq)))
    for seq in SEQS[::2]:
        cs.subs.ack_seq_pending(big, seq)
        expected.append((ACK, _id_seq(big, seq)))
    # a subscription record in the middle stays between the records around it
    late = spb.SubState(clientID="late", inbox="in")
    cs.subs.create_sub(late)
    expected.append((NEW, late.SerializeToString()))
    cs.subs.add_seq_pending(late.ID, 7)
    cs.subs.ack_seq_pending(small, 1)
    cs.subs.delete_sub(subs[1].ID)
    cs.subs.add_seq_pending(small, 9)
    expected += [
        (MSG, _id_seq(late.ID, 7)),
        (ACK, _id_seq(small, 1)),
        (DEL, _id_seq(subs[1].ID, 0)),
        (MSG, _id_seq(small, 9)),
    ]
    await cs.subs.flush()
    assert _records(root / "c" / "subs.dat") == expected
    await fs.close()

    fs = FileStore(str(root), StoreLimits(), OPTS)
    rs = fs.recover()
    assert rs is not None
    got = {r.sub.ID: (r.pending, r.sub.lastSent) for r in rs.channels["c"].subscriptions}
    assert got[small] == ({*SEQS[1:], 9}, SEQS[-1])
    assert got[big] == (set(SEQS[1::2]), SEQS[-1])
    assert got[late.ID] == ({7}, 7)
    assert subs[1].ID not in got
    fs.close_sync()


async def test_acks_check_fragmentation_once_per_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compaction check ran on every ack (5 % of the FILE async profile);
    once per flushed batch is enough, and compaction still happens."""
    checks = 0
    real = FileSubStore._should_compact

    def counting(self: FileSubStore) -> bool:
        nonlocal checks
        checks += 1
        return real(self)

    monkeypatch.setattr(FileSubStore, "_should_compact", counting)
    root = tmp_path / "s"
    fs = _fresh(root, compact_min_size=0, compact_frag=50, compact_interval=1)
    cs = fs.create_channel("c")
    sub = spb.SubState(clientID="k", inbox="in")
    cs.subs.create_sub(sub)
    for seq in range(1, 1001):
        cs.subs.add_seq_pending(sub.ID, seq)
    for seq in range(1, 1000):
        cs.subs.ack_seq_pending(sub.ID, seq)
    await cs.subs.flush()
    assert checks == 1
    # 999 acks of 1001 records: compacted to the subscription and its one pending
    sub.lastSent = 1000
    assert _records(root / "c" / "subs.dat") == [
        (NEW, sub.SerializeToString()),
        (MSG, _id_seq(sub.ID, 1000)),
    ]
    await cs.subs.flush()  # nothing acked since: no check
    assert checks == 1
    await fs.close()

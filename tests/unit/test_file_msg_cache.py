"""The FILE message cache gives back written messages, oldest first, and
keeps those not written yet (the only copy) whatever it is asked."""

from __future__ import annotations

from pathlib import Path

from nss.options import FileOptions, StoreLimits
from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb
from nss.stores.file import FileStore


def _put(ms, seq: int) -> None:
    ts = seq * 1_000_000_000
    ms.store(
        seq,
        ts,
        pb.MsgProto(sequence=seq, subject="c", data=b"d" * 100, timestamp=ts).SerializeToString(),
    )


async def test_cache_drop_keeps_unwritten_messages_and_order(tmp_path: Path) -> None:
    fs = FileStore(str(tmp_path / "s"), StoreLimits(), FileOptions(do_sync=False))
    assert fs.recover() is None
    fs.init(spb.ServerInfo(ClusterID="test"))
    ms = fs.create_channel("c").msgs
    for s in range(1, 11):
        _put(ms, s)
    await ms.flush()  # 1..10 written
    for s in range(11, 16):
        _put(ms, s)  # 11..15 buffered only
    ms._cache_drop(0)
    assert list(ms._cache) == [11, 12, 13, 14, 15]
    assert ms._cache_bytes == sum(len(v) for v in ms._cache.values())
    for s in range(1, 16):
        assert pb.MsgProto.FromString(ms.lookup(s)).sequence == s
    await ms.flush()
    ms._cache_drop(0)
    assert not ms._cache and ms._cache_bytes == 0
    await fs.close()

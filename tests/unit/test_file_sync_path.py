"""The FILE store's synchronous commit: which files are fsynced, on which
thread, and what a power cut that loses un-fsynced index pages leaves.

A spy wraps the real ``os.fsync`` to record the file and thread of every
call (the fsyncs still happen)."""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from nss.options import FileOptions, StoreLimits
from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb
from nss.stores.file import FileStore

SYNC = FileOptions(do_sync=True)


def _info() -> spb.ServerInfo:
    return spb.ServerInfo(ClusterID="test", Discovery="_STAN.discover.test", Publish="_STAN.pub.x")


def _msg(seq: int) -> bytes:
    return pb.MsgProto(
        sequence=seq, subject="foo", data=b"m%d" % seq, timestamp=seq * 1_000_000_000
    ).SerializeToString()


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """(file name, ran on the main thread) of every fsync from now on."""
    calls: list[tuple[str, bool]] = []
    real = os.fsync

    def spy(fd: int) -> None:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        calls.append((name, threading.current_thread() is threading.main_thread()))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return calls


def _fresh(root: Path, **opts: object) -> FileStore:
    fs = FileStore(str(root), StoreLimits(), replace(SYNC, **opts))
    assert fs.recover() is None
    fs.init(_info())
    return fs


async def test_sync_commit_fsyncs_dat_and_idx_on_the_loop(
    tmp_path: Path, fsyncs: list[tuple[str, bool]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A synchronous publish waits for one commit: no worker thread is
    woken for it (the hand-off cost ~190 us a message), no descriptor is
    duplicated for it, and the index is made durable with the data (the Go
    server trusts a lagging index)."""
    fs = _fresh(tmp_path / "s")
    cs = fs.create_channel("foo")
    dups: list[int] = []
    real_dup = os.dup

    def dup(fd: int) -> int:
        dups.append(fd)
        return real_dup(fd)

    monkeypatch.setattr(os, "dup", dup)
    fsyncs.clear()
    for seq in (1, 2, 3):
        cs.msgs.store(seq, seq * 1_000_000_000, _msg(seq))
        await cs.msgs.flush()
        assert sorted(fsyncs) == [("msgs.1.dat", True), ("msgs.1.idx", True)]
        fsyncs.clear()
    assert dups == []
    await fs.close()


async def test_sync_commit_after_a_slice_roll_fsyncs_both_slices(
    tmp_path: Path, fsyncs: list[tuple[str, bool]]
) -> None:
    """A batch that filled a slice and started the next one makes both
    durable before it is acknowledged."""
    fs = _fresh(tmp_path / "s", slice_max_msgs=2)
    cs = fs.create_channel("foo")
    fsyncs.clear()
    for seq in (1, 2, 3):
        cs.msgs.store(seq, seq * 1_000_000_000, _msg(seq))
    await cs.msgs.flush()
    assert sorted(fsyncs) == [
        ("msgs.1.dat", True),
        ("msgs.1.idx", True),
        ("msgs.2.dat", True),
        ("msgs.2.idx", True),
    ]
    await fs.close()


async def test_subscription_record_fsync_runs_on_the_loop(
    tmp_path: Path, fsyncs: list[tuple[str, bool]]
) -> None:
    fs = _fresh(tmp_path / "s")
    cs = fs.create_channel("foo")
    fsyncs.clear()
    sub = spb.SubState(clientID="c1", inbox="in", ackInbox="ack", durableName="dur")
    cs.subs.create_sub(sub)
    await cs.subs.flush()
    assert fsyncs == [("subs.dat", True)]
    await fs.close()


async def test_auto_sync_fsyncs_on_a_worker_thread(
    tmp_path: Path, fsyncs: list[tuple[str, bool]]
) -> None:
    """The periodic auto-sync of a store without ``file_sync`` must not
    stall the loop for every active channel's disk round trips."""
    fs = _fresh(tmp_path / "s", do_sync=False)
    cs = fs.create_channel("foo")
    cs.msgs.store(1, 1_000_000_000, _msg(1))
    await cs.msgs.flush()
    fsyncs.clear()
    await cs.msgs.auto_sync()
    assert sorted(fsyncs) == [("msgs.1.dat", False), ("msgs.1.idx", False)]
    await fs.close()


async def test_power_cut_losing_index_pages_is_recovered_from_the_data(tmp_path: Path) -> None:
    """What a power cut leaves when index pages past the last fsync were
    lost, in its three shapes (file cut at a record boundary, cut inside a
    record, zero-filled tail): recovery indexes every message of ``.dat``."""
    root = tmp_path / "s"
    fs = _fresh(root)
    cs = fs.create_channel("foo")
    for seq in range(1, 101):
        cs.msgs.store(seq, seq * 1_000_000_000, _msg(seq))
    await cs.msgs.flush()
    await fs.close()
    idx = root / "foo" / "msgs.1.idx"
    whole = idx.read_bytes()
    damages = {
        "cut at a record": whole[: 4 + 60 * 32],
        "cut inside a record": whole[: 4 + 60 * 32 + 13],
        "zero-filled tail": whole[: 4 + 60 * 32] + bytes(len(whole) - 4 - 60 * 32),
    }
    for what, data in damages.items():
        idx.write_bytes(data)
        fs = FileStore(str(root), StoreLimits(), SYNC)
        rs = fs.recover()
        assert rs is not None, what
        ms = rs.channels["foo"].channel.msgs
        assert ms.state()[0] == 100, what
        assert [pb.MsgProto.FromString(ms.lookup(s)).data for s in (60, 61, 100)] == [
            b"m60",
            b"m61",
            b"m100",
        ], what
        await fs.close()
        assert idx.read_bytes() == whole, what

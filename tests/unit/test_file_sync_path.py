"""The FILE store's synchronous commit: which files are fsynced, on which
thread, and what a power cut that loses un-fsynced index pages leaves.

A spy wraps the real ``os.fsync`` to record the file and thread of every
call (the fsyncs still happen): "loop" is the test's (the event loop's)
thread, "nss-fsync-pair" the one that fsyncs a slice's ``.idx`` while the
loop fsyncs its ``.dat``, "nss-fsync_N" the auto-sync's executor."""

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
from nss.stores.file.diskio import PairedFsync

SYNC = FileOptions(do_sync=True)


def _info() -> spb.ServerInfo:
    return spb.ServerInfo(ClusterID="test", Discovery="_STAN.discover.test", Publish="_STAN.pub.x")


def _msg(seq: int) -> bytes:
    return pb.MsgProto(
        sequence=seq, subject="foo", data=b"m%d" % seq, timestamp=seq * 1_000_000_000
    ).SerializeToString()


Calls = list[tuple[str, str]]


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """(file name, thread) of every fsync from now on."""
    calls: Calls = []
    real = os.fsync

    def spy(fd: int) -> None:
        name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        t = threading.current_thread()
        calls.append((name, "loop" if t is threading.main_thread() else t.name))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return calls


def _executor_threads() -> set[int | None]:
    return {t.ident for t in threading.enumerate() if t.name.startswith("nss-fsync_")}


def _fresh(root: Path, **opts: object) -> FileStore:
    fs = FileStore(str(root), StoreLimits(), replace(SYNC, **opts))
    assert fs.recover() is None
    fs.init(_info())
    return fs


async def test_sync_commit_fsyncs_dat_and_idx_on_the_loop(
    tmp_path: Path, fsyncs: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A synchronous publish waits for one commit: the index is made
    durable with the data (the Go server trusts a lagging index), both at
    once (back to back, the second fsync costs a second journal commit),
    without an executor future and loop wake-up (~190 us a message) and
    without duplicating a descriptor."""
    fs = _fresh(tmp_path / "s")
    cs = fs.create_channel("foo")
    dups: list[int] = []
    real_dup = os.dup

    def dup(fd: int) -> int:
        dups.append(fd)
        return real_dup(fd)

    monkeypatch.setattr(os, "dup", dup)
    workers_before = _executor_threads()
    fsyncs.clear()
    for seq in (1, 2, 3):
        cs.msgs.store(seq, seq * 1_000_000_000, _msg(seq))
        await cs.msgs.flush()
        assert sorted(fsyncs) == [("msgs.1.dat", "loop"), ("msgs.1.idx", "nss-fsync-pair")]
        fsyncs.clear()
    assert dups == []
    assert _executor_threads() <= workers_before
    await fs.close()


async def test_sync_commit_after_a_slice_roll_fsyncs_both_slices(
    tmp_path: Path, fsyncs: Calls
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
        ("msgs.1.dat", "loop"),
        ("msgs.1.idx", "loop"),
        ("msgs.2.dat", "loop"),
        ("msgs.2.idx", "nss-fsync-pair"),
    ]
    await fs.close()


async def test_subscription_record_fsync_runs_on_the_loop(
    tmp_path: Path, fsyncs: Calls
) -> None:
    fs = _fresh(tmp_path / "s")
    cs = fs.create_channel("foo")
    fsyncs.clear()
    sub = spb.SubState(clientID="c1", inbox="in", ackInbox="ack", durableName="dur")
    cs.subs.create_sub(sub)
    await cs.subs.flush()
    assert fsyncs == [("subs.dat", "loop")]
    await fs.close()


async def test_auto_sync_fsyncs_on_a_worker_thread(
    tmp_path: Path, fsyncs: Calls
) -> None:
    """The periodic auto-sync of a store without ``file_sync`` must not
    stall the loop for every active channel's disk round trips."""
    fs = _fresh(tmp_path / "s", do_sync=False)
    cs = fs.create_channel("foo")
    cs.msgs.store(1, 1_000_000_000, _msg(1))
    await cs.msgs.flush()
    fsyncs.clear()
    await cs.msgs.auto_sync()
    assert sorted(f for f, _ in fsyncs) == ["msgs.1.dat", "msgs.1.idx"]
    assert all(t.startswith("nss-fsync_") for _, t in fsyncs)
    await fs.close()


def test_paired_fsync_reports_either_error_and_keeps_working(tmp_path: Path) -> None:
    """A failing fsync on either side is raised to the caller, never leaves
    it waiting, and the next pair works."""
    good = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT, 0o600)
    r, w = os.pipe()  # fsync of a pipe: EINVAL
    pf = PairedFsync()
    try:
        for here, there in ((good, r), (r, good), (r, w)):
            with pytest.raises(OSError):
                pf.fsync_pair(here, there)
        pf.fsync_pair(good, good)
    finally:
        pf.close()
        for fd in (good, r, w):
            os.close(fd)
    assert not [t for t in threading.enumerate() if t.name == "nss-fsync-pair"]


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

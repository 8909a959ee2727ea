"""FT on a shared FILE store: what its POSIX lock (held until the process
dies, checked by the active) means for a group."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from procs import READY_LINE, NssProcess
from stanclient import StanClient

from nss.pb import protocol_pb2 as pb

pytestmark = pytest.mark.parametrize("backend", ["FILE"], indirect=True)


async def test_standby_is_silent_and_never_locks_a_held_store(
    group: Any, pair: tuple[NssProcess, NssProcess]
) -> None:
    a, b = pair
    # a frozen active keeps its POSIX lock: the standby must not take over
    a.proc.send_signal(signal.SIGSTOP)
    try:
        b.wait_for_line("ft: unable to get store lock at this time", timeout=10)
        assert "Server is active" not in b.log_text()
    finally:
        a.proc.send_signal(signal.SIGCONT)
    c = await StanClient.connect(group.nats.url, "still-a")
    await c.publish("x", b"1")
    await c.close()


async def test_active_exits_without_writing_when_its_lock_file_is_replaced(group: Any) -> None:
    """Someone replaced .rootdir.lck (another host could now lock the new
    file): the active must stop at once, exit non-zero and write nothing."""
    a = group()
    a.wait_for_line(READY_LINE)
    c = await StanClient.connect(group.nats.url, "w")
    await c.publish("x", b"before")
    root = Path(group.backend.dir)
    lock = root / ".rootdir.lck"
    lock.unlink()
    lock.write_bytes(b"")
    a.wait_for_line("lost store lock, aborting", timeout=5)
    assert a.proc.wait(10) != 0
    sizes = {p: p.stat().st_size for p in root.rglob("*") if p.is_file()}
    # nothing the deposed active still had queued reaches the disk
    fut = c.publish_async("x", b"after")
    await asyncio.sleep(0.3)
    assert not fut.done()
    assert {p: p.stat().st_size for p in root.rglob("*") if p.is_file()} == sizes
    assert os.path.exists(lock)
    await c.drop()


async def test_partitioning_with_ft(group: Any, tmp_path: Path) -> None:
    """Each FT group serves one partition: the channel-list exchange runs on
    the active only, so its own standby never conflicts with it."""
    conf = tmp_path / "part.conf"
    conf.write_text(
        'streaming { partitioning: true, store_limits { channels { "orders.>": {} } } }\n'
    )
    a = group("-sc", str(conf))
    a.wait_for_line(READY_LINE)
    b = group("-sc", str(conf))
    b.wait_for_line("Starting in standby mode")
    c = await StanClient.connect(group.nats.url, "p", ping_interval=1)
    await c.publish("orders.1", b"x")
    a.stop(signal.SIGKILL)
    b.wait_for_line(READY_LINE, timeout=10)
    assert "causes conflict" not in b.log_text()
    await c.publish("orders.1", b"y")
    sub = await c.subscribe("orders.1", start=pb.First)
    assert [m.data for m in await sub.take(2)] == [b"x", b"y"]
    await c.close()

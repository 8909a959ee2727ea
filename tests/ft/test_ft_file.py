"""Active/standby on a shared FILE store, with real processes and SIGKILL."""

from __future__ import annotations

import asyncio
import signal

from procs import READY_LINE
from stanclient import StanClient

from nss.pb import protocol_pb2 as pb

FAST = ("--ft_hb_interval", "100ms", "--ft_hb_missed_interval", "250ms")


async def test_standby_takes_over_after_sigkill(ft_member) -> None:
    a = ft_member(*FAST)
    a.wait_for_line("Starting in standby mode")
    a.wait_for_line("Server is active")
    a.wait_for_line(READY_LINE)
    b = ft_member(*FAST)
    b.wait_for_line("Starting in standby mode")

    c = await StanClient.connect(ft_member.nats.url, "client", ping_interval=1)
    sub = await c.subscribe(
        "orders", durable="d", start=pb.First, manual_acks=True, ack_wait=1
    )
    for i in range(20):
        await c.publish("orders", b"%d" % i)
    for m in await sub.take(20):
        if m.sequence <= 10:
            await sub.ack(m)
    await c.nc.flush()
    await asyncio.sleep(0.05)  # let the server take the acks before the kill
    assert "Server is active" not in b.log_text()

    a.stop(signal.SIGKILL)
    b.wait_for_line("Server is active", timeout=10)
    b.wait_for_line(READY_LINE, timeout=10)

    # same connection, same subjects: the new active knows the client
    await c.publish("orders", b"after")
    got = await sub.take(11, timeout=10)
    redelivered = sorted(m.sequence for m in got if m.redelivered)
    assert redelivered == list(range(11, 21))
    assert [m.data for m in got if not m.redelivered] == [b"after"]
    assert await c.ping() == ""
    await c.close()


async def test_standby_is_silent_and_never_locks_a_held_store(ft_member) -> None:
    a = ft_member(*FAST)
    a.wait_for_line(READY_LINE)
    b = ft_member(*FAST)
    b.wait_for_line("Starting in standby mode")
    # a frozen active keeps its POSIX lock: the standby must not take over
    a.proc.send_signal(signal.SIGSTOP)
    try:
        b.wait_for_line("ft: unable to get store lock at this time", timeout=10)
        assert "Server is active" not in b.log_text()
    finally:
        a.proc.send_signal(signal.SIGCONT)
    c = await StanClient.connect(ft_member.nats.url, "still-a")
    await c.publish("x", b"1")
    await c.close()


async def test_graceful_stop_hands_over(ft_member) -> None:
    a = ft_member(*FAST)
    a.wait_for_line(READY_LINE)
    b = ft_member(*FAST)
    b.wait_for_line("Starting in standby mode")
    c = await StanClient.connect(ft_member.nats.url, "c1")
    await c.publish("x", b"kept")
    await c.close()
    assert a.stop(signal.SIGTERM) == 0
    b.wait_for_line(READY_LINE, timeout=10)
    c = await StanClient.connect(ft_member.nats.url, "c2")
    sub = await c.subscribe("x", start=pb.First)
    assert (await sub.next()).data == b"kept"
    await c.close()


def test_memory_store_is_refused_in_ft_mode(ft_member) -> None:
    p = ft_member(store=("-store", "memory"))
    p.wait_for_line("ft: only FILE or SQL stores supported in FT mode")
    assert p.proc.wait(10) == 1


async def test_active_exits_without_writing_when_its_lock_file_is_replaced(ft_member) -> None:
    """Someone replaced .rootdir.lck (another host could now lock the new
    file): the active must stop at once, exit non-zero and write nothing."""
    import os
    from pathlib import Path

    a = ft_member(*FAST)
    a.wait_for_line(READY_LINE)
    c = await StanClient.connect(ft_member.nats.url, "w")
    await c.publish("x", b"before")
    root = Path(ft_member.dir)
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


async def test_partitioning_with_ft(ft_member, tmp_path) -> None:
    """Each FT group serves one partition: the channel-list exchange runs on
    the active only, so its own standby never conflicts with it."""
    conf = tmp_path / "part.conf"
    conf.write_text(
        'streaming { partitioning: true, store_limits { channels { "orders.>": {} } } }\n'
    )
    a = ft_member(*FAST, "-sc", str(conf))
    a.wait_for_line(READY_LINE)
    b = ft_member(*FAST, "-sc", str(conf))
    b.wait_for_line("Starting in standby mode")
    c = await StanClient.connect(ft_member.nats.url, "p", ping_interval=1)
    await c.publish("orders.1", b"x")
    a.stop(signal.SIGKILL)
    b.wait_for_line(READY_LINE, timeout=10)
    assert "causes conflict" not in b.log_text()
    await c.publish("orders.1", b"y")
    sub = await c.subscribe("orders.1", start=pb.First)
    assert [m.data for m in await sub.take(2)] == [b"x", b"y"]
    await c.close()

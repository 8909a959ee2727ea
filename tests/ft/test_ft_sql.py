"""Active/standby on a shared SQL store (PostgreSQL), with real processes.

Unlike the FILE store's POSIX lock, the SQL lock is a lease (StoreLock row,
ticked every second): a frozen active loses it after the steal window
(1.5 s by default), and fencing must then keep it from writing anything
when it wakes up.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
from procs import READY_LINE
from stanclient import StanClient

from nss.pb import protocol_pb2 as pb

pytest_plugins = ["pg"]

FAST = ("--ft_hb_interval", "100ms", "--ft_hb_missed_interval", "250ms")


@pytest.fixture
def sql_member(ft_member: Any, pg_server: Any, request: pytest.FixtureRequest) -> Any:
    dsn = pg_server.create_db("nss_ft_" + request.node.name.lower()[:40])

    def start(*extra: str) -> Any:
        p = ft_member(
            *FAST,
            *extra,
            store=("-store", "sql", "--sql_driver", "postgres", "--sql_source", dsn),
        )
        return p

    start.nats = ft_member.nats  # type: ignore[attr-defined]
    start.dsn = dsn  # type: ignore[attr-defined]
    return start


def _ready(p: Any) -> None:
    p.wait_for_line(READY_LINE, timeout=15)


async def test_sql_standby_takes_over_after_sigkill(sql_member: Any) -> None:
    a = sql_member()
    _ready(a)
    b = sql_member()
    b.wait_for_line("Starting in standby mode")
    c = await StanClient.connect(sql_member.nats.url, "client", ping_interval=1)
    sub = await c.subscribe("orders", durable="d", start=pb.First, manual_acks=True, ack_wait=1)
    for i in range(20):
        await c.publish("orders", b"%d" % i)
    for m in await sub.take(20):
        if m.sequence <= 10:
            await sub.ack(m)
    await c.nc.flush()
    await asyncio.sleep(0.5)  # acks are committed within the idle flush delay
    a.stop(signal.SIGKILL)
    b.wait_for_line("Server is active", timeout=20)
    b.wait_for_line(READY_LINE, timeout=10)
    await c.publish("orders", b"after")
    got = await sub.take(11, timeout=10)
    assert sorted(m.sequence for m in got if m.redelivered) == list(range(11, 21))
    assert [m.data for m in got if not m.redelivered] == [b"after"]
    await c.close()


async def test_sql_frozen_active_is_deposed_and_fenced(sql_member: Any) -> None:
    a = sql_member()
    _ready(a)
    b = sql_member()
    b.wait_for_line("Starting in standby mode")
    c = await StanClient.connect(sql_member.nats.url, "c1", ping_interval=1, ping_max_out=100)
    await c.publish("x", b"1")
    a.proc.send_signal(signal.SIGSTOP)
    try:
        # the lease is not renewed: the standby steals it
        b.wait_for_line("Server is active", timeout=20)
        b.wait_for_line(READY_LINE, timeout=10)
    finally:
        a.proc.send_signal(signal.SIGCONT)
    # the old active finds it lost the lock and stops without writing
    assert a.proc.wait(15) != 0
    c2 = await StanClient.connect(sql_member.nats.url, "c2")
    await c2.publish("x", b"2")
    sub = await c2.subscribe("x", start=pb.First)
    assert [m.data for m in await sub.take(2)] == [b"1", b"2"]
    await sub.expect_nothing(0.3)
    await c2.close()


async def test_sql_graceful_stop_hands_over(sql_member: Any) -> None:
    a = sql_member()
    _ready(a)
    b = sql_member()
    b.wait_for_line("Starting in standby mode")
    c = await StanClient.connect(sql_member.nats.url, "c1")
    await c.publish("x", b"kept")
    await c.close()
    assert a.stop(signal.SIGTERM) == 0
    b.wait_for_line(READY_LINE, timeout=10)
    c = await StanClient.connect(sql_member.nats.url, "c2")
    sub = await c.subscribe("x", start=pb.First)
    assert (await sub.next()).data == b"kept"
    await c.close()


async def test_postgres_restart_under_an_ft_group(sql_member: Any, pg_server: Any) -> None:
    """The database goes away and comes back: publishers get error PubAcks
    meanwhile (not silence), the group serves again by itself, and nothing
    acknowledged is lost."""
    a = sql_member()
    _ready(a)
    b = sql_member()
    b.wait_for_line("Starting in standby mode")
    c = await StanClient.connect(sql_member.nats.url, "pg-restart", ping_interval=1)
    for i in range(10):
        await c.publish("ch", b"%d" % i)
    pg_server.stop()
    try:
        err = await asyncio.wait_for(c.publish_async("ch", b"during"), 10)
        assert err  # an error PubAck, not a timeout
    finally:
        pg_server.start()
    acked = [b"%d" % i for i in range(10)]
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        err = await asyncio.wait_for(c.publish_async("ch", b"back"), 10)
        if not err:
            acked.append(b"back")
            break
        assert asyncio.get_running_loop().time() < deadline, err
        await asyncio.sleep(0.2)
    sub = await c.subscribe("ch", start=pb.First)
    got: list[bytes] = []
    while not got or got[-1] != b"back":
        got.append((await sub.next(timeout=10)).data)
    # "during" may have been stored later (at-least-once); every acked one is there once
    assert [d for d in got if d != b"during"] == acked
    await c.close()

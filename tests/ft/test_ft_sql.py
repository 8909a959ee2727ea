"""FT on a shared SQL store (PostgreSQL), with real processes.

Unlike the FILE store's POSIX lock, the SQL lock is a lease (StoreLock row,
ticked every heartbeat): a frozen active loses it after the steal window
(1.5 s by default), and fencing must then keep it from writing anything
when it wakes up.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import pytest
from procs import READY_LINE, NssProcess
from stanclient import StanClient

from nss.pb import protocol_pb2 as pb

pytest_plugins = ["pg"]
pytestmark = pytest.mark.parametrize("backend", ["SQL"], indirect=True)


async def test_sql_frozen_active_is_deposed_and_fenced(
    group: Any, pair: tuple[NssProcess, NssProcess]
) -> None:
    a, b = pair
    c = await StanClient.connect(group.nats.url, "c1", ping_interval=1, ping_max_out=100)
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
    c2 = await StanClient.connect(group.nats.url, "c2")
    await c2.publish("x", b"2")
    sub = await c2.subscribe("x", start=pb.First)
    assert [m.data for m in await sub.take(2)] == [b"1", b"2"]
    await sub.expect_nothing(0.3)
    await c2.close()


async def test_active_frozen_inside_a_transaction_is_deposed(
    group: Any, pair: tuple[NssProcess, NssProcess], pg_server: Any
) -> None:
    """The active freezes between two statements of a transaction, so its
    database session holds the StoreLock row locked. A standby that just
    waited for the row would wait as long as the frozen process lives; the
    database must end that session (the active's sessions may not sit idle
    in a transaction for more than 5 s here) and the standby take over.
    Nothing acknowledged is lost."""
    a, b = pair
    dbname = group.backend.dsn.split("dbname=")[1].split()[0]
    in_tx = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND state LIKE 'idle in transaction%'"
    )
    c = await StanClient.connect(group.nats.url, "c1", ping_interval=1, ping_max_out=100)
    acked: list[bytes] = []

    async def publish() -> None:
        # write transactions on the active all the time, so that a stop
        # lands inside one soon
        n = 0
        while True:
            futs = [c.publish_async("x", b"%d" % (n + i)) for i in range(20)]
            for i, f in enumerate(futs):
                try:
                    err = await asyncio.wait_for(f, 2)
                except TimeoutError:
                    return
                if err:
                    return
                acked.append(b"%d" % (n + i))
            n += 20

    pub = asyncio.create_task(publish())
    deadline = time.monotonic() + 30
    while True:
        a.proc.send_signal(signal.SIGSTOP)
        # twice: a stopped process stays in its transaction, the standby's
        # own moments between two statements pass
        held = (await asyncio.to_thread(pg_server.query, in_tx, dbname))[0][0]
        if held:
            await asyncio.sleep(0.02)
            if (await asyncio.to_thread(pg_server.query, in_tx, dbname))[0][0]:
                break
        a.proc.send_signal(signal.SIGCONT)
        assert time.monotonic() < deadline, "the active was never stopped inside a transaction"
        await asyncio.sleep(0.005)
    try:
        await asyncio.to_thread(b.wait_for_line, "Server is active", 20)
        await asyncio.to_thread(b.wait_for_line, READY_LINE, 10)
    finally:
        a.proc.send_signal(signal.SIGCONT)
    # the old active wakes up, may still beat once as an active before its
    # check fails, and stops; its successor stays (Go would stop both)
    assert await asyncio.to_thread(a.proc.wait, 15) != 0
    a.wait_for_line("ft: lost store lock, aborting", timeout=1)
    pub.cancel()
    await c.drop()
    assert b.proc.poll() is None
    c2 = await StanClient.connect(group.nats.url, "c2")
    sub = await c2.subscribe("x", start=pb.First)
    got: list[bytes] = []
    while len(got) < len(acked):
        got.append((await sub.next(timeout=10)).data)
    # every acknowledged message is there, in order (unacknowledged ones of
    # the frozen transaction were rolled back with its session)
    assert got[: len(acked)] == acked
    await c2.close()


async def test_sql_deposed_active_stops_at_its_first_fenced_write(
    group: Any, pg_server: Any
) -> None:
    """Another server took the StoreLock row: the active's next commit is
    fenced, and the store's lock-lost notice stops it at once -- not at its
    next lock check, five seconds away here."""
    a = group("--ft_hb_interval", "5s", "--ft_hb_missed_interval", "6s")
    a.wait_for_line(READY_LINE, timeout=15)
    c = await StanClient.connect(group.nats.url, "c1")
    await c.publish("x", b"1")
    dbname = group.backend.dsn.split("dbname=")[1].split()[0]
    pg_server.admin("UPDATE StoreLock SET id = 'another-server', tick = tick + 1", dbname)
    t0 = time.monotonic()
    fut = c.publish_async("x", b"2")
    await c.nc.flush()
    assert await asyncio.to_thread(a.proc.wait, 10) != 0
    assert time.monotonic() - t0 < 2.5, "stopped only at the next lock check"
    a.wait_for_line("ft: lost store lock, aborting", timeout=1)
    assert not fut.done() or fut.result()  # refused or unanswered, never acknowledged
    await c.drop()


async def test_postgres_restart_under_an_ft_group(
    group: Any, pair: tuple[NssProcess, NssProcess], pg_server: Any
) -> None:
    """The database goes away and comes back: publishers get error PubAcks
    meanwhile (not silence), the group serves again by itself, and nothing
    acknowledged is lost."""
    c = await StanClient.connect(group.nats.url, "pg-restart", ping_interval=1)
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


async def test_active_stops_when_the_database_lost_its_commits(group: Any, pg_server: Any) -> None:
    """What a promoted asynchronous standby looks like to the active: the
    StoreLock row still names it, with a tick behind the last one it
    committed. The active must stop, saying why, rather than serve over
    the lost messages."""
    a = group()
    a.wait_for_line(READY_LINE, timeout=15)
    c = await StanClient.connect(group.nats.url, "c1")
    await c.publish("x", b"1")
    dbname = group.backend.dsn.split("dbname=")[1].split()[0]
    pg_server.admin("UPDATE StoreLock SET tick = tick - 5", dbname)
    assert await asyncio.to_thread(a.proc.wait, 10) != 0
    line = a.wait_for_line("ft: lost store lock, aborting: sql: the database lost commits", 1)
    assert "StoreLock tick" in line and "not synchronous" in line
    await c.drop()

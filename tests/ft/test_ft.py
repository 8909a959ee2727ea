"""Active/standby on a shared store, with real processes and SIGKILL: the
scenarios every store backend must pass, run once per backend (FILE, SQL).
Backend-specific ones are in test_ft_file.py and test_ft_sql.py."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from procs import READY_LINE, NssProcess
from stanclient import StanClient

from nss.pb import protocol_pb2 as pb

pytest_plugins = ["pg"]


async def test_standby_takes_over_after_sigkill(
    group: Any, pair: tuple[NssProcess, NssProcess]
) -> None:
    a, b = pair
    c = await StanClient.connect(group.nats.url, "client", ping_interval=1)
    sub = await c.subscribe("orders", durable="d", start=pb.First, manual_acks=True, ack_wait=1)
    for i in range(20):
        await c.publish("orders", b"%d" % i)
    for m in await sub.take(20):
        if m.sequence <= 10:
            await sub.ack(m)
    await c.nc.flush()
    await asyncio.sleep(group.backend.ack_settle)  # let the acks reach the store
    assert "Server is active" not in b.log_text()

    a.stop(signal.SIGKILL)
    b.wait_for_line("Server is active", timeout=group.backend.takeover_timeout)
    b.wait_for_line(READY_LINE, timeout=10)

    # same connection, same subjects: the new active knows the client
    await c.publish("orders", b"after")
    got = await sub.take(11, timeout=10)
    redelivered = sorted(m.sequence for m in got if m.redelivered)
    assert redelivered == list(range(11, 21))
    assert [m.data for m in got if not m.redelivered] == [b"after"]
    assert await c.ping() == ""
    await c.close()


async def test_graceful_stop_hands_over(group: Any, pair: tuple[NssProcess, NssProcess]) -> None:
    a, b = pair
    c = await StanClient.connect(group.nats.url, "c1")
    await c.publish("x", b"kept")
    await c.close()
    assert a.stop(signal.SIGTERM) == 0
    b.wait_for_line(READY_LINE, timeout=10)
    c = await StanClient.connect(group.nats.url, "c2")
    sub = await c.subscribe("x", start=pb.First)
    assert (await sub.next()).data == b"kept"
    await c.close()


def test_memory_store_is_refused_in_ft_mode(ft_member: Any) -> None:
    p = ft_member(store=("-store", "memory"))
    p.wait_for_line("ft: only FILE or SQL stores supported in FT mode")
    assert p.proc.wait(10) == 1

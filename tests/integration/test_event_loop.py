"""The event loop nss runs on: uvloop when installed, asyncio's own with
``NSS_UVLOOP=0``. Both serve a FILE store with synchronous publishes, and
both note a stop signal at once and exit 0 (the signal handling differs
between the two loops)."""

from __future__ import annotations

import asyncio
import importlib.util
import signal
from pathlib import Path

import nats
import pytest
from procs import READY_LINE, NssProcess, free_port
from stanclient import StanClient

from nss.pb import protocol_pb2 as pb

LOOPS = [
    pytest.param(
        "uvloop",
        {},
        marks=pytest.mark.skipif(
            importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"
        ),
    ),
    pytest.param("asyncio", {"NSS_UVLOOP": "0"}),
]


@pytest.mark.parametrize(("loop", "env"), LOOPS)
async def test_file_store_sync_publish_on_each_loop(
    tmp_path: Path, loop: str, env: dict[str, str]
) -> None:
    port = free_port()
    d = str(tmp_path / "data")
    args = ["-p", str(port), "-SD", "-store", "file", "-dir", d]
    srv = NssProcess(args, env=env)
    try:
        srv.wait_for_line(READY_LINE)
        assert f"Event loop: {loop}" in srv.log_text()
        url = f"nats://127.0.0.1:{port}"
        c = await StanClient.connect(url, "me")
        for i in range(20):
            await c.publish("foo", b"m%d" % i)
        sub = await c.subscribe("foo", start=pb.First)
        assert [m.data for m in await sub.take(20)] == [b"m%d" % i for i in range(20)]
        req = pb.SubscriptionRequest(
            clientID="me", subject="bar", inbox="_INBOX.x", maxInFlight=1, ackWaitInSecs=30
        ).SerializeToString()
        srv.proc.send_signal(signal.SIGTERM)
        with pytest.raises(
            (
                nats.errors.TimeoutError,
                nats.errors.NoRespondersError,
                nats.errors.ConnectionClosedError,
            )
        ):
            await c.nc.request(c.resp.subRequests, req, timeout=0.5)
        assert await asyncio.to_thread(srv.proc.wait, 10) == 0
        await c.nc.close()
    finally:
        srv.stop()
    # what was acknowledged is there after the restart
    srv = NssProcess(args, env=env)
    try:
        srv.wait_for_line(READY_LINE)
        c = await StanClient.connect(f"nats://127.0.0.1:{port}", "again")
        sub = await c.subscribe("foo", start=pb.First)
        assert [m.sequence for m in await sub.take(20)] == list(range(1, 21))
        await c.close()
    finally:
        srv.stop()

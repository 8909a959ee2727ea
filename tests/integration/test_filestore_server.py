"""The FILE store through a real server: restarts keep everything, and a
datastore written by the Go server v0.25.6 is served as the Go server would."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import signal
from pathlib import Path

import pytest
from stanclient import StanClient, StanError, wait_for

from nss.pb import protocol_pb2 as pb

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "go-v0.25.6"


async def test_restart_keeps_messages_and_durables(nss_factory, tmp_path: Path) -> None:
    d = str(tmp_path / "data")
    srv = nss_factory("-store", "file", "-dir", d)
    c = await StanClient.connect(srv.url, "app")
    sub = await c.subscribe("orders", durable="d", start=pb.First, manual_acks=True)
    for i in range(10):
        await c.publish("orders", b"m%d" % i)
    for m in await sub.take(10):
        if m.sequence <= 6:
            await sub.ack(m)
    await c.nc.flush()
    await sub.close()  # durable kept, 7..10 still unacked
    await c.close()
    assert srv.stop(signal.SIGTERM) == 0

    srv2 = nss_factory("-store", "file", "-dir", d, port=srv.port)
    c = await StanClient.connect(srv2.url, "app")
    await c.publish("orders", b"after")
    sub = await c.subscribe("orders", durable="d", manual_acks=True)
    got = await sub.take(5)
    assert [(m.sequence, m.redelivered) for m in got] == [
        (7, True), (8, True), (9, True), (10, True), (11, False)
    ]
    assert got[-1].data == b"after"
    await c.close()


async def test_sigkill_while_publishing_loses_no_acked_message(
    nss_factory, tmp_path: Path
) -> None:
    """Publishers keep publishing with acks while the server is SIGKILLed:
    after a restart every acked message is there, once, in order."""
    d = str(tmp_path / "data")
    srv = nss_factory("-store", "file", "-dir", d)
    c = await StanClient.connect(srv.url, "pub")
    acked: list[int] = []
    sent = 0

    async def publish_forever() -> None:
        nonlocal sent
        window: list[tuple[int, asyncio.Future[str]]] = []
        while True:
            window.append((sent, c.publish_async("ch", b"%d" % sent)))
            sent += 1
            if len(window) >= 64:
                i, fut = window.pop(0)
                if await fut == "":
                    acked.append(i)

    task = asyncio.create_task(publish_forever())
    await wait_for(lambda: len(acked) >= 2000, timeout=30)
    srv.stop(signal.SIGKILL)
    task.cancel()
    await c.drop()
    srv2 = nss_factory("-store", "file", "-dir", d, port=srv.port)
    c = await StanClient.connect(srv2.url, "reader")
    sub = await c.subscribe("ch", start=pb.First, max_inflight=100000)
    stored = [int(m.data) for m in await sub.take(acked[-1] + 1, timeout=20)]
    assert stored[: acked[-1] + 1] == list(range(acked[-1] + 1))
    assert set(acked) <= set(stored)
    assert len(stored) == len(set(stored))
    await c.close()


@pytest.fixture
def go_datastore(tmp_path: Path) -> tuple[Path, dict]:
    d = tmp_path / "datastore"
    shutil.copytree(FIXTURE / "filestore" / "datastore", d)
    for p in [d, *d.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    manifest = json.loads((FIXTURE / "filestore" / "manifest.json").read_text())
    return d, manifest


async def test_go_datastore_is_served(nss_factory, go_datastore) -> None:
    d, manifest = go_datastore
    srv = nss_factory(
        "-store", "file", "-dir", str(d), "-sc", str(FIXTURE / "limits.conf"),
        cluster_id=manifest["cluster"],
    )
    c = await StanClient.connect(srv.url, "checker", cluster_id=manifest["cluster"])
    for name, ch in manifest["channels"].items():
        sub = await c.subscribe(name, start=pb.First, max_inflight=10000)
        msgs = await sub.take(ch["last"] - ch["first"] + 1)
        assert [m.sequence for m in msgs] == list(range(ch["first"], ch["last"] + 1))
        assert [hashlib.sha256(m.data).hexdigest() for m in msgs] == ch["sha256"], name
        await c.publish(name, b"next")
        assert (await sub.next()).sequence == ch["last"] + 1
    await c.close()


async def test_go_durables_resume(nss_factory, go_datastore) -> None:
    d, manifest = go_datastore
    srv = nss_factory(
        "-store", "file", "-dir", str(d), "-sc", str(FIXTURE / "limits.conf"),
        cluster_id=manifest["cluster"],
    )
    dur = manifest["durables"][0]
    # the recorded client no longer answers its heartbeat inbox: replaced at once
    c = await StanClient.connect(srv.url, dur["clientID"], cluster_id=manifest["cluster"])
    sub = await c.subscribe(dur["channel"], durable=dur["durable"], max_inflight=1000)
    first = await sub.take(len(dur["unacked_sent"]))
    assert [m.sequence for m in first] == dur["unacked_sent"]
    assert all(m.redelivered for m in first)
    rest = await sub.take(120 - 50)
    assert [m.sequence for m in rest] == list(range(51, 121))
    assert not any(m.redelivered for m in rest)

    q = manifest["queue_durables"][0]
    qs = await c.subscribe(q["channel"], queue=q["group"], durable=q["durable"])
    await qs.expect_nothing(0.3)
    await c.publish(q["channel"], b"new")
    assert (await qs.next()).sequence == 351
    await c.close()


async def test_durable_name_with_same_client_id_is_rejected_when_online(
    nss_factory, tmp_path: Path
) -> None:
    srv = nss_factory("-store", "file", "-dir", str(tmp_path / "d"))
    c = await StanClient.connect(srv.url, "x")
    await c.subscribe("a", durable="dur")
    with pytest.raises(StanError, match="stan: duplicate durable registration"):
        await c.subscribe("a", durable="dur")
    await c.close()


async def test_second_standalone_server_on_a_datastore_is_refused(
    nss_factory, tmp_path: Path
) -> None:
    from procs import NssProcess, free_port

    d = str(tmp_path / "data")
    nss_factory("-store", "file", "-dir", d)
    second = NssProcess(["-p", str(free_port()), "-store", "file", "-dir", d])
    try:
        line = second.wait_for_line("is in use by another server")
        assert "--ft_group" in line
        assert second.proc.wait(10) == 1
    finally:
        second.stop()

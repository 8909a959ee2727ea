"""The nats-server child dies (killed, crashed): nss restarts it on the same
ports and clients carry on; one that keeps dying ends nss with a fatal
line (issue 9, the embedded NATS server).

Real processes: nss with its real child, SIGKILLed by pid; a STAN client
on nats-py that reconnects by itself, as stan.go and stan.py clients do.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from procs import READY_LINE, NssProcess, free_port, nats_child_pid
from stanclient import StanClient, StanError

from nss.pb import protocol_pb2 as pb

DEADLINE = 20.0


@pytest.fixture
def procs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[NssProcess]]:
    """nss processes stopped at the end; their private directories go to
    the test's tmp."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    started: list[NssProcess] = []
    yield started
    for p in started:
        p.stop()


def child_pid(p: NssProcess) -> int:
    return nats_child_pid(p, DEADLINE)


async def line(p: NssProcess, text: str, timeout: float = DEADLINE) -> str:
    """Wait for a log line without blocking the loop (the client must keep
    answering its NATS server meanwhile)."""
    return await asyncio.to_thread(p.wait_for_line, text, timeout)


async def new_child(p: NssProcess, old: set[int]) -> int:
    """The pid of a running child that is none of ``old``."""
    deadline = time.monotonic() + DEADLINE
    while True:
        pid = await asyncio.to_thread(child_pid, p)
        if pid not in old and _running(pid):
            return pid
        assert time.monotonic() < deadline, "no new nats-server child"
        await asyncio.sleep(0.02)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


async def publish_eventually(sc: StanClient, channel: str, data: bytes) -> None:
    """Publish once the client is back (its PubAck proves the whole path)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            await sc.publish(channel, data, timeout=1.0)
            return
        except (TimeoutError, StanError, nats.errors.Error):
            assert time.monotonic() < deadline, "publish never succeeded again"
            await asyncio.sleep(0.1)


async def reconnecting_client(port: int, client_id: str, cluster_id: str) -> StanClient:
    nc = await nats.connect(
        f"nats://127.0.0.1:{port}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.1,
    )
    return await StanClient.connect("", client_id, cluster_id, nc=nc)


async def test_killed_child_is_restarted_and_clients_reconnect(procs: list[NssProcess]) -> None:
    port, mport = free_port(), free_port()
    nss = NssProcess(["-a", "127.0.0.1", "-p", str(port), "-m", str(mport), "-SD"])
    procs.append(nss)
    await line(nss, READY_LINE)
    old = await asyncio.to_thread(child_pid, nss)
    sc = await reconnecting_client(port, "c1", "test-cluster")
    sub = await sc.subscribe("foo", start=pb.First)
    await sc.publish("foo", b"before")
    assert (await sub.next()).data == b"before"

    os.kill(old, signal.SIGKILL)
    died = await line(nss, "restarting it in")
    assert "[ERR]" in died and f"exited unexpectedly (status {-signal.SIGKILL})" in died
    restarted = await line(nss, "embedded NATS server restarted")
    assert f"on nats://127.0.0.1:{port}" in restarted  # the same port
    assert await new_child(nss, {old}) != old
    await line(nss, "Reconnected to NATS at")

    # the client reconnects by itself; its session and subscription live on
    await publish_eventually(sc, "foo", b"after")
    got = [(await sub.next()).data]
    while got[-1] != b"after":
        got.append((await sub.next()).data)
    assert nss.proc.poll() is None
    # the NATS endpoints on the -m port reach the new child
    varz = await asyncio.to_thread(_get_json, f"http://127.0.0.1:{mport}/varz")
    assert varz["port"] == port and varz["http_port"] == mport
    await sc.close()


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


async def test_child_that_keeps_dying_ends_nss(procs: list[NssProcess]) -> None:
    nss = NssProcess(["-a", "127.0.0.1", "-p", str(free_port())])
    procs.append(nss)
    await line(nss, READY_LINE)
    killed: set[int] = set()
    for _ in range(5):
        pid = await new_child(nss, killed)
        os.kill(pid, signal.SIGKILL)
        killed.add(pid)
    fatal = await line(nss, "giving up")
    assert "[FTL]" in fatal
    assert "embedded NATS server exited 5 times within 60s" in fatal
    assert await asyncio.to_thread(nss.proc.wait, DEADLINE) == 1
    assert nss.log_text().count("restarting it in") == 4


async def test_config_broken_while_running_delays_the_restart_not_ends_nss(
    procs: list[NssProcess], tmp_path: Path
) -> None:
    """A restart that cannot read the user's file (edited meanwhile) is
    retried with the back-off; mended in time, the child comes back."""
    conf = tmp_path / "nats.conf"
    port = free_port()
    good = f"listen: 127.0.0.1:{port}\n"
    conf.write_text(good)
    nss = NssProcess(["-c", str(conf)])
    procs.append(nss)
    await line(nss, READY_LINE)
    old = await asyncio.to_thread(child_pid, nss)
    conf.write_text("listen: {{{ broken\n")
    os.kill(old, signal.SIGKILL)
    failed = await line(nss, "could not be restarted")
    assert "[ERR]" in failed and "unable to write its configuration" in failed
    conf.write_text(good)
    restarted = await line(nss, "embedded NATS server restarted")
    assert f"127.0.0.1:{port}" in restarted
    assert nss.proc.poll() is None


async def test_ft_active_restarts_its_child_and_stays_the_only_writer(
    procs: list[NssProcess], tmp_path: Path
) -> None:
    """In FT mode the active restarts its child too: the store lock, not
    NATS, decides who writes, so the standby (which stops hearing
    heartbeats meanwhile) cannot become a second writer; it takes over
    only once the active is really gone."""
    ca, cb, pa, pb_ = free_port(), free_port(), free_port(), free_port()
    common = ["--ft_group", "grp", "-store", "file", "-dir", str(tmp_path / "store")]
    common += ["--cluster_name", "n", "-cid", "ftc"]
    a = NssProcess(
        ["-a", "127.0.0.1", "-p", str(pa), "--cluster", f"nats://127.0.0.1:{ca}"]
        + ["--routes", f"nats://127.0.0.1:{cb}", *common]
    )
    procs.append(a)
    await line(a, READY_LINE)
    b = NssProcess(
        ["-a", "127.0.0.1", "-p", str(pb_), "--cluster", f"nats://127.0.0.1:{cb}"]
        + ["--routes", f"nats://127.0.0.1:{ca}", *common]
    )
    procs.append(b)
    await line(b, "Starting in standby mode")

    # a client on b's NATS server reaches the active through the route
    sc = await reconnecting_client(pb_, "c1", "ftc")
    await publish_eventually(sc, "foo", b"1")

    old = await asyncio.to_thread(child_pid, a)
    os.kill(old, signal.SIGKILL)
    await line(a, "embedded NATS server restarted")
    await line(a, "Reconnected to NATS at")
    await publish_eventually(sc, "foo", b"2")
    assert a.proc.poll() is None
    assert "Server is active" not in b.log_text()

    # the active really gone: the standby takes over, with both messages
    a.stop(signal.SIGKILL)
    await line(b, "Server is active")
    await publish_eventually(sc, "foo", b"3")
    sub = await sc.subscribe("foo", start=pb.First)
    assert [(await sub.next()).data for _ in range(3)] == [b"1", b"2", b"3"]
    await sc.close()

"""FT on the wire, against a peer that speaks the Go server's heartbeats:
what a mixed nss/Go group (a rolling migration) relies on."""

from __future__ import annotations

import asyncio
import time
import urllib.request

import nats
from procs import READY_LINE, free_port

from nss.nuid import next_nuid
from nss.pb import spb_pb2 as spb
from nss.server.ft import go_time_marshal

FAST = ("--ft_hb_interval", "100ms", "--ft_hb_missed_interval", "250ms")
SUBJECT = "_STAN.ft.test-cluster.grp"


def go_heartbeat(server_id: str, activated_ns: int) -> bytes:
    return spb.CtrlMsg(
        MsgType=spb.CtrlMsg.FTHeartbeat, ServerID=server_id, Data=go_time_marshal(activated_ns)
    ).SerializeToString()


async def test_standby_stays_standby_while_a_go_active_heartbeats(ft_member) -> None:
    nc = await nats.connect(ft_member.nats.url)
    peer = next_nuid()
    activated = time.time_ns()
    stop = asyncio.Event()

    async def beat() -> None:
        while not stop.is_set():
            await nc.publish(SUBJECT, go_heartbeat(peer, activated))
            await asyncio.sleep(0.05)

    task = asyncio.create_task(beat())
    port = free_port()
    m = ft_member(*FAST, "-m", str(port))
    m.wait_for_line("Starting in standby mode")
    await asyncio.sleep(1.0)  # four missed intervals: heartbeats keep it standing by
    assert "Server is active" not in m.log_text()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/streaming/isFTActive") as r:
        assert r.status == 204
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as r:
        text = r.read().decode()
    seen = [ln for ln in text.splitlines() if ln.startswith("nss_ft_heartbeats_seen")]
    assert seen and float(seen[0].split()[-1]) > 5
    # the "Go" active stops: the nss standby takes over
    stop.set()
    await task
    m.wait_for_line(READY_LINE, timeout=10)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/streaming/isFTActive") as r:
        assert r.status == 200
    await nc.close()


async def test_active_sends_go_format_heartbeats(ft_member) -> None:
    nc = await nats.connect(ft_member.nats.url)
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_msg(msg) -> None:  # noqa: ANN001
        await got.put(msg.data)

    await nc.subscribe(SUBJECT, cb=on_msg)
    m = ft_member(*FAST)
    m.wait_for_line(READY_LINE)
    hb = spb.CtrlMsg.FromString(await asyncio.wait_for(got.get(), 5))
    assert hb.MsgType == spb.CtrlMsg.FTHeartbeat
    assert len(hb.ServerID) == 22
    assert len(hb.Data) == 15 and hb.Data[0] == 1  # Go time.MarshalBinary, version 1
    await nc.close()


async def test_later_active_steps_down_when_it_hears_an_earlier_one(ft_member) -> None:
    m = ft_member(*FAST)
    m.wait_for_line(READY_LINE)
    nc = await nats.connect(ft_member.nats.url)
    # a peer claiming an activation an hour ago: this one was activated later
    await nc.publish(SUBJECT, go_heartbeat(next_nuid(), time.time_ns() - 3600 * 10**9))
    await nc.flush()
    m.wait_for_line("claims to be active, aborting", timeout=5)
    assert m.proc.wait(10) != 0
    await nc.close()


async def test_earlier_active_only_logs_a_later_claim(ft_member) -> None:
    m = ft_member(*FAST)
    m.wait_for_line(READY_LINE)
    nc = await nats.connect(ft_member.nats.url)
    await nc.publish(SUBJECT, go_heartbeat(next_nuid(), time.time_ns() + 3600 * 10**9))
    await nc.flush()
    m.wait_for_line("claims to be active", timeout=5)
    assert "aborting" not in m.log_text()
    assert m.proc.poll() is None
    await nc.close()

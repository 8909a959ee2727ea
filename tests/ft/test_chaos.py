"""Chaos on a FILE-store FT group: the active is SIGKILLed again and again
while real node-nats-streaming clients publish and consume.

Three members of one group share a FILE directory. Two node publishers
(chaos.js) publish unique payloads ("A-<n>", "B-<n>") the whole time, each
message exactly once with no retry, and record which were acknowledged; a
node durable subscriber with manual acks acks everything it receives.
Meanwhile the test SIGKILLs the current active several times, waits (with
deadlines) for a standby to become ready, checks that exactly one member says
it is active (/streaming/isFTActive), restarts members so there are two
standbys again, and waits for traffic to flow through the new active before
the next kill. Once, the new active is killed right after it logged ready
(while it still redelivers what was pending), leaving a single standby.

Afterwards, with the last active still up, the whole channel is read from the
first sequence: every acknowledged payload must be stored exactly once (in
fact no payload may be stored twice), each publisher's payloads must be in
publication order, and sequences must be contiguous from 1. The durable,
resumed after the chaos, must get every message after its last ack and
nothing at or before it unless flagged redelivered.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from typing import Any

import pytest
from chaosclients import (
    NodeClient,
    audit_channel,
    audit_durable,
    audit_resumed,
    channel_info,
    ft_active_status,
    publish_tail,
    read_channel,
)
from nodeenv import NODE, ensure_node_modules
from procs import READY_LINE, NssProcess, free_port

FAST = ("--ft_hb_interval", "100ms", "--ft_hb_missed_interval", "250ms")
GROUP = 3
# a longer soak: NSS_CHAOS_KILLS=30 NSS_CHAOS_RATE=800 pytest tests/ft/test_chaos.py -s
KILLS = int(os.environ.get("NSS_CHAOS_KILLS", "6"))
QUICK_KILL_AFTER = {2}  # rounds after which the next kill comes right away
RATE = int(os.environ.get("NSS_CHAOS_RATE", "250"))  # messages a second, per publisher
MAX_INFLIGHT = 2000
PUB_ACK_WAIT_MS = 3000
SUB_ACK_WAIT_MS = 3000
TAIL = 20  # published after the chaos, while the durable is away
FAILOVER_DEADLINE = 10.0
TRAFFIC_PER_ROUND = 100  # acks each publisher must get from a new active

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed: the chaos clients need it"),
    pytest.mark.timeout(120 + 10 * KILLS),
]


@pytest.fixture(scope="module", autouse=True)
def node_modules() -> None:
    problem = ensure_node_modules()
    if problem:
        pytest.fail(problem)


def test_active_sigkilled_repeatedly_under_traffic(ft_member) -> None:
    t_start = time.monotonic()
    url = ft_member.nats.url
    members: list[NssProcess] = []
    mports: dict[int, int] = {}  # pid -> monitoring port
    clients: list[NodeClient] = []

    def start_member() -> NssProcess:
        port = free_port()
        p = ft_member(*FAST, "-m", str(port))
        mports[p.proc.pid] = port
        members.append(p)
        return p

    def live() -> list[NssProcess]:
        return [m for m in members if m.proc.poll() is None]

    def wait_new_active(exclude: NssProcess) -> NssProcess:
        deadline = time.monotonic() + FAILOVER_DEADLINE
        while True:
            ready = [m for m in live() if m is not exclude and READY_LINE in m.log_text()]
            if ready:
                assert len(ready) == 1, "two members logged ready"
                return ready[0]
            if time.monotonic() > deadline:
                logs = "\n----\n".join(m.log_text()[-3000:] for m in live())
                raise AssertionError(f"no member became active in {FAILOVER_DEADLINE}s:\n{logs}")
            time.sleep(0.02)

    def assert_single_active(active: NssProcess) -> None:
        status = {m.proc.pid: ft_active_status(mports[m.proc.pid]) for m in live()}
        assert status[active.proc.pid] == 200, status
        assert sorted(status.values()) == [200] + [204] * (len(status) - 1), status

    try:
        active = start_member()
        active.wait_for_line(READY_LINE, timeout=15)
        for m in [start_member() for _ in range(GROUP - 1)]:
            m.wait_for_line("Starting in standby mode", timeout=15)

        durable = NodeClient("durable", url, "chaos-durable", "dur", SUB_ACK_WAIT_MS)
        clients.append(durable)
        pubs = [
            NodeClient("publisher", url, pid, RATE, MAX_INFLIGHT, PUB_ACK_WAIT_MS)
            for pid in ("A", "B")
        ]
        clients.extend(pubs)
        for p in pubs:
            p.wait_progress(lambda pr: pr["progress"] >= TRAFFIC_PER_ROUND, timeout=15)
        durable.wait_progress(lambda pr: pr["progress"] >= TRAFFIC_PER_ROUND, timeout=15)

        failovers: list[float] = []
        winners: list[int] = []  # index (start order) of each new active
        for i in range(KILLS):
            killed_at = time.monotonic()
            active.stop(signal.SIGKILL)
            new = wait_new_active(exclude=active)
            failovers.append(time.monotonic() - killed_at)
            winners.append(members.index(new))
            new.wait_for_line("Server is active", timeout=1)
            assert_single_active(new)
            active = new
            if i in QUICK_KILL_AFTER:
                # kill the new active at once, while it is still redelivering
                # what was pending at the fail-over; one standby is left
                continue
            # back to two standbys
            for m in [start_member() for _ in range(GROUP - len(live()))]:
                m.wait_for_line("Starting in standby mode", timeout=15)
            # traffic must flow through the new active before the next kill
            for p in pubs:
                base = p.progress["progress"]
                p.wait_progress(
                    lambda pr, base=base: pr["progress"] >= base + TRAFFIC_PER_ROUND, timeout=15
                )
            base = durable.progress["progress"]
            durable.wait_progress(
                lambda pr, base=base: pr["progress"] >= base + TRAFFIC_PER_ROUND, timeout=15
            )
        assert_single_active(active)

        for p in pubs:
            p.stop()
        results = [p.wait_result(PUB_ACK_WAIT_MS / 1000 + 15) for p in pubs]
        durable.stop()
        dres = durable.wait_result(15)

        asyncio.run(publish_tail(url, TAIL))
        info = channel_info(mports[active.proc.pid])
        last_seq = info["last_seq"]
        stored = asyncio.run(read_channel(url, last_seq))

        # --- the channel
        assert info["first_seq"] == 1 and info["msgs"] == last_seq, info
        stats: dict[str, Any] = {
            "kills": KILLS,
            "failover_s": [round(f, 2) for f in failovers],
            "new_active_member": winners,
        }
        stats.update(audit_channel(stored, results))
        payloads = [m.data.decode() for m in stored]
        by_seq = dict(zip(range(1, last_seq + 1), payloads, strict=True))
        tail = [int(p.split("-")[1]) for p in payloads if p.startswith("T-")]
        assert tail == list(range(1, TAIL + 1))
        stats["stored"] = last_seq

        # --- the durable during the chaos: what it got is what is stored
        stats["durable"] = audit_durable(by_seq, dres)

        # --- the durable resumed: only what follows its last ack, except
        # redeliveries flagged as such; nothing missing
        last_acked = dres["last_acked"]
        resumed = NodeClient(
            "resume", url, "chaos-durable", "dur", SUB_ACK_WAIT_MS, last_acked, last_seq
        )
        clients.append(resumed)
        rres = resumed.wait_result(30)
        stats["resumed"] = audit_resumed(by_seq, dres, rres)

        for m in members:
            log = m.log_text()
            assert "Traceback" not in log and "claims to be active" not in log, log[-5000:]
        stats["runtime_s"] = round(time.monotonic() - t_start, 1)
        print("chaos:", json.dumps(stats))
    finally:
        for c in clients:
            c.kill()

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
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nodeenv import NODE, ensure_node_modules, node_env
from procs import READY_LINE, NssProcess, free_port
from stanclient import StanClient

from nss.pb import protocol_pb2 as pb

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "chaos.js"

CID = "test-cluster"
SUBJECT = "chaos"
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




class NodeClient:
    """One chaos.js process; ``progress`` is its latest progress line,
    ``result`` its final JSON object."""

    def __init__(self, mode: str, url: str, *args: object) -> None:
        assert NODE is not None
        self.mode = mode
        self.progress: dict[str, Any] = {}
        self.result: dict[str, Any] | None = None
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [NODE, str(SCRIPT), mode, url, CID, SUBJECT, *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=node_env(),
            cwd=HERE,
        )
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if not line.startswith("{"):
                continue
            obj = json.loads(line)
            with self._cond:
                if "progress" in obj:
                    self.progress = obj
                else:
                    self.result = obj
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            self.stderr.append(raw.decode(errors="replace").rstrip())

    def _describe(self) -> str:
        return (
            f"node {self.mode} (exit {self.proc.poll()}): progress={self.progress} "
            f"result={json.dumps(self.result)[:1500]}\nstderr: " + "\n".join(self.stderr[-20:])
        )

    def wait_progress(self, pred: Callable[[dict[str, Any]], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self.progress and pred(self.progress)):
                if self.result is not None or self.proc.poll() is not None:
                    raise AssertionError("client ended early: " + self._describe())
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no progress in {timeout}s: " + self._describe())
                self._cond.wait(min(left, 0.1))

    def stop(self) -> None:
        """Ask the client to finish (a line on stdin)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stop\n")
        self.proc.stdin.flush()

    def wait_result(self, timeout: float) -> dict[str, Any]:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"did not finish in {timeout}s: " + self._describe()) from None
        deadline = time.monotonic() + 5
        with self._cond:
            while self.result is None and time.monotonic() < deadline:
                self._cond.wait(0.1)
        res = self.result
        assert self.proc.returncode == 0 and res is not None and not res.get("client_failed"), (
            self._describe()
        )
        return res

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def ft_active_status(port: int) -> int:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/streaming/isFTActive", timeout=2
        ) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def channel_info(port: int) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/streaming/channelsz?channel={SUBJECT}"
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


async def publish_tail(url: str) -> None:
    c = await StanClient.connect(url, "chaos-tail")
    for i in range(1, TAIL + 1):
        await c.publish(SUBJECT, b"T-%d" % i)
    await c.close()


async def read_channel(url: str, last_seq: int) -> list[pb.MsgProto]:
    c = await StanClient.connect(url, "chaos-reader")
    sub = await c.subscribe(SUBJECT, start=pb.First, max_inflight=8192)
    msgs = [await sub.next(timeout=10) for _ in range(last_seq)]
    await sub.expect_nothing(0.2)
    await c.close()
    return msgs


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

        asyncio.run(publish_tail(url))
        info = channel_info(mports[active.proc.pid])
        last_seq = info["last_seq"]
        stored = asyncio.run(read_channel(url, last_seq))

        # --- the channel
        seqs = [m.sequence for m in stored]
        assert info["first_seq"] == 1 and info["msgs"] == last_seq, info
        assert seqs == list(range(1, last_seq + 1)), "sequences are not contiguous from 1"
        payloads = [m.data.decode() for m in stored]
        by_seq = dict(zip(seqs, payloads, strict=True))
        counts = Counter(payloads)
        dups = {k: v for k, v in counts.items() if v > 1}
        assert not dups, f"payloads stored more than once: {dups}"
        stats: dict[str, Any] = {
            "kills": KILLS,
            "failover_s": [round(f, 2) for f in failovers],
            "new_active_member": winners,
        }
        for res in results:
            pid = res["pub"]
            acked = {f"{pid}-{n}" for n in res["acked"]}
            failed = {f"{pid}-{n}" for n in res["unacked"]}
            assert len(acked) + len(failed) == res["sent"], res["sent"]
            lost = sorted(acked - counts.keys(), key=lambda s: int(s.split("-")[1]))
            assert not lost, f"{len(lost)} acked payloads of {pid} are not stored: {lost[:20]}"
            mine = [int(p.split("-")[1]) for p in payloads if p.startswith(pid + "-")]
            assert mine == sorted(mine), f"payloads of {pid} are stored out of order"
            stats[pid] = {
                "sent": res["sent"],
                "acked": len(acked),
                "not_acked": len(failed),
                "not_acked_but_stored": len(failed & counts.keys()),
                "errors": res["errors"],
            }
        tail = [int(p.split("-")[1]) for p in payloads if p.startswith("T-")]
        assert tail == list(range(1, TAIL + 1))
        stats["stored"] = last_seq

        # --- the durable during the chaos: what it got is what is stored
        got = dres["msgs"]
        assert all(by_seq[s] == d for s, _, d in got), "durable got a wrong payload"
        fresh = Counter(s for s, red, _ in got if not red)
        stats["durable"] = {
            "received": len(got),
            "last_acked": dres["last_acked"],
            "redelivered": sum(1 for _, red, _ in got if red),
            "fresh_duplicates": sorted(s for s, n in fresh.items() if n > 1)[:20],
        }
        assert not dres["errors"], dres["errors"]

        # --- the durable resumed: only what follows its last ack, except
        # redeliveries flagged as such; nothing missing
        last_acked = dres["last_acked"]
        resumed = NodeClient(
            "resume", url, "chaos-durable", "dur", SUB_ACK_WAIT_MS, last_acked, last_seq
        )
        clients.append(resumed)
        rres = resumed.wait_result(30)
        again = rres["msgs"]
        assert all(by_seq[s] == d for s, _, d in again), "resumed durable got a wrong payload"
        early = [(s, red) for s, red, _ in again if s <= last_acked and not red]
        assert not early, f"resumed durable got already-acked messages not flagged: {early[:20]}"
        fresh_after = [s for s, red, _ in again if not red]
        assert len(fresh_after) == len(set(fresh_after)), "resumed durable got duplicates"
        assert set(range(last_acked + 1, last_seq + 1)) <= {s for s, _, _ in again}
        assert {s for s, _, _ in got} | {s for s, _, _ in again} >= set(range(1, last_seq + 1))
        stats["resumed"] = {
            "received": len(again),
            "redelivered": sorted(s for s, red, _ in again if red)[:20],
        }

        for m in members:
            log = m.log_text()
            assert "Traceback" not in log and "claims to be active" not in log, log[-5000:]
        stats["runtime_s"] = round(time.monotonic() - t_start, 1)
        print("chaos:", json.dumps(stats))
    finally:
        for c in clients:
            c.kill()

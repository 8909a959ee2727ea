"""The FT chaos clients and their audit, shared by the chaos test and the
PostgreSQL fail-over test: real node-nats-streaming publishers (chaos.js)
that publish unique payloads exactly once each and record which were
acknowledged, and the check that every acknowledged one is stored exactly
once, in publication order, with contiguous sequences."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nodeenv import NODE, node_env
from stanclient import StanClient

from nss.pb import protocol_pb2 as pb

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "chaos.js"

CID = "test-cluster"
SUBJECT = "chaos"
ACK_TIMEOUT = "stan: publish ack timeout"  # node-nats-streaming's PubAck timeout


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


async def publish_tail(url: str, n: int) -> None:
    """``n`` more payloads "T-<i>", from a client of the test's own."""
    c = await StanClient.connect(url, "chaos-tail")
    for i in range(1, n + 1):
        await c.publish(SUBJECT, b"T-%d" % i)
    await c.close()


async def read_channel(url: str, last_seq: int) -> list[pb.MsgProto]:
    c = await StanClient.connect(url, "chaos-reader")
    sub = await c.subscribe(SUBJECT, start=pb.First, max_inflight=8192)
    msgs = [await sub.next(timeout=10) for _ in range(last_seq)]
    await sub.expect_nothing(0.2)
    await c.close()
    return msgs


def audit_channel(stored: list[pb.MsgProto], results: list[dict[str, Any]]) -> dict[str, Any]:
    """The channel as read from its first sequence against what the
    publishers recorded: sequences contiguous from 1, no payload stored
    twice, every acknowledged payload stored, each publisher's payloads in
    publication order. Per publisher figures, for the test's summary."""
    last_seq = len(stored)
    seqs = [m.sequence for m in stored]
    assert seqs == list(range(1, last_seq + 1)), "sequences are not contiguous from 1"
    payloads = [m.data.decode() for m in stored]
    counts = Counter(payloads)
    dups = {k: v for k, v in counts.items() if v > 1}
    assert not dups, f"payloads stored more than once: {dups}"
    stats: dict[str, Any] = {}
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
    return stats


def audit_durable(by_seq: dict[int, str], dres: dict[str, Any]) -> dict[str, Any]:
    """A durable subscriber (chaos.js ``durable``) during the trouble: what
    it got is what is stored, and it saw no error."""
    got = dres["msgs"]
    assert all(by_seq[s] == d for s, _, d in got), "durable got a wrong payload"
    fresh = Counter(s for s, red, _ in got if not red)
    assert not dres["errors"], dres["errors"]
    return {
        "received": len(got),
        "last_acked": dres["last_acked"],
        "redelivered": sum(1 for _, red, _ in got if red),
        "fresh_duplicates": sorted(s for s, n in fresh.items() if n > 1)[:20],
    }


def audit_resumed(
    by_seq: dict[int, str], dres: dict[str, Any], rres: dict[str, Any]
) -> dict[str, Any]:
    """The same durable resumed afterwards (chaos.js ``resume`` up to the
    last sequence): only what follows its last ack, except redeliveries
    flagged as such, and between both runs every stored message."""
    last_seq = len(by_seq)
    last_acked = dres["last_acked"]
    got, again = dres["msgs"], rres["msgs"]
    assert all(by_seq[s] == d for s, _, d in again), "resumed durable got a wrong payload"
    early = [(s, red) for s, red, _ in again if s <= last_acked and not red]
    assert not early, f"resumed durable got already-acked messages not flagged: {early[:20]}"
    fresh_after = [s for s, red, _ in again if not red]
    assert len(fresh_after) == len(set(fresh_after)), "resumed durable got duplicates"
    assert set(range(last_acked + 1, last_seq + 1)) <= {s for s, _, _ in again}
    assert {s for s, _, _ in got} | {s for s, _, _ in again} >= set(range(1, last_seq + 1))
    return {
        "received": len(again),
        "redelivered": sorted(s for s, red, _ in again if red)[:20],
    }

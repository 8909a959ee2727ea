"""Interoperability: nss driven by the real node-nats-streaming client (npm).

Each test starts a fresh nss (``nss`` fixture) and runs one scenario of
``scenarios.js`` in a node process, which prints what the client saw as JSON.
The client version is pinned in package.json / package-lock.json; when
node_modules is missing it is installed here with ``npm ci``. The module is
skipped only when ``node`` itself is not installed.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from nodeenv import NODE, ensure_node_modules, node_env

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "scenarios.js"
SCENARIO_TIMEOUT = 60.0

pytestmark = pytest.mark.skipif(
    NODE is None, reason="node is not installed: the node-nats-streaming interop suite needs it"
)




@pytest.fixture(scope="session", autouse=True)
def node_modules() -> None:
    problem = ensure_node_modules()
    if problem:
        pytest.fail(problem)


def run(scenario: str, nss: Any, *args: object, timeout: float = SCENARIO_TIMEOUT) -> dict:
    """Run one scenario to completion and return its JSON result."""
    assert NODE is not None
    cmd = [NODE, str(SCRIPT), scenario, nss.url, nss.cluster_id, *map(str, args)]
    try:
        proc = subprocess.run(
            cmd, cwd=HERE, env=node_env(), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"scenario {scenario} ran past {timeout}s:\n{e.stdout}\n{e.stderr}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        pytest.fail(
            f"scenario {scenario} {args} exited {proc.returncode}:\n"
            f"stdout: {proc.stdout}\nstderr: {proc.stderr}\n"
            f"nss log (tail):\n" + "\n".join(nss.log_text().splitlines()[-20:])
        )
    return json.loads(lines[-1])


class Holder:
    """A node process that connects and stays connected until killed."""

    def __init__(self, nss: Any, client_id: str) -> None:
        assert NODE is not None
        self.proc = subprocess.Popen(
            [NODE, str(SCRIPT), "hold", nss.url, nss.cluster_id, client_id],
            cwd=HERE,
            env=node_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_connected(self, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"holder did not connect within {timeout}s")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                pytest.fail(f"holder exited ({self.proc.wait()}) before connecting: {err}")
            if line.startswith("{"):
                res = json.loads(line)
                assert res.get("connected") is True, res
                return res

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


# ------------------------------------------------------------------- tests


def test_publish_with_acks(nss):
    n = 100
    res = run("publish_acks", nss, n)
    assert res["published"] == n
    assert len(res["acks"]) == n
    # every ack handler got the GUID that publish() returned for that message
    assert res["acks"] == res["returned"]
    assert len(set(res["acks"])) == n
    assert all(res["acks"])
    assert res["seqs"] == list(range(1, n + 1))
    assert res["data"] == [f"msg-{i}" for i in range(n)]


@pytest.mark.parametrize(
    "position, seqs",
    [
        ("new_only", [4]),
        ("last_received", [3, 4]),
        ("sequence", [3, 4, 5, 6]),
        ("deliver_all", [1, 2, 3, 4]),
        ("first", [1, 2, 3, 4]),
        ("time_delta", [3, 4, 5]),
        ("start_time", [3, 4, 5]),
    ],
)
def test_start_position(nss, position, seqs):
    res = run("start_position", nss, position)
    # the last sequence is the marker published after the subscription
    assert res["seqs"] == seqs
    assert res["data"][-1] == "marker"
    assert res["data"][:-1] == [f"m{s}" for s in seqs[:-1]]


def test_durable_resume_after_client_restart(nss):
    args = ("restarter", "dur", "orders")
    first = run("durable_first", nss, *args, 5)
    assert first["seqs"] == [1, 2, 3, 4, 5]
    assert run("publish", nss, "other-publisher", "orders", 6, 10)["acked"] == 5
    # a new process, same client ID and durable name: only what it missed
    again = run("durable_resume", nss, *args, 10)
    assert again["seqs"] == [6, 7, 8, 9, 10, 11]
    assert again["data"] == ["m6", "m7", "m8", "m9", "m10", "marker"]


def test_queue_group_members_share_messages(nss):
    n = 40
    res = run("queue_group", nss, n)
    a, b = res["a"], res["b"]
    assert a and b, f"both members should get messages: a={a} b={b}"
    assert not set(a) & set(b), "a message went to both members"
    assert len(a) == len(set(a)) and len(b) == len(set(b)), "duplicate delivery"
    assert sorted(a + b) == list(range(1, n + 1))
    assert a == sorted(a) and b == sorted(b)
    assert res["redelivered"] == []


def test_redelivery_of_unacked_message(nss):
    res = run("redelivery", nss)
    # seq 1 acked at once, seq 2 never: only 2 comes back, flagged redelivered
    assert res["deliveries"] == [[1, False], [2, False], [2, True], [3, False]]
    assert 900 <= res["redelivery_after_ms"] < 5000


def test_max_inflight_one(nss):
    res = run("max_inflight", nss, 500)
    events = res["events"]
    kinds = [(k, s) for k, s, _ in events]
    assert kinds == [
        ("recv", 1), ("ack", 1), ("recv", 2), ("ack", 2), ("recv", 3), ("ack", 3)
    ], events
    # each message arrived only after the previous one was acked (held 500 ms)
    for prev_ack, nxt in zip(events[1::2], events[2::2], strict=False):
        assert nxt[2] >= prev_ack[2]
    assert events[2][2] >= 450


def test_durable_close_vs_unsubscribe(nss):
    res = run("close_vs_unsubscribe", nss)
    assert res["first"] == [1, 2, 3]
    assert res["after_close"] == [4, 5], "close must keep the durable's position"
    assert res["after_unsubscribe"] == [1, 2, 3, 4, 5, 6], "unsubscribe must drop the durable"


def test_duplicate_client_id(nss):
    holder = Holder(nss, "dup-me")
    try:
        holder.wait_connected()
        second = run("connect", nss, "dup-me")
        assert second["connected"] is False
        assert second["error"] == "stan: clientID already registered"
        # the first client dies without closing: its ID is free again
        holder.kill()
        third = run("connect", nss, "dup-me")
        assert third["connected"] is True, third
    finally:
        holder.kill()

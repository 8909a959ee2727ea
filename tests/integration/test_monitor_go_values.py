"""Subscription fields of /streaming/channelsz and /clientsz that tools watch
(dashboards, prometheus-nats-exporter, stalled-subscriber scripts): the
values the Go server reports, on every store, before and after a restart.

- a member joining an existing queue group reports its own last sent
  sequence (0 until it receives a message), not the group's;
- an offline durable (plain, or a durable queue group's last member) keeps
  ``is_stalled`` when it went away with MaxInflight messages unacknowledged.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from procs import free_port
from stanclient import StanClient, wait_for

from nss.pb import protocol_pb2 as pb

pytest_plugins = ["pg"]

STORES = ["memory", "file", "sql"]


@pytest.fixture(params=STORES)
def start(request: pytest.FixtureRequest, nss_factory: Any, tmp_path: Path) -> Callable[[], Any]:
    """Starts nss on the store under test; called again, restarts it on the
    same data (after the previous one stopped)."""
    store = request.param
    args: list[str] = []
    if store == "file":
        args = ["-st", "file", "-dir", str(tmp_path / "data")]
    elif store == "sql":
        pg = request.getfixturevalue("pg_server")
        db = f"nss_gv_{int(time.time() * 1000) % 10**9}"
        pg.create_db(db)
        args = ["-st", "sql", "--sql_driver", "postgres", "--sql_source", pg.dsn(db)]
    port, mport = free_port(), free_port()

    def run() -> Any:
        srv = nss_factory("-m", str(mport), *args, port=port)
        srv.mport = mport
        srv.store = store
        return srv

    return run


def subz(srv: Any, channel: str) -> dict[str, dict[str, Any]]:
    """channelsz?subs=1 of one channel: subscriptions by inbox."""
    url = f"http://127.0.0.1:{srv.mport}/streaming/channelsz?channel={channel}&subs=1"
    with urllib.request.urlopen(url, timeout=5) as r:
        doc = json.load(r)
    return {s["inbox"]: s for s in doc.get("subscriptions", [])}


def client_subz(srv: Any, client_id: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{srv.mport}/streaming/clientsz?client={client_id}&subs=1"
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


@pytest.mark.parametrize("durable", ["", "dq"])
async def test_new_queue_member_reports_its_own_last_sent(start: Any, durable: str) -> None:
    srv = start()
    a = await StanClient.connect(srv.url, "A")
    b = await StanClient.connect(srv.url, "B")
    sa = await a.subscribe("r1", queue="q", durable=durable, start=pb.First)
    for i in range(3):
        await a.publish("r1", b"m%d" % i)
    await sa.take(3)
    sb = await b.subscribe("r1", queue="q", durable=durable, start=pb.First)

    def figures() -> dict[str, int]:
        subs = subz(srv, "r1")
        return {"A": subs[sa.inbox]["last_sent"], "B": subs[sb.inbox]["last_sent"]}

    assert figures() == {"A": 3, "B": 0}
    cz = client_subz(srv, "B")
    assert [s["last_sent"] for s in cz["subscriptions"]["r1"]] == [0]
    if srv.store == "memory":
        return
    srv.stop()
    srv = start()
    assert figures() == {"A": 3, "B": 0}
    await a.drop()
    await b.drop()


async def test_member_leaving_hands_the_group_position_on(start: Any) -> None:
    """The member holding the group's last sent message leaves: the group
    still starts after it once recovered (no redelivery of old messages)."""
    srv = start()
    a = await StanClient.connect(srv.url, "A")
    b = await StanClient.connect(srv.url, "B")
    sa = await a.subscribe("r3", queue="q", durable="d", start=pb.First)
    sb = await b.subscribe("r3", queue="q", durable="d", start=pb.First)
    for i in range(4):
        await a.publish("r3", b"m%d" % i)
    await wait_for(lambda: len(sa.received) + len(sb.received) == 4)
    # every auto-ack processed: nothing pending is handed over at the close
    await wait_for(lambda: all(s["pending_count"] == 0 for s in subz(srv, "r3").values()))
    a_holds = any(m.sequence == 4 for m in sa.received)
    holder, other, other_sub = (a, b, sb) if a_holds else (b, a, sa)
    await holder.close()
    assert subz(srv, "r3")[other_sub.inbox]["last_sent"] == 4
    if srv.store == "memory":
        await other.drop()
        return
    srv.stop()
    srv = start()
    assert subz(srv, "r3")[other_sub.inbox]["last_sent"] == 4
    await other.drop()


@pytest.mark.parametrize("queue", ["", "q"])
async def test_offline_durable_keeps_is_stalled(start: Any, queue: str) -> None:
    srv = start()
    c = await StanClient.connect(srv.url, "C")
    sub = await c.subscribe(
        "r2", durable="d", queue=queue, manual_acks=True, max_inflight=1, start=pb.First
    )
    await c.publish("r2", b"x")
    await sub.take(1)
    online = subz(srv, "r2")[sub.inbox]
    assert (online["is_stalled"], online["pending_count"], online["is_offline"]) == (
        True,
        1,
        False,
    )
    await c.close()
    offline = subz(srv, "r2")[sub.inbox]
    assert (offline["is_offline"], offline["is_stalled"], offline["pending_count"]) == (
        True,
        True,
        1,
    )
    if srv.store == "memory":
        return
    srv.stop()
    srv = start()
    recovered = subz(srv, "r2")[sub.inbox]
    assert (recovered["is_offline"], recovered["is_stalled"], recovered["pending_count"]) == (
        True,
        True,
        1,
    )

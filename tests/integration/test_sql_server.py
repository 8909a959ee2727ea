"""A real nss process on the SQL store (``--store sql``), over the wire.

The Go server's PostgreSQL fixture is served as the manifest says (the
durable resumes with its unacked messages redelivered, the queue group has
nothing old, sequences continue), and what nss then writes survives a
restart. Skipped while the server does not offer the SQL store yet.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from stanclient import StanClient, StanError

from nss.pb import protocol_pb2 as pb

pytest_plugins = ["pg"]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "go-v0.25.6"


def _start(factory: Any, dsn: str, *extra: str) -> Any:
    try:
        return factory(
            "-st",
            "sql",
            "--sql_driver",
            "postgres",
            "--sql_source",
            dsn,
            "-sc",
            str(FIXTURES / "limits.conf"),
            *extra,
            cluster_id="fixture",
        )
    except AssertionError as e:
        if "not supported" in str(e):
            pytest.skip("the server does not offer the SQL store yet")
        raise


async def test_serve_go_postgres_fixture(pg_server: Any, nss_factory: Any) -> None:
    manifest = json.loads((FIXTURES / "postgres/manifest.json").read_text())
    pg_server.create_db("nss_server_fixture")
    pg_server.run_script("nss_server_fixture", (FIXTURES / "postgres/data.sql").read_text())
    dsn = pg_server.dsn("nss_server_fixture")
    srv = _start(nss_factory, dsn)

    reader = await StanClient.connect(srv.url, "reader", "fixture")
    for name, m in manifest["channels"].items():
        n = m["last"] - m["first"] + 1
        sub = await reader.subscribe(name, start=pb.First, max_inflight=10_000)
        got = await sub.take(n)
        assert [x.sequence for x in got] == list(range(m["first"], m["last"] + 1))
        assert [hashlib.sha256(x.data).hexdigest() for x in got] == m["sha256"]
        await sub.expect_nothing(0.1)
        await sub.unsubscribe()

    d = manifest["durables"][0]
    w = await StanClient.connect(srv.url, d["clientID"], "fixture", timeout=10)
    dur = await w.subscribe(d["channel"], durable=d["durable"], manual_acks=True, max_inflight=200)
    first = await dur.take(len(d["unacked_sent"]))
    assert sorted(x.sequence for x in first) == d["unacked_sent"]
    assert all(x.redelivered for x in first)
    rest = await dur.take(manifest["channels"][d["channel"]]["last"] - 50)
    assert [x.sequence for x in rest] == list(range(51, 121))
    for x in first + rest:
        await dur.ack(x)

    q = manifest["queue_durables"][0]
    qs = await w.subscribe(q["channel"], queue=q["group"], durable=q["durable"])
    await qs.expect_nothing(0.2)
    await w.publish(q["channel"], b"new")
    assert (await qs.next()).sequence == q["acked_through"] + 1
    await w.publish("orders", b"o121")
    m = await dur.next()
    assert m.sequence == 121
    await dur.ack(m)
    await dur.close()
    await w.close()
    await reader.close()
    srv.stop()

    srv2 = _start(nss_factory, dsn)
    w = await StanClient.connect(srv2.url, d["clientID"], "fixture", timeout=10)
    dur = await w.subscribe(d["channel"], durable=d["durable"], manual_acks=True)
    await dur.expect_nothing(0.3)  # everything was acked before the restart
    await w.publish("orders", b"o122")
    assert (await dur.next()).sequence == 122
    await w.close()


async def test_lost_database_under_the_server(pg_server: Any, nss_factory: Any) -> None:
    """Publishes fail while PostgreSQL is down (error PubAcks once the I/O
    path turns flush errors into them; timeouts before), the server stays
    up, and it serves again by itself when the database is back."""
    dsn = pg_server.create_db("nss_server_lost")
    srv = _start_plain(nss_factory, dsn)
    c = await StanClient.connect(srv.url, "c")
    sub = await c.subscribe("x", start=pb.First)
    for i in range(5):
        await c.publish("x", b"%d" % i)
    assert [m.data for m in await sub.take(5)] == [b"%d" % i for i in range(5)]
    pg_server.stop("fast")
    failed = 0
    try:
        for i in range(5, 8):
            try:
                await c.publish("x", b"%d" % i, timeout=1)
            except (StanError, TimeoutError):
                failed += 1
    finally:
        pg_server.start()
    assert failed >= 2
    t0 = time.monotonic()
    while True:
        try:
            await c.publish("x", b"back", timeout=1)
            break
        except (StanError, TimeoutError):
            assert time.monotonic() - t0 < 15
    got: list[bytes] = []
    while not got or got[-1] != b"back":
        got.append((await sub.next(10)).data)
    # an error PubAck means not stored: nothing of the failed batches came
    # back with the database (issue 9)
    assert got == [b"back"]
    await c.close()
    srv.stop()
    # what was acknowledged (and delivered) survived the restart
    srv = _start_plain(nss_factory, dsn)
    c = await StanClient.connect(srv.url, "c2")
    sub = await c.subscribe("x", start=pb.First)
    want = [b"%d" % i for i in range(5)] + got
    assert [m.data for m in await sub.take(len(want))] == want
    await sub.expect_nothing(0.2)
    await c.close()


def _start_plain(factory: Any, dsn: str) -> Any:
    try:
        return factory("-st", "sql", "--sql_driver", "postgres", "--sql_source", dsn)
    except AssertionError as e:
        if "not supported" in str(e):
            pytest.skip("the server does not offer the SQL store yet")
        raise

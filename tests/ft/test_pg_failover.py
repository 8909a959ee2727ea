"""An FT group on PostgreSQL made highly available by PostgreSQL itself:
the primary dies under acked load, its synchronous standby is promoted, and
the active nss follows it without losing anything it acknowledged.

The real topology, scaled down to one machine: two PostgreSQL servers from
``initdb`` (the standby a ``pg_basebackup -R`` copy, named in the primary's
``synchronous_standby_names``), two nss members of one FT group on a libpq
multi-host source (``host=a,b port=p1,p2 ... target_session_attrs=read-write``),
two node-nats-streaming publishers (chaos.js) publishing unique payloads
exactly once each and a durable subscriber acking what it gets. The
primary is stopped with ``pg_ctl -m immediate`` (no shutdown checkpoint,
connections cut: a crash as far as clients can tell);
once the active has noticed, the standby is promoted. The active must
reconnect through the other host, find the StoreLock row there still its own
with every commit it made, and serve again: the publishers' PubAcks in
between are errors (never an ack timeout), and the channel read afterwards
holds every acknowledged payload exactly once, and the durable resumed
afterwards gets exactly what follows its last ack (the chaos test's audit).
The time from the promotion to the first PubAck after it is printed.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from chaosclients import (
    ACK_TIMEOUT,
    NodeClient,
    audit_channel,
    audit_durable,
    audit_resumed,
    channel_info,
    ft_active_status,
    read_channel,
)
from conftest import FAST
from nodeenv import NODE, ensure_node_modules
from procs import READY_LINE, free_port
from stanclient import StanClient

from nss.pb import protocol_pb2 as pb

RATE = 250  # messages a second, per publisher
MAX_INFLIGHT = 2000
PUB_ACK_WAIT_MS = 5000
SUB_ACK_WAIT_MS = 3000
TRAFFIC = 100  # acks each publisher must get before the kill and after the promotion
# the goal is 2 s; the margin covers the publishers' 100 ms progress lines
# and a loaded test machine
RECOVERY_LIMIT = 3.0

if TYPE_CHECKING:
    from pg import PgServer

# the PostgreSQL helpers, imported once pytest registered (and rewrote) them
pytest_plugins = ["pg"]

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed: the chaos clients need it"),
    pytest.mark.timeout(120),
]


@pytest.fixture(scope="module", autouse=True)
def node_modules() -> None:
    problem = ensure_node_modules()
    if problem:
        pytest.fail(problem)


@pytest.fixture
def pg_pair() -> Iterator[tuple[PgServer, PgServer]]:
    from pg import find_bindir, replicated_pair

    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql)")
    primary, standby = replicated_pair(bindir)
    try:
        yield primary, standby
    finally:
        standby.destroy()
        primary.destroy()


def multi_host_source(primary: PgServer, standby: PgServer, dbname: str) -> str:
    return (
        f"host=127.0.0.1,127.0.0.1 port={primary.port},{standby.port} dbname={dbname} "
        "user=postgres sslmode=disable target_session_attrs=read-write"
    )


def test_active_follows_the_promoted_standby_without_losing_acked_messages(
    ft_member, pg_pair: tuple[PgServer, PgServer]
) -> None:
    primary, standby = pg_pair
    primary.create_db("nss_failover")
    source = multi_host_source(primary, standby, "nss_failover")
    store = ("-store", "sql", "--sql_driver", "postgres", "--sql_source", source)
    url = ft_member.nats.url
    ports = [free_port(), free_port()]
    a = ft_member(*FAST, "-m", str(ports[0]), store=store)
    a.wait_for_line(READY_LINE, timeout=20)
    b = ft_member(*FAST, "-m", str(ports[1]), store=store)
    b.wait_for_line("Starting in standby mode", timeout=20)

    durable = NodeClient("durable", url, "pg-durable", "dur", SUB_ACK_WAIT_MS)
    pubs = [
        NodeClient("publisher", url, pid, RATE, MAX_INFLIGHT, PUB_ACK_WAIT_MS)
        for pid in ("A", "B")
    ]
    clients = [durable, *pubs]
    try:
        for p in pubs:
            p.wait_progress(lambda pr: pr["progress"] >= TRAFFIC, timeout=15)
        durable.wait_progress(lambda pr: pr["progress"] >= TRAFFIC, timeout=15)

        primary.stop("immediate")
        a.wait_for_line("SQL store: database error, retrying in the background", timeout=10)
        # the operator (or Patroni) takes a moment: promote once each
        # publisher had a second's worth of publishes refused
        for p in pubs:
            p.wait_progress(lambda pr: pr["unacked"] >= RATE, timeout=10)
        base = [p.progress["progress"] for p in pubs]
        standby.promote()
        promoted = time.monotonic()
        for p, n in zip(pubs, base, strict=True):
            p.wait_progress(lambda pr, n=n: pr["progress"] > n, timeout=10)
        recovery = time.monotonic() - promoted
        for p, n in zip(pubs, base, strict=True):
            p.wait_progress(lambda pr, n=n: pr["progress"] >= n + TRAFFIC, timeout=15)
        got = durable.progress["progress"]
        durable.wait_progress(lambda pr: pr["progress"] >= got + TRAFFIC, timeout=15)

        for p in pubs:
            p.stop()
        results = [p.wait_result(PUB_ACK_WAIT_MS / 1000 + 15) for p in pubs]
        durable.stop()
        dres = durable.wait_result(15)
        info = channel_info(ports[0])
        stored = asyncio.run(read_channel(url, info["last_seq"]))
        by_seq = {m.sequence: m.data.decode() for m in stored}
        resumed = NodeClient(
            "resume", url, "pg-durable", "dur", SUB_ACK_WAIT_MS, dres["last_acked"], len(stored)
        )
        clients.append(resumed)
        rres = resumed.wait_result(30)
    finally:
        for c in clients:
            c.kill()

    # the same active serves on the promoted server; the standby never moved
    assert ft_active_status(ports[0]) == 200 and ft_active_status(ports[1]) == 204
    assert "Server is active" not in b.log_text()
    a.wait_for_line(
        f"SQL store: reached a writable database at 127.0.0.1:{standby.port} "
        f"(was 127.0.0.1:{primary.port}), StoreLock still owned, no commit missing",
        timeout=1,
    )
    restored = a.wait_for_line("SQL store: database connection restored", timeout=1)
    outage = float(re.search(r"resumed ([0-9.]+) s after", restored).group(1))  # type: ignore[union-attr]

    # every acked message stored once, in order; the durable's acks and
    # redeliveries carried over to the promoted server
    assert info["first_seq"] == 1 and info["msgs"] == len(stored), info
    stats = audit_channel(stored, results)
    stats["durable"] = audit_durable(by_seq, dres)
    stats["resumed"] = audit_resumed(by_seq, dres, rres)
    for res in results:
        # every publish answered in the outage was refused, none left unanswered
        assert ACK_TIMEOUT not in res["errors"], res["errors"]
    for m in (a, b):
        assert "Traceback" not in m.log_text(), m.log_text()[-5000:]
    stats["stored"] = len(stored)
    stats["recovery_after_promotion_s"] = round(recovery, 2)
    stats["server_outage_s"] = outage
    print("pg-failover:", json.dumps(stats))
    assert recovery < RECOVERY_LIMIT, f"served again only {recovery:.2f} s after the promotion"


async def test_commits_held_for_a_missing_standby_are_reported_and_refused(
    ft_member, pg_pair: tuple[PgServer, PgServer]
) -> None:
    """The other side of synchronous replication: while the standby is
    down the primary holds every commit until one confirms it (that is what
    makes "acknowledged" mean "on two machines"). nss must not leave
    publishers without an answer meanwhile: after ``COMMIT_STALL`` it says
    what the commit waits for and refuses new publishes with an error
    PubAck; once the standby is back the held commit goes through (its
    publisher is acknowledged, late) and writes resume. The FT standby,
    which hears no heartbeat while the active's lock check is held too,
    cannot take over: its lock attempt waits on the row the held commit
    locks, then finds the active alive."""
    primary, standby = pg_pair
    primary.create_db("nss_syncrep")
    source = multi_host_source(primary, standby, "nss_syncrep")
    store = ("-store", "sql", "--sql_driver", "postgres", "--sql_source", source)
    ports = [free_port(), free_port()]
    a = ft_member(*FAST, "-m", str(ports[0]), store=store)
    a.wait_for_line(READY_LINE, timeout=20)
    b = ft_member(*FAST, "-m", str(ports[1]), store=store)
    b.wait_for_line("Starting in standby mode", timeout=20)
    c = await StanClient.connect(ft_member.nats.url, "held", ping_interval=1, ping_max_out=100)
    for i in range(5):
        await c.publish("ch", b"%d" % i)

    standby.stop("immediate")
    held = c.publish_async("ch", b"held")
    await asyncio.to_thread(
        a.wait_for_line,
        "SQL store: a commit has not been confirmed for 2 s, refusing writes until it is",
        10,
    )
    await asyncio.to_thread(
        a.wait_for_line,
        "SQL store: the commit is stalled: the database waits for a synchronous standby "
        "to confirm it (wait_event SyncRep)",
        5,
    )
    err = await asyncio.wait_for(c.publish_async("ch", b"refused"), 5)
    assert "synchronous standby" in err
    assert not held.done()

    standby.start()
    assert await asyncio.wait_for(held, 30) == ""  # acknowledged once stored on both
    resumed = await asyncio.to_thread(
        a.wait_for_line, "SQL store: the stalled commit was confirmed, writes resumed", 5
    )
    print("syncrep:", resumed.split("STREAM: ", 1)[-1])
    await asyncio.to_thread(
        b.wait_for_line, "ft: unable to get store lock at this time, going back to standby", 15
    )
    assert "Server is active" not in b.log_text()
    assert ft_active_status(ports[0]) == 200 and ft_active_status(ports[1]) == 204
    await c.publish("ch", b"after")
    sub = await c.subscribe("ch", start=pb.First)
    got = [m.data for m in await sub.take(7, timeout=10)]
    assert got == [b"0", b"1", b"2", b"3", b"4", b"held", b"after"]
    await sub.expect_nothing(0.3)
    await c.close()

"""SQL store against a real PostgreSQL (tests/pg.py starts one).

The store contract (the same behaviour as the MEMORY store, stores.md §1-2)
in both caching modes, the Go row shapes (§4), recovery of a database written
by the Go server (the fixture), the schema check, a database that goes away
under a running store, and FT fencing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from nss import log
from nss.options import ChannelLimits, Options, SQLOptions, StoreLimits
from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb
from nss.sql import script as schema_script
from nss.stores.base import StoreError
from nss.stores.sql import SQLMsgStore, SQLStore
from nss.stores.sql import msgs as sqlmod

pytest_plugins = ["pg"]

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "go-v0.25.6" / "postgres"
TABLES = "ServerInfo, Clients, Channels, Messages, Subscriptions, SubsPending, StoreLock"


def msg(seq: int, ts: int, payload: bytes = b"x" * 128, subject: str = "foo") -> bytes:
    return pb.MsgProto(
        sequence=seq, subject=subject, data=payload, timestamp=ts
    ).SerializeToString()


@pytest.fixture
def dsn(pg_db: str) -> str:
    with psycopg.connect(pg_db, autocommit=True) as c:
        c.execute(f"TRUNCATE {TABLES}")  # type: ignore[arg-type]
    return pg_db


@pytest.fixture(params=[False, True], ids=["caching", "no_caching"])
def no_caching(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


class Opener:
    """Opens stores on the test database and closes them at the end."""

    def __init__(self, dsn: str, no_caching: bool) -> None:
        self.dsn = dsn
        self.no_caching = no_caching
        self.stores: list[SQLStore] = []

    def __call__(
        self,
        limits: StoreLimits | None = None,
        no_caching: bool | None = None,
        ft: bool = False,
        **opts: Any,
    ) -> SQLStore:
        nc = self.no_caching if no_caching is None else no_caching
        o = SQLOptions(driver="postgres", source=self.dsn, no_caching=nc, **opts)
        s = SQLStore(limits or StoreLimits(), o, ft=ft)
        self.stores.append(s)
        return s

    async def fresh(self, **kw: Any) -> SQLStore:
        s = self(**kw)
        assert s.recover() is None
        s.init(spb.ServerInfo(ClusterID="test-cluster", Discovery="_STAN.discover.test-cluster"))
        await s.flush()
        return s

    async def reopen(self, old: SQLStore, **kw: Any) -> tuple[SQLStore, Any]:
        await old.close()
        s = self(**kw)
        rs = s.recover()
        assert rs is not None
        return s, rs


@pytest.fixture
async def opener(dsn: str, no_caching: bool) -> AsyncIterator[Opener]:
    o = Opener(dsn, no_caching)
    yield o
    for s in o.stores:
        await s.close()


def rows(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as c:
        cur = c.execute(sql, params)  # type: ignore[arg-type]
        return list(cur.fetchall()) if cur.description else []


# =============================================================== schema


def test_schema_scripts_idempotent_and_drop(pg_server: Any) -> None:
    pg_server.create_db("nss_schema_scripts")
    pg_server.run_script("nss_schema_scripts", schema_script("postgres"))
    dsn = pg_server.dsn("nss_schema_scripts")
    idx = {r[0] for r in rows(dsn, "SELECT indexname FROM pg_indexes WHERE schemaname='public'")}
    assert {"idx_channelsname", "idx_msgstimestamp", "idx_subspendingseq"} <= idx
    cols = rows(
        dsn,
        "SELECT column_name FROM information_schema.columns WHERE table_name='messages' "
        "ORDER BY ordinal_position",
    )
    assert [c[0] for c in cols] == ["id", "seq", "timestamp", "size", "data"]
    pg_server.run_script("nss_schema_scripts", schema_script("drop_postgres"))
    assert rows(dsn, "SELECT tablename FROM pg_tables WHERE schemaname='public'") == []


def test_schema_check_names_missing_column(pg_server: Any) -> None:
    pg_server.create_db("nss_schema_missing")
    dsn = pg_server.dsn("nss_schema_missing")
    rows_sql = "ALTER TABLE Clients DROP COLUMN proto"
    pg_server.admin(rows_sql, "nss_schema_missing")
    with pytest.raises(StoreError) as ei:
        SQLStore(StoreLimits(), SQLOptions(driver="postgres", source=dsn))
    assert "Clients.proto" in str(ei.value)
    assert "ALTER TABLE Clients ADD proto BYTEA" in str(ei.value)
    pg_server.admin("DROP TABLE StoreLock", "nss_schema_missing")
    with pytest.raises(StoreError) as ei:
        SQLStore(StoreLimits(), SQLOptions(driver="postgres", source=dsn))
    assert "table StoreLock is missing" in str(ei.value)
    assert "CREATE TABLE IF NOT EXISTS StoreLock (id VARCHAR(30), tick BIGINT DEFAULT 0)" in str(
        ei.value
    )
    # what the message says fixes it
    pg_server.admin("ALTER TABLE Clients ADD proto BYTEA", "nss_schema_missing")
    pg_server.admin(
        "CREATE TABLE IF NOT EXISTS StoreLock (id VARCHAR(30), tick BIGINT DEFAULT 0)",
        "nss_schema_missing",
    )
    s = SQLStore(StoreLimits(), SQLOptions(driver="postgres", source=dsn))
    asyncio.run(s.close())


def test_unreachable_database_fails_at_open(pg_server: Any) -> None:
    src = f"host=127.0.0.1 port={pg_server.port + 1} dbname=x user=postgres sslmode=disable"
    with pytest.raises(StoreError, match="unable to open the database"):
        SQLStore(StoreLimits(), SQLOptions(driver="postgres", source=src))


def test_url_source(pg_server: Any, pg_db: str) -> None:
    dbname = dict(kv.split("=", 1) for kv in pg_db.split())["dbname"]
    s = SQLStore(StoreLimits(), SQLOptions(driver="postgres", source=pg_server.url(dbname)))
    asyncio.run(s.close())


# =============================================================== contract: messages


async def test_fresh_store_and_server_info(opener: Opener, dsn: str) -> None:
    s = await opener.fresh()
    assert s.name == "SQL"
    assert rows(dsn, "SELECT uniquerow, id, version FROM ServerInfo") == [(1, "test-cluster", 1)]
    s.init(spb.ServerInfo(ClusterID="test-cluster", Discovery="other"))
    await s.flush()
    s2, rs = await opener.reopen(s)
    assert rs.info.Discovery == "other"
    assert rs.channels == {} and rs.clients == []


async def test_channels_without_server_info(opener: Opener, dsn: str) -> None:
    s = await opener.fresh()
    s.create_channel("foo").msgs.store(1, 1, msg(1, 1))
    await s.flush()
    await s.close()
    rows(dsn, "DELETE FROM ServerInfo")
    s2 = opener()
    with pytest.raises(StoreError) as ei:
        s2.recover()
    assert str(ei.value) == "no server state recovered but channels present"
    # what the server does then: init (written at once), recover again
    s2.init(spb.ServerInfo(ClusterID="test-cluster"))
    rs = s2.recover()
    assert rs is not None and rs.channels["foo"].channel.msgs.last_sequence() == 1


async def test_store_lookup_recover(opener: Opener, dsn: str) -> None:
    s = await opener.fresh()
    cs = s.create_channel("foo")
    ms = cs.msgs
    assert (ms.first_sequence(), ms.last_sequence()) == (0, 0)
    datas = [msg(i, 1000 + i) for i in range(1, 11)]
    for i, d in enumerate(datas, 1):
        ms.store(i, 1000 + i, d)
    ms.store(5, 0, b"ignored")  # seq <= last: ignored
    assert ms.lookup(3) == datas[2]  # before flush: from memory
    await ms.flush()
    assert ms.state() == (10, sum(len(d) for d in datas))
    assert (ms.first_sequence(), ms.last_sequence()) == (1, 10)
    assert ms.lookup(0) is None and ms.lookup(11) is None
    assert ms.timestamp_of(4) == 1004
    db = rows(dsn, "SELECT id, seq, timestamp, size, data FROM Messages ORDER BY seq")
    assert [(r[1], r[2], r[3], bytes(r[4])) for r in db] == [
        (i, 1000 + i, len(d), d) for i, d in enumerate(datas, 1)
    ]
    s2, rs = await opener.reopen(s)
    ms2 = rs.channels["foo"].channel.msgs
    assert (ms2.first_sequence(), ms2.last_sequence()) == (1, 10)
    assert ms2.state() == ms.state()
    assert [ms2.lookup(i) for i in range(1, 11)] == datas
    assert ms2.timestamp_of(10) == 1010
    ms2.store(11, 2000, msg(11, 2000))
    await s2.flush()
    assert rows(dsn, "SELECT MAX(seq) FROM Messages") == [(11,)]


async def test_lookup_beyond_cache_reads_ahead(opener: Opener, monkeypatch: Any) -> None:
    s = await opener.fresh()
    ms = s.create_channel("big").msgs
    assert isinstance(ms, SQLMsgStore)
    n = sqlmod.RECENT_MSGS + 3000
    for i in range(1, n + 1):
        ms.store(i, i, msg(i, i, b"%d" % i))
        if i % 1000 == 0:
            await s.flush()
    await s.flush()
    assert 1 not in ms._recent  # evicted: must come from the database
    queries = 0
    real = s.read

    def counting(fn: Callable[[Any], Any]) -> Any:
        nonlocal queries
        queries += 1
        return real(fn)

    monkeypatch.setattr(s, "read", counting)
    for i in range(1, 2001):
        d = ms.lookup(i)
        assert d is not None and pb.MsgProto.FromString(d).data == b"%d" % i
    assert queries < 15  # read-ahead, not one query per message
    await ms.prefetch(2500, 2600)
    q0 = queries
    assert ms.lookup(2550) is not None
    assert queries == q0


async def test_one_transaction_for_all_channels(opener: Opener, dsn: str) -> None:
    s = await opener.fresh()
    chans = [s.create_channel(f"c{i}") for i in range(5)]
    for cs in chans:
        for q in range(1, 101):
            cs.msgs.store(q, q, msg(q, q))
    await chans[0].msgs.flush()  # the first flush commits every channel
    for cs in chans[1:]:
        await cs.msgs.flush()
    xmins = rows(dsn, "SELECT DISTINCT xmin::text FROM Messages")
    assert len(xmins) == 1
    assert rows(dsn, "SELECT COUNT(*) FROM Messages") == [(500,)]


async def test_max_msgs_and_bytes(opener: Opener, dsn: str) -> None:
    limits = StoreLimits(max_msgs=5)
    s = await opener.fresh(limits=limits)
    ms = s.create_channel("lim").msgs
    for i in range(1, 4):
        ms.store(i, i, msg(i, i))
    await s.flush()
    for i in range(4, 13):  # drops committed (1..3) and uncommitted (4..7) ones
        ms.store(i, i, msg(i, i))
    assert ms.state()[0] == 5 and ms.first_sequence() == 8
    assert ms.lookup(7) is None and ms.lookup(8) is not None
    await s.flush()
    assert [r[0] for r in rows(dsn, "SELECT seq FROM Messages ORDER BY seq")] == list(range(8, 13))
    # bytes: keep at least one message even if it alone is too big
    s.limits.per_channel = {}
    s.limits.max_msgs = 0
    s.limits.max_bytes = 300
    ms2 = s.create_channel("bytes").msgs
    one = len(msg(1, 1))
    for i in range(1, 6):
        ms2.store(i, i, msg(i, i))
    assert ms2.state() == (300 // one, (300 // one) * one)
    ms2.store(6, 6, msg(6, 6, b"y" * 1000))
    assert ms2.state()[0] == 1 and ms2.first_sequence() == 6
    await s.flush()
    s2, rs = await opener.reopen(s, limits=limits)
    ms3 = rs.channels["lim"].channel.msgs
    assert (ms3.first_sequence(), ms3.last_sequence(), ms3.state()[0]) == (8, 12, 5)
    # steady state at the limit after a restart reads the oldest sizes in windows
    for i in range(13, 40):
        ms3.store(i, i, msg(i, i))
    await s2.flush()
    assert [r[0] for r in rows(dsn, "SELECT seq FROM Messages WHERE id=1 ORDER BY seq")] == list(
        range(35, 40)
    )


async def test_limits_lowered_on_recovery(opener: Opener, dsn: str) -> None:
    s = await opener.fresh()
    ms = s.create_channel("foo").msgs
    for i in range(1, 21):
        ms.store(i, i, msg(i, i))
    await s.flush()
    s2, rs = await opener.reopen(s, limits=StoreLimits(max_msgs=8))
    ms2 = rs.channels["foo"].channel.msgs
    assert (ms2.first_sequence(), ms2.last_sequence(), ms2.state()[0]) == (13, 20, 8)
    assert rows(dsn, "SELECT maxmsgs FROM Channels") == [(8,)]
    one = len(msg(1, 1))
    s3, rs = await opener.reopen(s2, limits=StoreLimits(max_msgs=8, max_bytes=3 * one))
    ms3 = rs.channels["foo"].channel.msgs
    assert (ms3.first_sequence(), ms3.last_sequence()) == (18, 20)


async def test_max_age(opener: Opener, dsn: str) -> None:
    limits = StoreLimits(max_age=10.0)
    s = await opener.fresh(limits=limits)
    ms = s.create_channel("age").msgs
    now = time.time_ns()
    for i in range(1, 6):
        ms.store(i, now - 20_000_000_000 + i, msg(i, 0))  # 20 s old
    for i in range(6, 9):
        ms.store(i, now - 5_000_000_000, msg(i, 0))  # 5 s old
    await s.flush()
    assert ms.lookup(2) is None  # hidden at once even before expiry runs
    nxt = ms.expire(now)
    assert nxt is not None and 4.9 < nxt <= 5.0
    assert (ms.first_sequence(), ms.state()[0]) == (6, 3)
    await s.flush()
    assert [r[0] for r in rows(dsn, "SELECT seq FROM Messages ORDER BY seq")] == [6, 7, 8]
    assert ms.expire(now + 6_000_000_000) is None
    assert (ms.first_sequence(), ms.last_sequence(), ms.state()) == (9, 8, (0, 0))
    await s.flush()
    assert rows(dsn, "SELECT COUNT(*) FROM Messages") == [(0,)]
    assert rows(dsn, "SELECT maxseq FROM Channels") == [(8,)]
    s2, rs = await opener.reopen(s, limits=limits)
    ms2 = rs.channels["age"].channel.msgs
    assert (ms2.first_sequence(), ms2.last_sequence()) == (9, 8)
    ms2.store(9, time.time_ns(), msg(9, 0))
    assert (ms2.first_sequence(), ms2.last_sequence()) == (9, 9)
    await s2.flush()


async def test_age_on_recovery(opener: Opener) -> None:
    s = await opener.fresh()
    ms = s.create_channel("age").msgs
    now = time.time_ns()
    for i in range(1, 4):
        ms.store(i, now - 100_000_000_000, msg(i, 0))
    await s.flush()
    s2, rs = await opener.reopen(s, limits=StoreLimits(max_age=10.0))
    ms2 = rs.channels["age"].channel.msgs
    assert (ms2.first_sequence(), ms2.last_sequence(), ms2.state()[0]) == (4, 3, 0)
    # the sequence survives another restart with nothing stored
    s3, rs = await opener.reopen(s2)
    assert rs.channels["age"].channel.msgs.last_sequence() == 3


async def test_sequence_from_timestamp_and_empty(opener: Opener, dsn: str) -> None:
    s = await opener.fresh()
    ms = s.create_channel("ts").msgs
    assert ms.get_sequence_from_timestamp(5) == 0
    n = sqlmod.RECENT_MSGS + 100
    for i in range(1, n + 1):
        ms.store(i, i * 10, msg(i, i * 10))
    await s.flush()
    for i in range(n + 1, n + 11):
        ms.store(i, i * 10, msg(i, i * 10))  # uncommitted
    assert ms.get_sequence_from_timestamp(0) == 1
    assert ms.get_sequence_from_timestamp(15) == 2
    assert ms.get_sequence_from_timestamp(20) == 2
    assert ms.get_sequence_from_timestamp((n + 5) * 10) == n + 5
    assert ms.get_sequence_from_timestamp(10**12) == n + 11
    ms.empty()
    assert (ms.first_sequence(), ms.last_sequence(), ms.state()) == (n + 11, n + 10, (0, 0))
    assert ms.lookup(n) is None
    await s.flush()
    assert rows(dsn, "SELECT COUNT(*) FROM Messages") == [(0,)]
    s2, rs = await opener.reopen(s)
    assert rs.channels["ts"].channel.msgs.last_sequence() == n + 10


# =============================================================== contract: channels, clients


async def test_channels(opener: Opener, dsn: str) -> None:
    s = await opener.fresh(limits=StoreLimits(max_channels=2))
    a = s.create_channel("a")
    s.create_channel("b")
    with pytest.raises(StoreError, match="already exists"):
        s.create_channel("a")
    with pytest.raises(StoreError, match="too many channels"):
        s.create_channel("c")
    with pytest.raises(StoreError, match="not found"):
        s.delete_channel("zz")
    for q in range(1, 2501):
        a.msgs.store(q, q, msg(q, q))
    st = spb.SubState(clientID="me", inbox="i")
    a.subs.create_sub(st)
    a.subs.add_seq_pending(st.ID, 1)
    await s.flush()
    s.delete_channel("a")
    c = s.create_channel("c")  # room again
    await s.flush()
    assert rows(dsn, "SELECT name, deleted FROM Channels ORDER BY id") in (
        [("a", True), ("b", False), ("c", False)],
        [("b", False), ("c", False)],
    )
    assert rows(dsn, "SELECT id FROM Channels WHERE name='c'") == [(3,)]
    for _ in range(100):  # the background purge
        if rows(dsn, "SELECT COUNT(*) FROM Channels WHERE name='a'") == [(0,)]:
            break
        await asyncio.sleep(0.05)
    assert rows(dsn, "SELECT COUNT(*) FROM Messages") == [(0,)]
    assert rows(dsn, "SELECT COUNT(*) FROM Subscriptions") == [(0,)]
    assert rows(dsn, "SELECT COUNT(*) FROM SubsPending") == [(0,)]
    c.msgs.store(1, 1, msg(1, 1))
    await s.flush()
    s2, rs = await opener.reopen(s, limits=StoreLimits(max_channels=2))
    assert sorted(rs.channels) == ["b", "c"]
    assert rs.channels["c"].channel.msgs.last_sequence() == 1
    # recovered channels count and can be deleted
    with pytest.raises(StoreError, match="already exists"):
        s2.create_channel("b")
    with pytest.raises(StoreError, match="too many channels"):
        s2.create_channel("d")
    s2.delete_channel("b")
    s2.create_channel("d")
    await s2.flush()


async def test_deleted_channel_purged_after_restart(opener: Opener, dsn: str) -> None:
    s = await opener.fresh()
    a = s.create_channel("a")
    a.msgs.store(1, 1, msg(1, 1))
    await s.flush()
    # as if the process died right after the fast delete
    rows(dsn, "UPDATE Channels SET deleted=TRUE")
    s2, rs = await opener.reopen(s)
    assert rs.channels == {}
    s2.create_channel("b")
    await s2.flush()
    # the purge deletes the messages, then the channel's row: wait for both
    deadline = asyncio.get_running_loop().time() + 20
    while asyncio.get_running_loop().time() < deadline:
        if rows(dsn, "SELECT name FROM Channels") == [("b",)]:
            break
        await asyncio.sleep(0.05)
    assert rows(dsn, "SELECT COUNT(*) FROM Messages") == [(0,)]
    assert rows(dsn, "SELECT name FROM Channels") == [("b",)]


async def test_clients(opener: Opener, dsn: str) -> None:
    s = await opener.fresh()
    s.add_client(spb.ClientInfo(ID="c1", HbInbox="hb1", ConnID=b"x", Protocol=1))
    s.add_client(spb.ClientInfo(ID="c2", HbInbox="hb2"))
    await s.flush()
    s.add_client(spb.ClientInfo(ID="c1", HbInbox="hb1b", PingInterval=5))  # replaces
    s.delete_client("c2")
    await s.flush()
    assert rows(dsn, "SELECT id, hbinbox FROM Clients") == [("c1", "hb1b")]
    rows(dsn, "INSERT INTO Clients (id, hbinbox) VALUES ('old', 'hbold')")  # pre-0.10 row
    s2, rs = await opener.reopen(s)
    got = {c.ID: c for c in rs.clients}
    assert got["c1"].HbInbox == "hb1b" and got["c1"].PingInterval == 5
    assert got["old"].HbInbox == "hbold"


# =============================================================== contract: subscriptions


async def test_sub_ids_global_and_limits(opener: Opener, dsn: str) -> None:
    s = await opener.fresh(limits=StoreLimits(max_subscriptions=2))
    a, b = s.create_channel("a"), s.create_channel("b")
    s1, s2, s3 = spb.SubState(clientID="x"), spb.SubState(clientID="x"), spb.SubState()
    a.subs.create_sub(s1)
    b.subs.create_sub(s2)
    a.subs.create_sub(s3)
    assert (s1.ID, s2.ID, s3.ID) == (1, 2, 3)
    with pytest.raises(StoreError, match="too many subscriptions per channel"):
        a.subs.create_sub(spb.SubState())
    a.subs.delete_sub(3)  # the max ID: only marked deleted
    await s.flush()
    assert rows(dsn, "SELECT subid, deleted FROM Subscriptions ORDER BY subid") == [
        (1, False),
        (2, False),
        (3, True),
    ]
    s4 = spb.SubState(clientID="y")
    a.subs.create_sub(s4)  # room again; the marked row goes
    assert s4.ID == 4
    a.subs.delete_sub(1)
    s4.durableName = "dur"
    a.subs.update_sub(s4)
    b.subs.update_sub(spb.SubState(ID=77, clientID="z"))  # unknown: created
    await s.flush()
    assert rows(dsn, "SELECT id, subid, deleted FROM Subscriptions ORDER BY subid") == [
        (2, 2, False),
        (1, 4, False),
        (2, 77, False),
    ]
    st2, rs = await opener.reopen(s, limits=StoreLimits(max_subscriptions=2))
    subs = {r.sub.ID: r.sub for rc in rs.channels.values() for r in rc.subscriptions}
    assert subs[4].durableName == "dur" and set(subs) == {2, 4, 77}
    n = spb.SubState()
    rs.channels["a"].channel.subs.create_sub(n)
    assert n.ID == 78  # MAX(subid) + 1 across channels


async def test_pending_acks_recovery(opener: Opener, dsn: str, no_caching: bool) -> None:
    s = await opener.fresh()
    cs = s.create_channel("p")
    for q in range(1, 31):
        cs.msgs.store(q, q, msg(q, q))
    sub = spb.SubState(clientID="c", durableName="d", isDurable=True, maxInFlight=100)
    cs.subs.create_sub(sub)
    other = spb.SubState(clientID="c")
    cs.subs.create_sub(other)
    for q in range(1, 11):
        cs.subs.add_seq_pending(sub.ID, q)
    await s.flush()
    for q in (2, 4, 6):
        cs.subs.ack_seq_pending(sub.ID, q)
    for q in range(11, 21):
        cs.subs.add_seq_pending(sub.ID, q)
    cs.subs.ack_seq_pending(sub.ID, 15)  # never written in caching mode
    cs.subs.add_seq_pending(other.ID, 30)
    cs.subs.ack_seq_pending(other.ID, 30)
    await s.flush()
    for q in (1, 3):
        cs.subs.ack_seq_pending(sub.ID, q)
    await s.flush()
    want = set(range(1, 21)) - {1, 2, 3, 4, 6, 15}
    pend = rows(dsn, "SELECT subid, row, seq, lastsent, pending, acks FROM SubsPending")
    if no_caching:
        assert all(r[2] > 0 and r[4] is None for r in pend)
        assert sorted(r[2] for r in pend) == sorted(want)
    else:
        assert all(r[2] == 0 for r in pend)
        for r in pend:
            json.loads(bytes(r[4]) or b"[]")
    s2, rs = await opener.reopen(s)
    got = {r.sub.ID: r for r in rs.channels["p"].subscriptions}
    assert got[sub.ID].pending == want
    assert got[sub.ID].sub.lastSent == 20
    assert got[other.ID].pending == set()
    assert got[other.ID].sub.lastSent == 30
    # ack everything: no SubsPending row is left behind
    cs2 = rs.channels["p"].channel
    for q in sorted(want):
        cs2.subs.ack_seq_pending(sub.ID, q)
    await s2.flush()
    assert rows(dsn, "SELECT COUNT(*) FROM SubsPending") == [(0,)]
    s3, rs = await opener.reopen(s2)
    got = {r.sub.ID: r for r in rs.channels["p"].subscriptions}
    assert got[sub.ID].pending == set() and got[sub.ID].sub.lastSent == 20


@pytest.mark.parametrize("write_nc,read_nc", [(False, True), (True, False)])
async def test_recovery_across_modes(
    opener: Opener, dsn: str, write_nc: bool, read_nc: bool
) -> None:
    s = await opener.fresh(no_caching=write_nc)
    cs = s.create_channel("x")
    sub = spb.SubState(clientID="c", isDurable=True, durableName="d")
    cs.subs.create_sub(sub)
    for q in range(1, 11):
        cs.msgs.store(q, q, msg(q, q))
        cs.subs.add_seq_pending(sub.ID, q)
    await s.flush()
    for q in (1, 2, 9):
        cs.subs.ack_seq_pending(sub.ID, q)
    await s.flush()
    s2, rs = await opener.reopen(s, no_caching=read_nc)
    r = rs.channels["x"].subscriptions[0]
    assert r.pending == set(range(3, 11)) - {9}
    cs2 = rs.channels["x"].channel
    for q in (3, 4):
        cs2.subs.ack_seq_pending(sub.ID, q)
    cs2.subs.add_seq_pending(sub.ID, 11)
    cs2.msgs.store(11, 11, msg(11, 11))
    await s2.flush()
    s3, rs = await opener.reopen(s2, no_caching=write_nc)
    assert rs.channels["x"].subscriptions[0].pending == {5, 6, 7, 8, 10, 11}


# =============================================================== the Go server's database


def _load_fixture(pg_server: Any, name: str) -> str:
    pg_server.create_db(name)
    pg_server.run_script(name, (FIXTURE / "data.sql").read_text())
    return pg_server.dsn(name)


@pytest.mark.parametrize("nc", [False, True], ids=["caching", "no_caching"])
async def test_recover_go_fixture(pg_server: Any, nc: bool) -> None:
    manifest = json.loads((FIXTURE / "manifest.json").read_text())
    dsn = _load_fixture(pg_server, "nss_go_fixture")
    limits = StoreLimits(per_channel={"limits.chan": ChannelLimits(max_msgs=50)})
    s = SQLStore(limits, SQLOptions(driver="postgres", source=dsn, no_caching=nc))
    try:
        rs = s.recover()
        assert rs is not None
        assert rs.info.ClusterID == manifest["cluster"] == "fixture"
        assert [c.ID for c in rs.clients] == manifest["registered_clients"]
        assert set(rs.channels) == set(manifest["channels"])
        for name, m in manifest["channels"].items():
            ms = rs.channels[name].channel.msgs
            assert (ms.first_sequence(), ms.last_sequence()) == (m["first"], m["last"])
            got = []
            for q in range(m["first"], m["last"] + 1):
                data = ms.lookup(q)
                assert data is not None
                mp = pb.MsgProto.FromString(data)
                assert mp.sequence == q and mp.subject == name
                got.append(hashlib.sha256(mp.data).hexdigest())
            assert got == m["sha256"]
        d = manifest["durables"][0]
        orders = rs.channels[d["channel"]]
        dur = [r for r in orders.subscriptions if r.sub.durableName == d["durable"]]
        assert len(dur) == 1
        assert dur[0].sub.clientID == d["clientID"]
        assert dur[0].pending == set(d["unacked_sent"])
        assert dur[0].sub.lastSent == 50
        qd = manifest["queue_durables"][0]
        grp = [r for r in rs.channels[qd["channel"]].subscriptions if r.sub.qGroup]
        assert grp[0].sub.qGroup == f"{qd['durable']}:{qd['group']}"
        assert grp[0].sub.lastSent == qd["acked_through"] and grp[0].pending == set()
        # the next message of a channel gets last + 1; IDs continue from the Go ones
        ch = rs.channels["orders"].channel
        ch.msgs.store(121, time.time_ns(), msg(121, 0, subject="orders"))
        st = spb.SubState(clientID="nss")
        ch.subs.create_sub(st)
        assert st.ID == 4
        c = s.create_channel("new.chan")
        await s.flush()
        assert rows(dsn, "SELECT id FROM Channels WHERE name='new.chan'") == [(5,)]
        # resume the durable and ack what it had pending: rows as Go would write
        for q in range(41, 51):
            ch.subs.ack_seq_pending(dur[0].sub.ID, q)
        await s.flush()
        assert rows(dsn, "SELECT COUNT(*) FROM SubsPending WHERE subid=1") == [(0,)]
        del c
    finally:
        await s.close()
    s2 = SQLStore(limits, SQLOptions(driver="postgres", source=dsn, no_caching=nc))
    try:
        rs = s2.recover()
        assert rs is not None
        assert rs.channels["orders"].channel.msgs.last_sequence() == 121
        dur = [r for r in rs.channels["orders"].subscriptions if r.sub.durableName == "billing"]
        assert dur[0].pending == set() and dur[0].sub.lastSent == 50
    finally:
        await s2.close()


# =============================================================== lost database


async def test_lost_database(pg_server: Any, dsn: str, no_caching: bool) -> None:
    o = Opener(dsn, no_caching)
    s = await o.fresh()
    try:
        cs = s.create_channel("lost")
        sub = spb.SubState(clientID="c")
        cs.subs.create_sub(sub)
        for q in range(1, 11):
            cs.msgs.store(q, q, msg(q, q))
            cs.subs.add_seq_pending(sub.ID, q)
        await s.flush()  # acked: must survive
        pg_server.stop("fast")
        try:
            for q in range(11, 21):
                cs.msgs.store(q, q, msg(q, q))
            with pytest.raises(StoreError):
                await cs.msgs.flush()
            assert not s.healthy
            with pytest.raises(StoreError, match="database unavailable"):
                cs.msgs.store(21, 21, msg(21, 21))
            with pytest.raises(StoreError, match="database unavailable"):
                await s.flush()
            with pytest.raises(StoreError):
                s.add_client(spb.ClientInfo(ID="nope"))
            assert cs.msgs.lookup(15) is not None  # kept in memory
            cs.subs.ack_seq_pending(sub.ID, 1)  # journaled, committed later
        finally:
            pg_server.start()
        for _ in range(200):
            if s.healthy:
                break
            await asyncio.sleep(0.05)
        assert s.healthy
        cs.msgs.store(21, 21, msg(21, 21))
        await s.flush()
        s2 = o()
        rs = s2.recover()
        assert rs is not None
        ms = rs.channels["lost"].channel.msgs
        assert (ms.first_sequence(), ms.last_sequence()) == (1, 21)
        assert all(ms.lookup(q) == msg(q, q) for q in range(1, 22))
        assert rs.channels["lost"].subscriptions[0].pending == set(range(2, 11))
    finally:
        if not pg_server.running():
            pg_server.start()
        for st in o.stores:
            await st.close()


async def _healthy(s: SQLStore) -> None:
    for _ in range(200):
        if s.healthy:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the store did not come back")


async def test_failed_batch_is_rolled_back_not_retried(
    pg_server: Any, dsn: str, no_caching: bool
) -> None:
    """A publish batch (marked) whose transaction fails is answered with
    errors by the server: its rows must never be committed by the retry,
    every channel of the transaction fails (not just the one whose flush
    ran it), and the sequence is reused (issue 9)."""
    o = Opener(dsn, no_caching)
    limits = StoreLimits(per_channel={"b": ChannelLimits(max_msgs=3)})
    s = await o.fresh(limits=limits)
    try:
        a, b = s.create_channel("a").msgs, s.create_channel("b").msgs
        for ms in (a, b):
            ms.mark()
            for q in range(1, 4):
                ms.store(q, q, msg(q, q))
        await a.flush()
        await b.flush()
        a.release()
        b.release()
        a.mark()
        b.mark()
        for q in range(4, 7):
            a.store(q, q, msg(q, q, b"refused"))
            b.store(q, q, msg(q, q, b"refused"))  # the limit drops 1..3
        assert b.first_sequence() == 4
        pg_server.stop("fast")
        try:
            with pytest.raises(StoreError):
                await a.flush()
            with pytest.raises(StoreError):
                await b.flush()
            a.rollback()
            b.rollback()
        finally:
            pg_server.start()
        await _healthy(s)
        assert (b.first_sequence(), b.last_sequence(), b.state()[0]) == (1, 3, 3)
        assert a.last_sequence() == 3 and a.lookup(4) is None
        for ms in (a, b):
            ms.mark()
            ms.store(4, 4, msg(4, 4, b"retried"))
            await ms.flush()
            ms.release()
        s2, rs = await o.reopen(s)
        for name, first in (("a", 1), ("b", 2)):
            ms = rs.channels[name].channel.msgs
            assert (ms.first_sequence(), ms.last_sequence()) == (first, 4)
            assert ms.lookup(4) == msg(4, 4, b"retried")
            assert [ms.lookup(q) for q in range(first, 4)] == [msg(q, q) for q in range(first, 4)]
    finally:
        if not pg_server.running():
            pg_server.start()
        for st in o.stores:
            await st.close()


async def test_batch_committed_then_reported_failed_is_undone(opener: Opener, dsn: str) -> None:
    """The connection breaks after the server committed: the batch was
    answered with errors, so the retry deletes what the commit stored."""
    s = await opener.fresh()
    ms = s.create_channel("amb").msgs
    for q in range(1, 3):
        ms.store(q, q, msg(q, q))
    await ms.flush()
    real = s._exec_batch
    calls = 0

    def committed_then_lost(batch: Any, retry: bool) -> None:
        nonlocal calls
        calls += 1
        real(batch, retry)
        if calls == 1:
            raise ConnectionResetError("connection lost after COMMIT")

    s._exec_batch = committed_then_lost  # type: ignore[method-assign]
    ms.mark()
    for q in range(3, 6):
        ms.store(q, q, msg(q, q, b"refused"))
    with pytest.raises(StoreError, match="connection lost after COMMIT"):
        await ms.flush()
    ms.rollback()
    assert rows(dsn, "SELECT MAX(seq) FROM Messages") == [(5,)]  # it did commit
    await _healthy(s)
    assert rows(dsn, "SELECT COUNT(*), MAX(seq) FROM Messages") == [(2, 2)]
    ms.mark()
    ms.store(3, 3, msg(3, 3, b"retried"))
    await ms.flush()
    ms.release()
    got = rows(dsn, "SELECT seq, data FROM Messages ORDER BY seq")
    assert [(q, bytes(d)) for q, d in got] == [
        (1, msg(1, 1)), (2, msg(2, 2)), (3, msg(3, 3, b"retried"))
    ]


# =============================================================== FT lock and fencing


async def test_lock_protocol_and_fencing(opener: Opener, dsn: str) -> None:
    a = await opener.fresh()  # created before FT: the schema and server info
    await a.close()
    a = opener(ft=True)
    b = opener(ft=True)
    for st in (a, b):
        st.lock_update_interval = 0.05
    loop = asyncio.get_running_loop()
    # a standby cannot write before it owns the lock
    with pytest.raises(StoreError, match="lock"):
        a.recover()
    assert await loop.run_in_executor(None, a.lock().acquire)
    assert rows(dsn, "SELECT id, tick FROM StoreLock") == [(a.lock().id, 1)]
    rs = a.recover()
    assert rs is not None
    ch = a.create_channel("ft")
    ch.msgs.store(1, 1, msg(1, 1))
    await a.flush()

    # a live owner keeps the lock: the standby gives up
    stop = False

    def refresher() -> None:
        while not stop:
            assert a.lock().check()
            time.sleep(0.02)

    fut = loop.run_in_executor(None, refresher)
    assert not await loop.run_in_executor(None, b.lock().acquire)
    stop = True
    await fut
    tick = rows(dsn, "SELECT tick FROM StoreLock")[0][0]
    assert tick > 1

    # a silent owner is deposed: the standby steals after 3 unchanged ticks
    assert await loop.run_in_executor(None, b.lock().acquire)
    assert rows(dsn, "SELECT id, tick FROM StoreLock") == [(b.lock().id, 1)]
    lost: list[bool] = []
    a.lock().on_lost = lambda: lost.append(True)
    ch.msgs.store(2, 2, msg(2, 2))
    with pytest.raises(StoreError, match="lock lost"):
        await a.flush()
    assert a.fenced and lost == [True]
    with pytest.raises(StoreError, match="lock lost"):
        ch.msgs.store(3, 3, msg(3, 3))
    assert not a.lock().check()
    assert rows(dsn, "SELECT seq FROM Messages") == [(1,)]  # nothing of the deposed one

    rs = b.recover()
    assert rs is not None and rs.channels["ft"].channel.msgs.last_sequence() == 1
    rs.channels["ft"].channel.msgs.store(2, 2, msg(2, 2, b"from b"))
    await b.flush()
    assert b.lock().check()

    # release on close: a third store acquires at once
    await b.close()
    assert rows(dsn, "SELECT id, tick FROM StoreLock") == [("", 0)]
    c = opener(ft=True)
    t0 = time.monotonic()
    assert await loop.run_in_executor(None, c.lock().acquire)
    assert time.monotonic() - t0 < 1.0


async def test_contender_neither_hangs_on_nor_steals_a_row_held_in_a_transaction(
    opener: Opener, dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The owner is inside a long transaction (the StoreLock row locked,
    its tick bumped but not committed). A contender must not sit blocked on
    the row for as long as that lasts (a standby that neither takes over
    nor says why), and must not steal from an owner it never saw stand
    still."""
    log.setup(Options())
    a = opener(ft=True, lock_steal_after=0.5)
    b = opener(ft=True, lock_steal_after=0.5)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, a.lock().acquire)
    holder = psycopg.connect(dsn)
    try:
        holder.execute("UPDATE StoreLock SET tick = tick + 1")  # what a write's fence does
        for _ in range(2):
            # before the row is free: wait_for would time out on a blocked one
            assert not await asyncio.wait_for(loop.run_in_executor(None, b.lock().acquire), 5)
    finally:
        holder.commit()
        holder.close()
    assert rows(dsn, "SELECT id FROM StoreLock") == [(a.lock().id,)]
    err = capsys.readouterr().err
    assert err.count("the StoreLock row is locked by a transaction of the active server") == 1
    assert a.lock().check()
    # the row free again and the owner silent: now it is stolen
    assert await loop.run_in_executor(None, b.lock().acquire)
    assert rows(dsn, "SELECT id FROM StoreLock") == [(b.lock().id,)]


async def test_ft_sessions_may_not_idle_inside_a_transaction(opener: Opener, dsn: str) -> None:
    """An FT store's sessions are ended by PostgreSQL once idle inside a
    transaction for the steal window (5 s at least), so a frozen owner
    cannot keep the StoreLock row locked; a store outside FT is left as the
    database has it."""
    plain = opener()
    for steal, limit in ((0.7, "5s"), (7.5, "7500ms")):
        with opener(ft=True, lock_steal_after=steal)._wengine.connect() as c:
            assert c.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar() == limit
    with plain._wengine.connect() as c:
        assert c.exec_driver_sql("SHOW idle_in_transaction_session_timeout").scalar() == "0"


async def test_fence_refuses_a_database_that_lost_commits(opener: Opener, dsn: str) -> None:
    """After a PostgreSQL fail-over to a standby that had not received
    everything, the StoreLock row still names the active but its tick is
    behind the active's last commit: the store must stop (fenced, lock-lost
    notice with the reason) rather than serve on over lost messages."""
    a = opener(ft=True)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, a.lock().acquire)
    a.recover()
    ch = a.create_channel("ft")
    for i in (1, 2, 3):
        ch.msgs.store(i, i, msg(i, i))
        await a.flush()
    assert await loop.run_in_executor(None, a.lock().check)
    # every commit moved the tick, so the one the database holds is a
    # watermark of what it has of ours
    (tick,) = rows(dsn, "SELECT tick FROM StoreLock")[0]
    assert tick >= 5
    # what a promoted asynchronous standby looks like: the last commits gone
    rows(dsn, "UPDATE StoreLock SET tick = tick - 2")
    rows(dsn, "DELETE FROM Messages WHERE seq = 3")
    lost: list[bool] = []
    a.lock().on_lost = lambda: lost.append(True)
    ch.msgs.store(4, 4, msg(4, 4))
    with pytest.raises(StoreError, match="the database lost commits of this server"):
        await a.flush()
    assert a.fenced and lost == [True]
    assert "not synchronous" in a.lock().lost_reason
    assert rows(dsn, "SELECT seq FROM Messages ORDER BY seq") == [(1,), (2,)]
    assert not await loop.run_in_executor(None, a.lock().check)


async def test_lock_check_refuses_a_database_that_lost_commits(opener: Opener, dsn: str) -> None:
    """The same loss seen first by the FT loop's lock check."""
    a = opener(ft=True)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, a.lock().acquire)
    a.recover()
    ch = a.create_channel("ft")
    ch.msgs.store(1, 1, msg(1, 1))
    await a.flush()
    rows(dsn, "UPDATE StoreLock SET tick = tick - 1")
    assert not await loop.run_in_executor(None, a.lock().check)
    assert a.fenced and "lost commits" in a.lock().lost_reason


# =============================================================== write paths


@pytest.mark.parametrize("bulk", [0, 3, 7], ids=["copy", "bulk-too-small", "bulk"])
async def test_insert_methods(opener: Opener, dsn: str, bulk: int) -> None:
    s = await opener.fresh(bulk_insert_limit=bulk)
    a, b = s.create_channel("a"), s.create_channel("b")
    want = {}
    for q in range(1, 24):
        for ch in (a, b):
            d = msg(q, q * 3, bytes([q]) * q, subject=ch.name)
            ch.msgs.store(q, q * 3, d)
            want[(ch.name, q)] = d
    await s.flush()
    got = rows(
        dsn,
        "SELECT c.name, m.seq, m.timestamp, m.size, m.data FROM Messages m "
        "JOIN Channels c ON c.id=m.id ORDER BY c.name, m.seq",
    )
    assert len(got) == 46
    for name, q, ts, size, data in got:
        assert bytes(data) == want[(name, q)] and size == len(data) and ts == q * 3


async def test_commit_that_did_happen_is_retried_idempotently(opener: Opener, dsn: str) -> None:
    """A commit whose outcome is unknown (the connection dropped after the
    server committed) is retried with idempotent statements: no duplicate
    key error, no duplicate row, nothing lost."""
    s = await opener.fresh()
    cs = s.create_channel("amb")
    sub = spb.SubState(clientID="c")
    cs.subs.create_sub(sub)
    s.add_client(spb.ClientInfo(ID="cl", HbInbox="hb"))
    for q in range(1, 6):
        cs.msgs.store(q, q, msg(q, q))
        cs.subs.add_seq_pending(sub.ID, q)
    real = s._exec_batch
    calls = 0

    def committed_then_lost(batch: Any, retry: bool) -> None:
        nonlocal calls
        calls += 1
        real(batch, retry)
        if calls == 1:
            raise ConnectionResetError("connection lost after COMMIT")

    s._exec_batch = committed_then_lost  # type: ignore[method-assign]
    with pytest.raises(StoreError):
        await s.flush()
    assert not s.healthy
    cs.subs.ack_seq_pending(sub.ID, 2)
    for _ in range(100):
        if s.healthy:
            break
        await asyncio.sleep(0.05)
    assert s.healthy and calls == 2
    await s.flush()
    assert rows(dsn, "SELECT COUNT(*), MAX(seq) FROM Messages") == [(5, 5)]
    assert rows(dsn, "SELECT COUNT(*) FROM Subscriptions") == [(1,)]
    assert rows(dsn, "SELECT id FROM Clients") == [("cl",)]
    s2, rs = await opener.reopen(s)
    assert rs.channels["amb"].subscriptions[0].pending == {1, 3, 4, 5}

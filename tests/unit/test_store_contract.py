"""The store contract of nss/stores/base.py, run against every backend.

One class, parametrized by store type (tooz-style drivers): whatever the
server relies on must hold for MEMORY, FILE and SQL (in both caching modes,
on a real PostgreSQL started by tests/pg.py, skipped when it is not
installed) alike. Only the byte accounting differs by design (stores.md
§2.6): FILE counts 40 bytes of record header and index per message, and
with encryption at rest (the ``*_ENC`` variants: MEMORY and FILE with AES,
SQL with ChaCha) the size counts the 29 bytes of cipher code, nonce and tag
(MEMORY too, as the Go server, which encrypts in memory).
"""

from __future__ import annotations

import io
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from nss import log
from nss.options import ChannelLimits, FileOptions, SQLOptions, StoreLimits
from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb
from nss.stores.base import (
    ERR_ALREADY_EXISTS,
    ERR_NOT_FOUND,
    ERR_TOO_MANY_CHANNELS,
    ERR_TOO_MANY_SUBS,
    MsgStore,
    RecoveredState,
    Store,
    StoreError,
)
from nss.stores.crypto import CODE_AES, CODE_CHACHA, StoreCrypto
from nss.stores.crypto import OVERHEAD as ENC_OVERHEAD
from nss.stores.file import FileStore
from nss.stores.memory import MemoryStore

pytest_plugins = ["pg"]

SEC = 1_000_000_000
OVERHEAD = {"MEMORY": 0, "FILE": 40, "SQL": 0}

Factory = Callable[..., Store]


def encoded(seq: int, ts: int, data: bytes = b"payload") -> bytes:
    return pb.MsgProto(sequence=seq, subject="foo", data=data, timestamp=ts).SerializeToString()


def _contents(ms: MsgStore, upto: int) -> tuple[object, ...]:
    """What a reader of the store sees of sequences 1..``upto``."""
    seqs = range(1, upto + 1)
    return (
        ms.first_sequence(),
        ms.last_sequence(),
        ms.state(),
        [ms.lookup(s) for s in seqs],
        [ms.timestamp_of(s) for s in seqs],
    )


def put(ms: MsgStore, seq: int, ts: int | None = None, data: bytes = b"payload") -> bytes:
    ts = seq * SEC if ts is None else ts
    d = encoded(seq, ts, data)
    ms.store(seq, ts, d)
    return d


@pytest.fixture(
    params=[
        "MEMORY", "FILE", "SQL", "SQL_NO_CACHING",
        "MEMORY_ENC", "FILE_ENC", "SQL_ENC", "SQL_NO_CACHING_ENC",
    ]
)
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Factory]:
    """``make(**limits)`` opens a store of the parametrized type."""
    kind: str = request.param
    encrypted = kind.endswith("_ENC")
    kind = kind.removesuffix("_ENC")
    no_caching = kind == "SQL_NO_CACHING"
    if no_caching:
        kind = "SQL"
    pg = request.getfixturevalue("pg_server") if kind == "SQL" else None
    opened: list[Store] = []
    dbs: list[str] = []
    where: dict[int, tuple[StoreLimits, str]] = {}

    def open_store(lim: StoreLimits, at: str) -> Store:
        st: Store
        if kind == "MEMORY":
            st = MemoryStore(lim)
        elif kind == "SQL":
            from nss.stores.sql import SQLStore

            st = SQLStore(lim, SQLOptions("postgres", at, no_caching=no_caching))
        else:
            st = FileStore(at, lim, FileOptions(do_sync=False))
        if encrypted:
            st.crypto = StoreCrypto(CODE_CHACHA if kind == "SQL" else CODE_AES, b"contract-key")
        return st

    def factory(per_channel: dict[str, ChannelLimits] | None = None, **limits: object) -> Store:
        lim = StoreLimits(**limits)  # type: ignore[arg-type]
        if per_channel:
            lim.per_channel = per_channel
        at = ""
        if kind == "SQL":
            assert pg is not None
            # the previous test's stores are closed: its databases can be emptied
            at = pg.empty_db(f"nss_contract_{len(dbs)}")
            dbs.append(at)
        elif kind == "FILE":
            at = str(tmp_path / f"store{len(opened)}")
        st = open_store(lim, at)
        assert st.recover() is None
        st.init(spb.ServerInfo(ClusterID="contract"))
        opened.append(st)
        where[id(st)] = (lim, at)
        return st

    async def reopen(st: Store) -> RecoveredState | None:
        """Close ``st`` and recover what it left (None for MEMORY)."""
        if kind == "MEMORY":
            return None
        await st.close()
        lim, at = where[id(st)]
        again = open_store(lim, at)
        opened.append(again)
        rs = again.recover()
        assert rs is not None
        return rs

    factory.kind = kind  # type: ignore[attr-defined]
    factory.encrypted = encrypted  # type: ignore[attr-defined]
    factory.overhead = OVERHEAD[kind] + (ENC_OVERHEAD if encrypted else 0)  # type: ignore[attr-defined]
    factory.reopen = reopen  # type: ignore[attr-defined]
    yield factory
    for st in opened:
        await st.close()


class TestStoreContract:
    async def test_name(self, make: Factory) -> None:
        assert make().name == make.kind  # type: ignore[attr-defined]

    async def test_store_lookup_first_last(self, make: Factory) -> None:
        ms = make().create_channel("foo").msgs
        assert (ms.first_sequence(), ms.last_sequence(), ms.state()) == (0, 0, (0, 0))
        assert ms.lookup(1) is None
        datas = [put(ms, s) for s in range(1, 6)]
        await ms.flush()
        assert (ms.first_sequence(), ms.last_sequence()) == (1, 5)
        assert [ms.lookup(s) for s in range(1, 6)] == datas
        assert ms.lookup(0) is None and ms.lookup(6) is None
        ov = make.overhead  # type: ignore[attr-defined]
        assert ms.state() == (5, sum(len(d) + ov for d in datas))
        assert ms.timestamp_of(3) == 3 * SEC and ms.timestamp_of(9) is None

    async def test_store_ignores_old_sequences(self, make: Factory) -> None:
        ms = make().create_channel("foo").msgs
        first = put(ms, 1)
        ms.store(1, 99, encoded(1, 99, b"other"))
        assert ms.lookup(1) == first and ms.state()[0] == 1

    async def test_max_msgs_drops_oldest(self, make: Factory) -> None:
        ms = make(max_msgs=3).create_channel("foo").msgs
        for s in range(1, 11):
            put(ms, s)
        await ms.flush()
        assert (ms.first_sequence(), ms.last_sequence(), ms.state()[0]) == (8, 10, 3)
        assert ms.lookup(7) is None and ms.lookup(8) is not None

    async def test_max_bytes_keeps_at_least_one(self, make: Factory) -> None:
        ms = make(max_bytes=10).create_channel("foo").msgs
        for s in range(1, 4):
            put(ms, s, data=b"x" * 100)
        assert ms.state()[0] == 1 and ms.first_sequence() == 3
        assert ms.lookup(3) is not None

    async def test_per_channel_limits(self, make: Factory) -> None:
        st = make(per_channel={"small": ChannelLimits(max_msgs=2)})
        small, big = st.create_channel("small").msgs, st.create_channel("big").msgs
        for s in range(1, 6):
            put(small, s)
            put(big, s)
        assert small.state()[0] == 2 and big.state()[0] == 5
        assert small.limits.max_msgs == 2

    async def test_expire(self, make: Factory) -> None:
        ms = make(max_age=10.0).create_channel("foo").msgs
        # real time: the SQL store's lookup also hides messages that the
        # wall clock says are expired (stores.md §2.4)
        now = time.time_ns()
        for s, age in ((1, 30), (2, 20), (3, 5), (4, 1)):
            put(ms, s, ts=now - age * SEC)
        delay = ms.expire(now)
        assert delay == pytest.approx(5.0)
        assert ms.first_sequence() == 3 and ms.state()[0] == 2
        assert ms.lookup(2) is None and ms.lookup(3) is not None
        assert ms.expire(now + 20 * SEC) is None
        assert (ms.first_sequence(), ms.last_sequence(), ms.state()) == (5, 4, (0, 0))
        put(ms, 5, ts=now + 20 * SEC)
        assert (ms.first_sequence(), ms.last_sequence()) == (5, 5)

    async def test_rollback_forgets_the_batch(self, make: Factory) -> None:
        """A failed publish batch is answered with errors, so nothing of it
        may stay: not in memory, not on disk, not in the database, and the
        sequence is reused (issue 9)."""
        st = make()
        ms = st.create_channel("foo").msgs
        ms.rollback()  # no mark: nothing to do
        kept = [put(ms, s) for s in range(1, 4)]
        await ms.flush()
        before = (ms.first_sequence(), ms.last_sequence(), ms.state())
        ms.mark()
        for s in range(4, 7):
            put(ms, s, data=b"refused")
        ms.rollback()
        assert (ms.first_sequence(), ms.last_sequence(), ms.state()) == before
        assert ms.lookup(4) is None and ms.timestamp_of(4) is None
        assert ms.get_sequence_from_timestamp(4 * SEC) == 4
        ms.mark()
        again = put(ms, 4, data=b"retried")
        await ms.flush()
        ms.release()
        assert ms.last_sequence() == 4 and ms.lookup(4) == again
        rs = await make.reopen(st)  # type: ignore[attr-defined]
        if rs is not None:
            ms = rs.channels["foo"].channel.msgs
            assert (ms.first_sequence(), ms.last_sequence()) == (1, 4)
            assert [ms.lookup(s) for s in range(1, 5)] == [*kept, again]
            assert ms.lookup(5) is None

    async def test_rollback_brings_back_what_the_limits_dropped(self, make: Factory) -> None:
        st = make(max_msgs=3)
        ms = st.create_channel("foo").msgs
        kept = [put(ms, s) for s in range(1, 4)]
        await ms.flush()
        before = (ms.first_sequence(), ms.last_sequence(), ms.state())
        ms.mark()
        for s in range(4, 9):
            put(ms, s)
        assert ms.first_sequence() == 6  # limits apply at once
        ms.rollback()
        assert (ms.first_sequence(), ms.last_sequence(), ms.state()) == before
        assert [ms.lookup(s) for s in range(1, 4)] == kept
        ms.mark()
        d4 = put(ms, 4)
        await ms.flush()
        ms.release()
        assert (ms.first_sequence(), ms.last_sequence(), ms.state()[0]) == (2, 4, 3)
        rs = await make.reopen(st)  # type: ignore[attr-defined]
        if rs is not None:
            ms = rs.channels["foo"].channel.msgs
            assert (ms.first_sequence(), ms.last_sequence()) == (2, 4)
            assert [ms.lookup(s) for s in range(2, 5)] == [*kept[1:], d4]

    @pytest.mark.parametrize("limits", [{}, {"max_msgs": 37}, {"max_bytes": 2500}])
    async def test_store_many_is_the_stores_one_by_one(
        self, make: Factory, limits: dict[str, int]
    ) -> None:
        """A publish batch hands its messages over in one ``store_many``:
        whatever the batch (after the last or past a gap, over a limit or
        not, across slices, rolled back), the store ends as the stores one
        at a time leave it, in memory and after a restart (and, FILE, byte
        for byte on disk)."""
        rng = random.Random(len(limits))
        one, many = make(**limits), make(**limits)
        a, b = one.create_channel("foo").msgs, many.create_channel("foo").msgs
        seq = 1
        # SQL stores through the base class's loop, which fewer rounds cover;
        # each of its rounds is a database round trip (60 took ~6 s a kind)
        rounds = 20 if make.kind == "SQL" else 60  # type: ignore[attr-defined]
        for _ in range(rounds):
            seq += rng.choice([0, 0, 0, 0, 1, 3])  # sometimes a gap
            n = rng.choice([1, 2, 7, 30])
            tss = sorted(rng.randrange(SEC, 100 * SEC) for _ in range(n))
            datas = [encoded(seq + k, tss[k], bytes(rng.choice([1, 20, 90]))) for k in range(n)]
            fail = rng.random() < 0.15
            for ms in (a, b):
                ms.mark()
            for k in range(n):
                a.store(seq + k, tss[k], datas[k])
            b.store_many(seq, tss, datas)
            for ms in (a, b):
                if fail:
                    ms.rollback()
                else:
                    await ms.flush()
                    ms.release()
            if not fail:
                seq += n
            assert _contents(a, seq) == _contents(b, seq)
        assert b.state()[0] > 0
        ra = await make.reopen(one)  # type: ignore[attr-defined]
        rb = await make.reopen(many)  # type: ignore[attr-defined]
        if ra is not None and rb is not None:
            a, b = ra.channels["foo"].channel.msgs, rb.channels["foo"].channel.msgs
            assert _contents(a, seq) == _contents(b, seq)
        if make.kind == "FILE" and not make.encrypted:  # type: ignore[attr-defined]
            da, db = Path(a.dir), Path(b.dir)  # type: ignore[attr-defined]
            files = sorted(p.name for p in da.glob("msgs.*"))
            assert files and files == sorted(p.name for p in db.glob("msgs.*"))
            for name in files:
                assert (da / name).read_bytes() == (db / name).read_bytes(), name

    async def test_lookup_many_is_lookup_of_each(self, make: Factory) -> None:
        """A delivery's span read at once answers as a lookup per sequence,
        also across gaps, dropped messages and either end of the channel,
        and after a restart (FILE: from the files, not the cache)."""
        st = make(max_msgs=12)
        ms = st.create_channel("foo").msgs
        for s in [*range(1, 9), *range(11, 20)]:  # a gap at 9-10; 1-7 dropped
            put(ms, s, data=bytes([s]) * s)
        await ms.flush()
        spans = [(1, 25), (8, 8), (9, 10), (8, 19), (13, 15), (19, 30), (30, 40), (5, 4)]

        def check(ms: MsgStore) -> None:
            for first, last in spans:
                want = [ms.lookup(s) for s in range(first, last + 1)]
                assert ms.lookup_many(first, last) == want, (first, last)
            assert ms.lookup_many(1, 25).count(None) == 25 - 12

        check(ms)
        rs = await make.reopen(st)  # type: ignore[attr-defined]
        if rs is not None:
            check(rs.channels["foo"].channel.msgs)

    async def test_expire_without_max_age(self, make: Factory) -> None:
        ms = make().create_channel("foo").msgs
        put(ms, 1, ts=0)
        assert ms.expire(10**20) is None and ms.state()[0] == 1

    async def test_empty(self, make: Factory) -> None:
        ms = make().create_channel("foo").msgs
        for s in range(1, 4):
            put(ms, s)
        await ms.flush()
        ms.empty()
        assert ms.state() == (0, 0) and ms.lookup(2) is None
        assert (ms.first_sequence(), ms.last_sequence()) == (4, 3)
        put(ms, 4)
        assert ms.lookup(4) is not None and ms.first_sequence() == 4

    async def test_sequence_from_timestamp(self, make: Factory) -> None:
        ms = make().create_channel("foo").msgs
        assert ms.get_sequence_from_timestamp(5) == 0
        for s in range(1, 11):
            put(ms, s, ts=s * 10)
        await ms.flush()
        assert ms.get_sequence_from_timestamp(0) == 1
        assert ms.get_sequence_from_timestamp(10) == 1
        assert ms.get_sequence_from_timestamp(11) == 2
        assert ms.get_sequence_from_timestamp(55) == 6
        assert ms.get_sequence_from_timestamp(100) == 10
        assert ms.get_sequence_from_timestamp(101) == 11

    async def test_sequence_from_timestamp_all_expired(self, make: Factory) -> None:
        ms = make(max_age=1.0).create_channel("foo").msgs
        put(ms, 1, ts=SEC)
        ms.expire(100 * SEC)
        assert ms.get_sequence_from_timestamp(0) == 2

    async def test_subs_create_update_delete_pending(self, make: Factory) -> None:
        ss = make(max_subscriptions=2).create_channel("foo").subs
        a, b = spb.SubState(clientID="a"), spb.SubState(clientID="b")
        ss.create_sub(a)
        ss.create_sub(b)
        assert a.ID > 0 and b.ID > 0 and a.ID != b.ID
        with pytest.raises(StoreError, match=ERR_TOO_MANY_SUBS):
            ss.create_sub(spb.SubState(clientID="c"))
        ss.add_seq_pending(a.ID, 1)
        ss.add_seq_pending(a.ID, 2)
        ss.ack_seq_pending(a.ID, 1)
        a.isClosed = True
        ss.update_sub(a)
        ss.update_sub(spb.SubState(ID=999, clientID="unknown"))  # no existence check
        ss.add_seq_pending(12345, 1)  # nor here
        ss.ack_seq_pending(12345, 1)
        ss.delete_sub(b.ID)
        ss.delete_sub(b.ID)
        await ss.flush()
        c = spb.SubState(clientID="c")
        # the update of the unknown ID 999 created a record that counts
        with pytest.raises(StoreError, match=ERR_TOO_MANY_SUBS):
            ss.create_sub(c)
        ss.delete_sub(999)
        ss.create_sub(c)  # a deleted subscription frees its slot
        assert c.ID not in (a.ID, b.ID)

    async def test_max_channels(self, make: Factory) -> None:
        st = make(max_channels=2)
        st.create_channel("a")
        with pytest.raises(StoreError, match=ERR_ALREADY_EXISTS):
            st.create_channel("a")
        st.create_channel("b")
        with pytest.raises(StoreError, match=ERR_TOO_MANY_CHANNELS):
            st.create_channel("c")
        st.delete_channel("a")
        st.create_channel("c")

    async def test_delete_channel(self, make: Factory) -> None:
        st = make()
        with pytest.raises(StoreError, match=ERR_NOT_FOUND):
            st.delete_channel("nope")
        cs = st.create_channel("a")
        put(cs.msgs, 1)
        st.delete_channel("a")
        with pytest.raises(StoreError, match=ERR_NOT_FOUND):
            st.delete_channel("a")
        again = st.create_channel("a")
        assert again.msgs.last_sequence() == 0

    async def test_clients(self, make: Factory) -> None:
        st = make()
        st.add_client(spb.ClientInfo(ID="me", HbInbox="hb"))
        st.add_client(spb.ClientInfo(ID="me", HbInbox="hb2"))
        st.delete_client("me")
        st.delete_client("never-added")
        await st.flush()

    async def test_reached_limits_is_logged_once_in_go_format(
        self, make: Factory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        out = io.StringIO()
        monkeypatch.setattr(log._SINK, "stream", out)
        ms = make(max_msgs=3).create_channel("foo").msgs
        for s in range(1, 8):
            put(ms, s)
        await ms.flush()
        lines = [x for x in out.getvalue().splitlines() if "Reached limits" in x]
        assert len(lines) == 1
        assert re.search(
            r'STREAM: Reached limits for store "foo" \(msgs=3/3 bytes=\d+ B/976\.56 MB\), '
            r"dropping old messages to make room for new ones$",
            lines[0],
        ), lines[0]

    async def test_lock(self, make: Factory) -> None:
        """The store's lock is one object; none where the store cannot be
        shared (MEMORY, SQL opened without FT)."""
        st = make()
        lock = st.lock()
        assert lock is st.lock()
        assert (lock is not None) == (make.kind == "FILE")  # type: ignore[attr-defined]

    async def test_channel_limits(self, make: Factory) -> None:
        st = make(max_msgs=7, per_channel={"x.*": ChannelLimits(max_msgs=3)})
        assert st.channel_limits("x.y").max_msgs == 3
        assert st.channel_limits("z").max_msgs == 7


    async def test_restart_reads_back_what_was_stored(self, make: Factory) -> None:
        """What a reopened store reads from disk or the database is what was
        stored (decrypted, when encryption is on), empty payloads included;
        a message stored without encryption stays readable after it is
        turned on (as in Go)."""
        st = make()
        ms = st.create_channel("foo").msgs
        datas = [put(ms, s, data=b"" if s == 2 else b"m%d" % s) for s in range(1, 6)]
        await ms.flush()
        size = ms.state()
        rs = await make.reopen(st)  # type: ignore[attr-defined]
        if rs is None:
            return
        ms = rs.channels["foo"].channel.msgs
        assert [ms.lookup(s) for s in range(1, 6)] == datas
        assert ms.state() == size
        raw = getattr(ms, "raw_message", None)
        if make.encrypted and raw is not None:  # type: ignore[attr-defined]
            assert raw(1) != datas[0] and raw(2) == datas[1]
            assert b"m1" not in raw(1)

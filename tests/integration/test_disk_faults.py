"""A full or read-only disk under a real server (a small tmpfs the test
mounts; for SQL, PostgreSQL's Messages table in a tablespace on one).

What a user must be able to rely on when the disk fills up: a PubAck
without error means stored, a PubAck with an error means not stored (so a
publisher that retries it does not duplicate it), the server keeps serving,
and a restart needs no manual step - no file to delete by hand. Skipped
when the tests cannot mount a tmpfs (not root).
"""

from __future__ import annotations

import asyncio
import signal

import pytest
from procs import NssProcess, free_port
from stanclient import StanClient

from nss.pb import protocol_pb2 as pb

pytest_plugins = ["tmpfs", "pg"]

ENOSPC = "No space left on device"
PAD = b"p" * 1000


def _payload(i: int) -> bytes:
    return b"%08d" % i + PAD


async def publish_until_refused(
    c: StanClient, channel: str, refused: int, first: int = 0, window: int = 16
) -> dict[int, str]:
    """Publish numbered messages, ``window`` in flight (so that batches hold
    several messages), until ``refused`` of them were answered with an
    error. Returns number -> PubAck error ('' = stored)."""
    results: dict[int, str] = {}
    inflight: list[tuple[int, asyncio.Future[str]]] = []
    i = first
    while sum(1 for e in results.values() if e) < refused:
        assert i - first < 20000, "the disk never filled up"
        inflight.append((i, c.publish_async(channel, _payload(i))))
        i += 1
        if len(inflight) >= window:
            j, fut = inflight.pop(0)
            results[j] = await asyncio.wait_for(fut, 10)
    for j, fut in inflight:
        results[j] = await asyncio.wait_for(fut, 10)
    return results


async def read_channel(url: str, channel: str, expect: int) -> list[pb.MsgProto]:
    c = await StanClient.connect(url, "reader")
    sub = await c.subscribe(channel, start=pb.First, max_inflight=100000)
    got = await sub.take(expect, timeout=20) if expect else []
    await sub.expect_nothing(0.3)
    await c.close()
    return got


def _numbers(msgs: list[pb.MsgProto]) -> list[int]:
    return [int(m.data[:8]) for m in msgs]


# unbuffered with small slices, the disk fills up inside store() (a write,
# a new slice) rather than in the flush: the rest of the batch must fail too
@pytest.mark.parametrize(
    "extra",
    [(), ("--file_buffer_size", "0", "--file_slice_max_msgs", "16")],
    ids=["buffered", "unbuffered"],
)
async def test_full_disk_error_pubacks_are_not_stored_and_restart_needs_no_manual_step(
    nss_factory, tmpfs, extra: tuple[str, ...]
) -> None:
    disk = tmpfs(192)
    d = str(disk.path / "data")
    srv = nss_factory("-store", "file", "-dir", d, *extra)
    c = await StanClient.connect(srv.url, "pub")
    results = await publish_until_refused(c, "a", refused=40)
    errors = {e for e in results.values() if e}
    assert any(ENOSPC in e for e in errors), errors
    # a channel first used while the disk is full
    err = await asyncio.wait_for(c.publish_async("other", _payload(0)), 10)
    assert ENOSPC in err
    # the server keeps serving: a ping is answered
    assert await c.ping() == ""
    stored = [i for i, e in sorted(results.items()) if not e]
    assert stored, "nothing could be stored before the disk filled up"

    # more room: the next publish gets the next sequence (no gap, no duplicate)
    disk.resize(4096)
    for i in range(100000, 100005):
        await c.publish("a", _payload(i))
    await c.publish("other", _payload(7))
    await c.drop()
    got = await read_channel(srv.url, "a", len(stored) + 5)
    assert [m.sequence for m in got] == list(range(1, len(stored) + 6))
    assert _numbers(got) == stored + list(range(100000, 100005))

    # a crash, then a restart on the same disk: no manual step, not even
    # for a channel whose subs.dat the crash left without its version
    # (created, not yet written)
    srv.stop(signal.SIGKILL)
    late = disk.path / "data" / "late"
    late.mkdir()
    (late / "subs.dat").write_bytes(b"")
    srv2 = nss_factory("-store", "file", "-dir", d, *extra, port=srv.port)
    srv2.wait_for_line(f'File "{late / "subs.dat"}" is shorter than its version header')
    lc = await StanClient.connect(srv2.url, "late")
    await lc.publish("late", b"x")
    await lc.close()
    got = await read_channel(srv2.url, "a", len(stored) + 5)
    assert [m.sequence for m in got] == list(range(1, len(stored) + 6))
    assert _numbers(got) == stored + list(range(100000, 100005))
    assert _numbers(await read_channel(srv2.url, "other", 1)) == [7]


async def test_crash_on_a_full_disk_then_restart(nss_factory, tmpfs) -> None:
    """SIGKILL while the disk is full and publishers get errors; the restart
    happens before any room is made: it recovers without writing, serves
    every acknowledged message once and none of the refused ones."""
    disk = tmpfs(192)
    d = str(disk.path / "data")
    srv = nss_factory("-store", "file", "-dir", d)
    c = await StanClient.connect(srv.url, "pub")
    r = await StanClient.connect(srv.url, "reader")
    sub = await r.subscribe("a", durable="dur", start=pb.First, max_inflight=100000)
    results = await publish_until_refused(c, "a", refused=20)
    await c.publish_async("other", _payload(0))
    srv.stop(signal.SIGKILL)
    await c.drop()
    await r.drop()
    stored = [i for i, e in sorted(results.items()) if not e]
    assert len(sub.received) <= len(stored)
    assert _numbers(sub.received) == stored[: len(sub.received)]

    free = disk.free_kb()
    assert free < 16, f"{free} KB free: the disk is not full"
    srv2 = nss_factory("-store", "file", "-dir", d, port=srv.port)
    assert "Streaming Server is ready" in srv2.log_text()
    disk.resize(4096)
    got = await read_channel(srv2.url, "a", len(stored))
    assert _numbers(got) == stored
    assert [m.sequence for m in got] == list(range(1, len(stored) + 1))


async def test_sql_full_tablespace_error_pubacks_are_not_stored(
    nss_factory, tmpfs, pg_server
) -> None:
    """The Messages table lives in a tablespace on a small tmpfs: PostgreSQL
    fails the transactions that need more room. What was refused is not
    stored (not even by the store's background retry) and the sequence does
    not advance; with room again publishing resumes, no gap, no duplicate."""
    import pwd

    name = "nss_full_tablespace"
    owner = pwd.getpwnam("postgres")
    disk = tmpfs(
        256, f"uid={owner.pw_uid},gid={owner.pw_gid},mode=0700", at=pg_server.tmp / "full-ts"
    )
    dsn = pg_server.create_db(name)
    pg_server.admin(f"CREATE TABLESPACE {name} LOCATION '{disk.path}'")
    try:
        pg_server.admin(f"ALTER TABLE Messages SET TABLESPACE {name}", dbname=name)
        args = ("-st", "sql", "--sql_driver", "postgres", "--sql_source", dsn)
        srv = nss_factory(*args)
        c = await StanClient.connect(srv.url, "pub")
        results = await publish_until_refused(c, "a", refused=40)
        errors = {e for e in results.values() if e}
        assert any(ENOSPC in e for e in errors), errors
        stored = [i for i, e in sorted(results.items()) if not e]
        assert stored
        disk.resize(8192)
        for i in range(100000, 100200):  # refused until the store is back
            if not await asyncio.wait_for(c.publish_async("a", _payload(i)), 10):
                stored.append(i)
                break
        assert stored[-1] >= 100000, "publishing did not resume"
        await c.publish("a", _payload(stored[-1] + 1))
        stored.append(stored[-1] + 1)
        await c.drop()
        got = await read_channel(srv.url, "a", len(stored))
        assert [m.sequence for m in got] == list(range(1, len(stored) + 1))
        assert _numbers(got) == stored
        srv.stop(signal.SIGKILL)
        srv2 = nss_factory(*args, port=srv.port)
        got = await read_channel(srv2.url, "a", len(stored))
        assert [m.sequence for m in got] == list(range(1, len(stored) + 1))
        assert _numbers(got) == stored
        srv2.stop()
    finally:
        pg_server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        pg_server.admin(f"DROP TABLESPACE IF EXISTS {name}")


async def test_read_only_datastore_is_reported_as_such(nss_factory, tmpfs) -> None:
    """Not "in use by another server": nobody holds the lock, nobody can
    write there."""
    disk = tmpfs(1024)
    d = str(disk.path / "data")
    nss_factory("-store", "file", "-dir", d).stop()
    disk.read_only()
    p = NssProcess(["-p", str(free_port()), "-store", "file", "-dir", d])
    try:
        line = p.wait_for_line("Failed to start")
        assert "read-only file system" in line and d in line
        assert "in use by another server" not in p.log_text()
        assert p.proc.wait(10) == 1
    finally:
        p.stop()

"""nss-migrate with real stores and real servers: a Go clustered node
imported into FILE and into PostgreSQL serves what its manifest says; a
FILE store copied to PostgreSQL and back is served the same; a destination
that is not empty is refused; a copy killed midway is refused at start."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import manifest as mf
import pytest
from procs import ROOT, NssProcess, free_port
from stanclient import StanClient

from nss.pb import protocol_pb2 as pb
from nss.stores.base import ERR_INCOMPLETE_COPY

pytest_plugins = ["pg"]

LIMITS = str(mf.FIXTURES / "limits.conf")


def migrate(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nss.migrate.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=str(ROOT),
    )  # fmt: skip


def writable_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


@pytest.fixture
def clustered(tmp_path: Path) -> Path:
    return writable_copy(mf.FIXTURES / "clustered", tmp_path / "clustered")


def _serve_file(factory: Any, d: Path, cluster: str) -> Any:
    return factory("-store", "file", "-dir", str(d), "-sc", LIMITS, cluster_id=cluster)


def _serve_sql(factory: Any, dsn: str, cluster: str) -> Any:
    return factory(
        "-store", "sql", "--sql_driver", "postgres", "--sql_source", dsn, "-sc", LIMITS,
        cluster_id=cluster,
    )  # fmt: skip


async def _check_all(srv: Any, manifest: dict[str, Any]) -> None:
    srv.wait_for_line(f"Recovered {len(manifest['registered_clients'])} client(s)")
    await mf.check_channels(srv.url, manifest, publish_next=False)
    await mf.check_durables(srv.url, manifest)


async def test_go_clustered_node_imported_into_file_is_served(
    nss_factory: Any, clustered: Path, tmp_path: Path
) -> None:
    manifest = mf.load("clustered")
    out = tmp_path / "imported"
    res = migrate(
        "--from", f"file://{clustered / 'datastore'}", "--to", f"file://{out}",
        "--raft-log", str(clustered / "raft"), "-c", LIMITS,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "copied and verified: 4 channel(s), 527 message(s), 3 subscription(s)" in res.stderr
    await _check_all(_serve_file(nss_factory, out, manifest["cluster"]), manifest)


async def test_go_clustered_datastore_alone_loses_the_durables(
    nss_factory: Any, clustered: Path, tmp_path: Path
) -> None:
    """Why --raft-log exists: without it the durable starts over."""
    manifest = mf.load("clustered")
    out = tmp_path / "plain"
    res = migrate("--from", f"file://{clustered / 'datastore'}", "--to", f"file://{out}")
    assert res.returncode == 0, res.stderr
    srv = _serve_file(nss_factory, out, manifest["cluster"])
    with pytest.raises((AssertionError, TimeoutError)):
        await mf.check_durables(srv.url, manifest)


async def test_go_clustered_node_imported_into_postgres_is_served(
    nss_factory: Any, clustered: Path, pg_server: Any
) -> None:
    manifest = mf.load("clustered")
    pg_server.create_db("nss_migrate_clustered")
    res = migrate(
        "--from", f"file://{clustered / 'datastore'}",
        "--to", pg_server.url("nss_migrate_clustered"),
        "--raft-log", str(clustered / "raft" / "fixture"), "-c", LIMITS,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    srv = _serve_sql(nss_factory, pg_server.dsn("nss_migrate_clustered"), manifest["cluster"])
    await _check_all(srv, manifest)


async def test_file_store_to_postgres_and_back_is_served_the_same(
    nss_factory: Any, tmp_path: Path, pg_server: Any
) -> None:
    manifest = mf.load("filestore")
    src = writable_copy(mf.FIXTURES / "filestore" / "datastore", tmp_path / "src")
    pg_server.create_db("nss_migrate_roundtrip")
    url = pg_server.url("nss_migrate_roundtrip")
    there = migrate("--from", f"file://{src}", "--to", url, "-c", LIMITS)
    assert there.returncode == 0, there.stderr
    back = tmp_path / "back"
    again = migrate("--from", url, "--to", f"file://{back}", "-c", LIMITS)
    assert again.returncode == 0, again.stderr

    # both copies report the same content, and the source itself is intact
    def totals(res: subprocess.CompletedProcess[str]) -> str:
        return res.stderr.splitlines()[-1].split(" in ")[0]

    assert totals(there) == totals(again)
    await _check_all(_serve_file(nss_factory, back, manifest["cluster"]), manifest)
    await _check_all(_serve_file(nss_factory, src, manifest["cluster"]), manifest)


@pytest.mark.parametrize("to", ["file", "postgres"])
async def test_channels_expired_by_age_keep_their_sequence(
    nss_factory: Any, tmp_path: Path, pg_server: Any, to: str
) -> None:
    """MaxAge is left to the server that serves the copy: it expires every
    message of the (old) fixture at start, and each channel's next message
    still gets ``last + 1``."""
    manifest = mf.load("filestore")
    src = writable_copy(mf.FIXTURES / "filestore" / "datastore", tmp_path / "src")
    conf = tmp_path / "age.conf"
    conf.write_text('store_limits: { max_age: "1s" }\n')
    if to == "file":
        dst, serve = f"file://{tmp_path / 'dst'}", ["-store", "file", "-dir", str(tmp_path / "dst")]
    else:
        pg_server.create_db("nss_migrate_expired")
        dst = pg_server.url("nss_migrate_expired")
        serve = ["-store", "sql", "--sql_driver", "postgres",
                 "--sql_source", pg_server.dsn("nss_migrate_expired")]  # fmt: skip
    res = migrate("--from", f"file://{src}", "--to", dst, "-c", str(conf))
    assert res.returncode == 0, res.stderr
    srv = nss_factory(*serve, "-sc", str(conf), cluster_id=manifest["cluster"])
    c = await StanClient.connect(srv.url, "expired-checker", cluster_id=manifest["cluster"])
    for name, ch in manifest["channels"].items():
        sub = await c.subscribe(name, start=pb.First)
        await sub.expect_nothing(0.1)
        await c.publish(name, b"after")
        assert (await sub.next()).sequence == ch["last"] + 1
    await c.close()


def test_non_empty_destination_is_refused(tmp_path: Path, pg_server: Any) -> None:
    src = writable_copy(mf.FIXTURES / "filestore" / "datastore", tmp_path / "src")
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "something").write_text("x")
    res = migrate("--from", f"file://{src}", "--to", f"file://{dst}")
    assert res.returncode == 1
    assert f"destination file://{dst} is not empty" in res.stderr
    assert sorted(os.listdir(dst)) == ["something"]

    pg_server.create_db("nss_migrate_full")
    url = pg_server.url("nss_migrate_full")
    assert migrate("--from", f"file://{src}", "--to", url).returncode == 0
    res = migrate("--from", f"file://{src}", "--to", url)
    assert res.returncode == 1
    assert "is not empty" in res.stderr


def _big_store(path: Path, channels: int, per_channel: int) -> None:
    """A FILE store written through nss's own FILE store (fast, no server)."""
    from nss.options import FileOptions, StoreLimits
    from nss.pb import protocol_pb2 as pb
    from nss.server.startup import server_subjects
    from nss.stores.file import FileStore

    async def write() -> None:
        st = FileStore(str(path), StoreLimits(max_msgs=0, max_bytes=0), FileOptions(do_sync=False))
        assert st.recover() is None
        st.init(server_subjects("big", "_STAN.discover"))
        payload = os.urandom(100)
        for c in range(channels):
            cs = st.create_channel(f"ch{c}")
            for seq in range(1, per_channel + 1):
                ts = time.time_ns()
                m = pb.MsgProto(sequence=seq, subject=f"ch{c}", data=payload, timestamp=ts)
                cs.msgs.store(seq, ts, m.SerializeToString())
            await cs.msgs.flush()
        await st.flush()
        await st.close()

    asyncio.run(write())


def test_copy_killed_midway_is_refused_at_start(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    _big_store(src, channels=4, per_channel=60_000)
    p = subprocess.Popen(
        [sys.executable, "-m", "nss.migrate.cli", "--from", f"file://{src}", "--to", f"file://{dst}"],
        cwd=str(ROOT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # midway: the second channel is being written
        deadline = time.monotonic() + 60
        while not (dst / "ch1" / "msgs.1.dat").exists():
            assert p.poll() is None, "the copy finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
    srv = NssProcess(["-p", str(free_port()), "-cid", "big", "-store", "file", "-dir", str(dst)])
    try:
        srv.wait_for_line(ERR_INCOMPLETE_COPY)
        assert srv.proc.wait(10) != 0
        assert "Streaming Server is ready" not in srv.log_text()
    finally:
        srv.stop()
    # and a new copy refuses to write over it
    res = migrate("--from", f"file://{src}", "--to", f"file://{dst}")
    assert res.returncode == 1 and "is not empty" in res.stderr

"""The SQL store on MySQL/MariaDB: the same code with the MySQL dialect.

Runs only where a MariaDB/MySQL server binary and PyMySQL (the ``mysql``
extra) are installed; it starts a throw-away server on a free loopback port,
loads the shipped ``mysql.db.sql`` and checks the dialect-specific parts: backquoted
``row``, ``INSERT IGNORE`` retries, the session-variable MaxBytes floor on
recovery, ``LOCK IN SHARE MODE`` fencing, both caching modes and bulk
inserts.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pg import split_sql
from sqlalchemy import text

from nss.options import SQLOptions, StoreLimits
from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb
from nss.sql import script as schema_script
from nss.stores.base import StoreError
from nss.stores.sql import SQLStore

pymysql = pytest.importorskip("pymysql")

TABLES = ["ServerInfo", "Clients", "Channels", "Messages", "Subscriptions", "SubsPending"]


def _server_bin() -> str | None:
    for name in ("mariadbd", "mysqld"):
        for d in ("/usr/sbin", "/usr/bin", "/usr/local/bin"):
            p = Path(d) / name
            if p.exists():
                return str(p)
    return None


@pytest.fixture(scope="module")
def mysql_src() -> Iterator[str]:
    server = _server_bin()
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if server is None or install is None:
        pytest.skip("no MariaDB/MySQL server installed")
    tmp = Path(tempfile.mkdtemp(prefix="nss-mysql-"))
    user: list[str] = []
    if os.geteuid() == 0:
        pw = pwd.getpwnam("mysql")
        os.chown(tmp, pw.pw_uid, pw.pw_gid)
        user = ["runuser", "-u", "mysql", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = tmp / "data"
    subprocess.run(
        [*user, install, f"--datadir={data}", "--auth-root-authentication-method=normal"],
        check=True,
        capture_output=True,
    )
    proc = subprocess.Popen(
        [
            *user,
            server,
            "--no-defaults",
            f"--datadir={data}",
            f"--socket={tmp}/sock",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={tmp}/pid",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                c = pymysql.connect(unix_socket=f"{tmp}/sock", user="root", autocommit=True)
                break
            except pymysql.err.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with c.cursor() as cur:
            cur.execute("CREATE DATABASE nss")
            cur.execute("CREATE USER 'nss'@'127.0.0.1' IDENTIFIED BY 'pw'")
            cur.execute("GRANT ALL ON nss.* TO 'nss'@'127.0.0.1'")
            cur.execute("USE nss")
            for stmt in split_sql(schema_script("mysql")):
                cur.execute(stmt)
        c.close()
        yield f"nss:pw@tcp(127.0.0.1:{port})/nss"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def _q(src: str, sql: str) -> list[tuple[Any, ...]]:
    port = int(src.split(":")[2].split(")")[0])
    c = pymysql.connect(
        host="127.0.0.1", port=port, user="nss", password="pw", database="nss", autocommit=True
    )
    with c.cursor() as cur:
        cur.execute(sql)
        out = list(cur.fetchall())
    c.close()
    return out


def _msg(i: int) -> bytes:
    return pb.MsgProto(sequence=i, subject="foo", data=b"x" * 128, timestamp=i).SerializeToString()


@pytest.mark.parametrize(
    "nc,bulk", [(False, 0), (True, 0), (False, 10)], ids=["caching", "no_caching", "bulk"]
)
async def test_mysql_store(mysql_src: str, nc: bool, bulk: int) -> None:
    for t in [*TABLES, "StoreLock"]:
        _q(mysql_src, f"DELETE FROM {t}")
    opts = SQLOptions("mysql", mysql_src, no_caching=nc, bulk_insert_limit=bulk)
    s = SQLStore(StoreLimits(max_msgs=50), opts)
    assert s.recover() is None
    s.init(spb.ServerInfo(ClusterID="c"))
    await s.flush()
    cs = s.create_channel("foo")
    s.add_client(spb.ClientInfo(ID="cl", HbInbox="hb"))
    sub = spb.SubState(clientID="cl", durableName="d", isDurable=True)
    cs.subs.create_sub(sub)
    for i in range(1, 101):
        cs.msgs.store(i, i, _msg(i))
        cs.subs.add_seq_pending(sub.ID, i)
        if i % 30 == 0:
            await s.flush()
    await s.flush()
    for i in range(51, 60):
        cs.subs.ack_seq_pending(sub.ID, i)
    await s.flush()
    assert _q(mysql_src, "SELECT COUNT(*), MIN(seq), MAX(seq) FROM Messages") == [(50, 51, 100)]
    assert cs.msgs.get_sequence_from_timestamp(60) == 60
    await s.close()

    # lowered limits on recovery (MaxBytes uses the session-variable query)
    lim = StoreLimits(max_msgs=20, max_bytes=10 * len(_msg(1)))
    s = SQLStore(lim, SQLOptions("mysql", mysql_src, no_caching=not nc))
    rs = s.recover()
    assert rs is not None
    ms = rs.channels["foo"].channel.msgs
    assert (ms.first_sequence(), ms.last_sequence()) == (91, 100)
    assert ms.lookup(95) == _msg(95)
    r = rs.channels["foo"].subscriptions[0]
    assert r.sub.lastSent == 100 and {60, 100} <= r.pending and not {51, 59} & r.pending
    s.delete_channel("foo")
    await s.flush()
    for _ in range(100):
        if _q(mysql_src, "SELECT COUNT(*) FROM Channels") == [(0,)]:
            break
        await asyncio.sleep(0.05)
    await s.close()
    assert _q(mysql_src, "SELECT COUNT(*) FROM Messages") == [(0,)]

    # StoreLock and fencing
    a = SQLStore(StoreLimits(), SQLOptions("mysql", mysql_src), ft=True)
    b = SQLStore(StoreLimits(), SQLOptions("mysql", mysql_src), ft=True)
    a.lock_update_interval = b.lock_update_interval = 0.05
    assert a.lock().acquire()
    a.recover()
    ch = a.create_channel("x")
    ch.msgs.store(1, 1, _msg(1))
    await a.flush()
    assert b.lock().acquire()
    ch.msgs.store(2, 2, _msg(2))
    with pytest.raises(StoreError, match="lock lost"):
        await a.flush()
    assert _q(mysql_src, "SELECT seq FROM Messages") == [(1,)]
    await a.close()
    await b.close()


async def test_mysql_owner_frozen_inside_a_transaction(mysql_src: str) -> None:
    """The owner freezes inside a transaction, its session holding the
    StoreLock row. A contender does not sit blocked on the row, and once
    MariaDB has ended the frozen session (an FT store's sessions may idle in
    a transaction for 5 s at most) it takes the lock."""
    a = SQLStore(StoreLimits(), SQLOptions("mysql", mysql_src, lock_steal_after=0.5), ft=True)
    b = SQLStore(StoreLimits(), SQLOptions("mysql", mysql_src, lock_steal_after=0.5), ft=True)
    loop = asyncio.get_running_loop()

    def acquire() -> Any:
        return asyncio.wait_for(loop.run_in_executor(None, b.lock().acquire), 5)

    frozen = a._wengine.connect()
    try:
        assert a.lock().acquire()
        # what a write's fence does, never committed
        frozen.execute(text("UPDATE StoreLock SET tick = tick + 1"))
        t0 = time.monotonic()
        assert not await acquire()
        while not await acquire():
            assert time.monotonic() - t0 < 20, "the frozen session was never ended"
        assert time.monotonic() - t0 >= 4  # not before MariaDB ended it
        assert _q(mysql_src, "SELECT id FROM StoreLock") == [(b.lock().id,)]
        assert not a.lock().check()
    finally:
        frozen.invalidate()  # ended by the server: nothing to roll back
        frozen.close()
        await a.close()
        await b.close()

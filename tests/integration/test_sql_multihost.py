"""A PostgreSQL source naming several servers, one of which does not
answer at all (a machine powered off: no TCP reset, every attempt waits
``connect_timeout``). Stood in for by a socket that listens and never
accepts: the kernel completes the handshake, the server never speaks."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from nss.options import SQLOptions, StoreLimits
from nss.stores.sql import SQLStore
from nss.stores.sql.hosts import MultiHostConnect, split_hosts

pytest_plugins = ["pg"]


@pytest.fixture
def silent_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield s.getsockname()[1]


def test_split_hosts() -> None:
    rest, hosts = split_hosts("host=a,b port=1,2 dbname=x connect_timeout=2") or ({}, [])
    assert hosts == [{"host": "a", "port": "1"}, {"host": "b", "port": "2"}]
    assert rest == {"dbname": "x", "connect_timeout": "2"}
    # libpq's URL rule: a host without a port uses the default one
    _, hosts = split_hosts("postgresql://u@a,b:7/db") or ({}, [])
    assert hosts == [{"host": "a", "port": ""}, {"host": "b", "port": "7"}]
    _, hosts = split_hosts("host=a,b port=7 dbname=x") or ({}, [])
    assert hosts == [{"host": "a", "port": "7"}, {"host": "b", "port": "7"}]
    assert split_hosts("host=a port=1 dbname=x") is None
    assert split_hosts("host=a,b,c port=1,2") is None  # libpq's error to give


async def test_a_silent_host_is_tried_last_once_it_timed_out(
    pg_server: Any, pg_db: str, silent_port: int
) -> None:
    dbname = pg_db.split("dbname=")[1].split()[0]
    source = (
        f"host=127.0.0.1,127.0.0.1 port={silent_port},{pg_server.port} dbname={dbname} "
        "user=postgres sslmode=disable connect_timeout=2"
    )
    t0 = time.monotonic()
    st = SQLStore(StoreLimits(), SQLOptions("postgres", source))
    try:
        # the first connection found out the hard way
        assert time.monotonic() - t0 >= 2
        # fresh connections go to the live server at once now
        for engine in (st._wengine, st._rengine):
            engine.dispose()
        t1 = time.monotonic()
        assert st._probe() == f"127.0.0.1:{pg_server.port}"
        assert st.read(lambda c: c.exec_driver_sql("SELECT 1").scalar()) == 1
        assert time.monotonic() - t1 < 1.0
    finally:
        await st.close()


def test_every_host_failing_says_what_each_answered(pg_server: Any, silent_port: int) -> None:
    rest, hosts = split_hosts(
        f"host=127.0.0.1,127.0.0.1 port={silent_port},1 dbname=x user=postgres "
        "sslmode=disable connect_timeout=1"
    ) or ({}, [])
    connect = MultiHostConnect(rest, hosts)
    with pytest.raises(Exception) as exc:
        connect()
    text = str(exc.value)
    assert f"127.0.0.1:{silent_port}: connection timeout expired" in text
    assert 'port 1 failed: Connection refused' in text
    # the silent one goes last, the refusing one keeps its place
    assert connect.order() == [1, 0]

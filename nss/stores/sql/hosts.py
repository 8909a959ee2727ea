"""Connections of a PostgreSQL source that names several servers.

libpq (and psycopg) try the hosts of ``host=a,b port=p1,p2`` in the order
given, every time. That order costs dearly when the first host is a
primary that vanished without a TCP reset (a machine powered off, a network
cut): every new connection waits ``connect_timeout`` on it before it tries
the promoted standby, and a store reconnecting after a fail-over needs
several. So nss makes the attempts itself, one host at a time, and tries a
host whose last attempt failed slowly (timed out) after the others; the
first attempt that succeeds there again puts it back in its place. A host
that refuses quickly (down, or a standby refusing ``read-write``) keeps its
place: refusing costs nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

# libpq's per-host keys, comma-separated lists in a multi-host source
_LIST_KEYS = ("host", "hostaddr", "port")
# a failed attempt that took this long counts as slow
SLOW_ATTEMPT = 1.0


def split_hosts(conninfo: str) -> tuple[dict[str, Any], list[dict[str, str]]] | None:
    """(the other parameters, one dict of host keys per server) for a
    source naming several servers; None for one server, or lists libpq
    would refuse (it then says what is wrong, unchanged)."""
    params = conninfo_to_dict(conninfo)
    lists = {k: str(params[k]).split(",") for k in _LIST_KEYS if params.get(k) is not None}
    n = max((len(v) for v in lists.values()), default=1)
    if n < 2:
        return None
    hosts: list[dict[str, str]] = [{} for _ in range(n)]
    for k, vals in lists.items():
        if len(vals) not in (1, n):
            return None
        for i in range(n):
            hosts[i][k] = vals[i] if len(vals) == n else vals[0]
    rest = {k: v for k, v in params.items() if k not in lists}
    return rest, hosts


class MultiHostConnect:
    """The connection factory of a multi-host source (see the module
    docstring); safe to call from several threads."""

    def __init__(self, rest: dict[str, Any], hosts: list[dict[str, str]]) -> None:
        self._rest = rest
        self._hosts = hosts
        self._slow: set[int] = set()
        self._mu = threading.Lock()

    def order(self) -> list[int]:
        """Host indexes in the order the next connection tries them."""
        with self._mu:
            slow = set(self._slow)
        return sorted(range(len(self._hosts)), key=lambda i: i in slow)

    def describe(self, i: int) -> str:
        h = self._hosts[i]
        return f"{h.get('host') or h.get('hostaddr') or 'localhost'}:{h.get('port') or '5432'}"

    def __call__(self) -> psycopg.Connection[Any]:
        errors: list[str] = []
        last: psycopg.Error | None = None
        for i in self.order():
            t0 = time.monotonic()
            try:
                conn = psycopg.connect(**self._rest, **self._hosts[i])
            except psycopg.Error as e:
                slow = (
                    isinstance(e, psycopg.errors.ConnectionTimeout)
                    or time.monotonic() - t0 >= SLOW_ATTEMPT
                )
                self._mark(i, slow)
                msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
                errors.append(msg if "server at" in msg else f"{self.describe(i)}: {msg}")
                last = e
                continue
            self._mark(i, False)
            return conn
        assert last is not None
        # one line for the log: what every host answered
        raise psycopg.OperationalError("; ".join(errors)) from last

    def _mark(self, i: int, slow: bool) -> None:
        with self._mu:
            if slow:
                self._slow.add(i)
            else:
                self._slow.discard(i)

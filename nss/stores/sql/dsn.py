"""Translate ``--sql_driver``/``--sql_source`` into something SQLAlchemy opens.

Users of the Go server pass the DSN of the Go driver (stores.md §4):

* ``postgres``: lib/pq's libpq-style ``key=value`` list
  (``host=db port=5432 dbname=nss user=nss password='a b' sslmode=disable``)
  or a ``postgres://`` / ``postgresql://`` URL. lib/pq also takes a few keys
  that libpq (and so psycopg) rejects as "invalid connection option": the
  Go server's ``readTimeout``/``writeTimeout`` and pq's own
  ``binary_parameters``, ``disable_prepared_binary_result`` ... They are
  dropped here so that an existing source string keeps working.
* ``mysql``: go-sql-driver's ``user:password@tcp(host:3306)/dbname?params``.

Both are turned into a libpq conninfo / SQLAlchemy URL. A ``connect_timeout``
is added when the source has none, so that an unreachable database fails a
connection attempt in bounded time instead of hanging the reconnect loop.

A PostgreSQL source may name several servers, libpq's way
(``host=a,b port=5432,5433`` or ``postgresql://a:5432,b:5433/db``), for a
primary with standbys that one of them replaces when promoted. Every
connection then tries the hosts in order; ``target_session_attrs=read-write``
(added when such a source has no ``target_session_attrs``: the store must
write) skips a standby, so after a fail-over the store's reconnect finds
the promoted one by itself.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from nss import redact
from nss.stores.base import StoreError

DRIVER_POSTGRES = "postgres"
DRIVER_MYSQL = "mysql"

DEFAULT_CONNECT_TIMEOUT = 5

# lib/pq (or the Go server's wrapper) keys that libpq does not know
_PQ_ONLY_KEYS = {
    "readtimeout",
    "writetimeout",
    "binary_parameters",
    "disable_prepared_binary_result",
    "sslinline",
    "krbspn",
}

# libpq keepalive settings so that a database host that vanishes without a
# TCP reset is noticed within seconds rather than after the kernel default
_PG_KEEPALIVES = {
    "keepalives": "1",
    "keepalives_idle": "5",
    "keepalives_interval": "2",
    "keepalives_count": "3",
    # unacknowledged writes give up after 10 s instead of ~15 min
    "tcp_user_timeout": "10000",
}


@dataclass
class SQLTarget:
    """What the SQL store needs to connect: the SQLAlchemy URL (without
    credentials for Postgres, whose connections are made from ``conninfo``),
    the dialect name and, for Postgres, the libpq conninfo string."""

    driver: str
    url: str
    conninfo: str = ""
    connect_args: dict[str, Any] = field(default_factory=dict)

    @property
    def postgres(self) -> bool:
        return self.driver == DRIVER_POSTGRES


def parse_kv_dsn(dsn: str) -> dict[str, str]:
    """Parse a libpq-style ``key=value`` list (values may be single-quoted,
    with ``\\'`` and ``\\\\`` escapes, as libpq and lib/pq accept)."""
    out: dict[str, str] = {}
    i, n = 0, len(dsn)
    prev = ""
    while i < n:
        while i < n and dsn[i].isspace():
            i += 1
        if i >= n:
            break
        j = i
        while j < n and dsn[j] != "=" and not dsn[j].isspace():
            j += 1
        key = dsn[i:j]
        while j < n and dsn[j].isspace():
            j += 1
        if j >= n or dsn[j] != "=" or not key:
            # after an unquoted password with a space, "key" is its tail
            shown = redact.REDACTED if prev.lower() == "password" else key
            raise StoreError(f'sql: invalid data source: missing "=" after "{shown}"')
        prev = key
        j += 1
        while j < n and dsn[j].isspace():
            j += 1
        val: list[str] = []
        if j < n and dsn[j] == "'":
            j += 1
            while True:
                if j >= n:
                    raise StoreError("sql: invalid data source: unterminated quoted string")
                c = dsn[j]
                if c == "\\" and j + 1 < n:
                    val.append(dsn[j + 1])
                    j += 2
                    continue
                if c == "'":
                    j += 1
                    break
                val.append(c)
                j += 1
        else:
            while j < n and not dsn[j].isspace():
                c = dsn[j]
                if c == "\\" and j + 1 < n:
                    val.append(dsn[j + 1])
                    j += 2
                    continue
                val.append(c)
                j += 1
        out[key] = "".join(val)
        i = j
    return out


def _quote_conninfo(v: str) -> str:
    if v and not re.search(r"[\s'\\]", v):
        return v
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def make_conninfo(params: dict[str, str]) -> str:
    return " ".join(f"{k}={_quote_conninfo(v)}" for k, v in params.items())


def _postgres(source: str) -> SQLTarget:
    src = source.strip()
    if "://" in src:
        scheme, rest = src.split("://", 1)
        scheme = scheme.lower().split("+", 1)[0]
        if scheme not in ("postgres", "postgresql"):
            raise StoreError(f"sql: unsupported URL scheme {scheme!r} for driver postgres")
        parts = urlsplit("postgresql://" + rest)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k.lower() not in _PQ_ONLY_KEYS]
        keys = {k for k, _ in query}
        if "," in parts.netloc.rsplit("@", 1)[-1] and "target_session_attrs" not in keys:
            query.append(("target_session_attrs", "read-write"))
        if "connect_timeout" not in keys:
            query.append(("connect_timeout", str(DEFAULT_CONNECT_TIMEOUT)))
        for k, v in _PG_KEEPALIVES.items():
            if k not in keys:
                query.append((k, v))
        conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), ""))
    else:
        params = {k: v for k, v in parse_kv_dsn(src).items() if k.lower() not in _PQ_ONLY_KEYS}
        if "," in params.get("host", "") + params.get("hostaddr", ""):
            params.setdefault("target_session_attrs", "read-write")
        params.setdefault("connect_timeout", str(DEFAULT_CONNECT_TIMEOUT))
        for k, v in _PG_KEEPALIVES.items():
            params.setdefault(k, v)
        conninfo = make_conninfo(params)
    return SQLTarget(DRIVER_POSTGRES, "postgresql+psycopg://", conninfo=conninfo)


_MYSQL_DSN = re.compile(
    r"^(?:(?P<user>[^:@]*)(?::(?P<password>.*))?@)?"
    r"(?:(?P<net>[a-z0-9]+)(?:\((?P<addr>[^)]*)\))?)?"
    r"/(?P<db>[^?]*)(?:\?(?P<params>.*))?$",
    re.S,
)


def _mysql(source: str) -> SQLTarget:
    src = source.strip()
    if "://" in src:
        scheme, rest = src.split("://", 1)
        if scheme.lower().split("+", 1)[0] != "mysql":
            raise StoreError(f"sql: unsupported URL scheme {scheme!r} for driver mysql")
        return SQLTarget(DRIVER_MYSQL, "mysql+pymysql://" + rest)
    m = _MYSQL_DSN.match(src)
    if m is None:
        raise StoreError(f"sql: invalid MySQL data source {redact.dsn(source)!r}")
    user = m.group("user") or ""
    password = m.group("password")
    net = (m.group("net") or "tcp").lower()
    addr = m.group("addr") or ""
    db = m.group("db") or ""
    query: dict[str, str] = {}
    connect_args: dict[str, Any] = {}
    for k, v in parse_qsl(m.group("params") or ""):
        lk = k.lower()
        if lk in ("charset",):
            query["charset"] = v.split(",")[0]
        elif lk == "timeout":
            connect_args["connect_timeout"] = _go_duration_seconds(v)
        elif lk == "readtimeout":
            connect_args["read_timeout"] = _go_duration_seconds(v)
        elif lk == "writetimeout":
            connect_args["write_timeout"] = _go_duration_seconds(v)
        # other go-sql-driver parameters (parseTime, tls, ...) do not apply
    connect_args.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    cred = quote(user, safe="")
    if password is not None:
        cred += ":" + quote(password, safe="")
    if net == "unix":
        query["unix_socket"] = addr
        host = "localhost"
    else:
        host = addr or "127.0.0.1:3306"
    netloc = (cred + "@" if cred else "") + host
    url = f"mysql+pymysql://{netloc}/{quote(unquote(db), safe='')}"
    if query:
        url += "?" + urlencode(query)
    return SQLTarget(DRIVER_MYSQL, url, connect_args=connect_args)


def _go_duration_seconds(v: str) -> float:
    """Seconds in a Go duration string such as ``30s``, ``1m30s``, ``500ms``."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total = 0.0
    parts = re.findall(r"([0-9.]+)(ns|us|µs|ms|s|m|h)", v)
    if not parts or "".join(a + b for a, b in parts) != v:
        raise StoreError(f"sql: invalid duration {v!r} in data source")
    for num, unit in parts:
        total += float(num) * units[unit]
    return total


# --sql_driver -> (Python module that talks to it, what installs that module)
_DRIVER_MODULES = {
    DRIVER_POSTGRES: ("psycopg", "pip install 'psycopg[binary]'"),
    DRIVER_MYSQL: ("pymysql", "pip install 'nss[mysql]'"),
}
_DRIVER_ALIASES = {"postgresql": DRIVER_POSTGRES}


def check_driver(driver: str) -> str:
    """The canonical driver name, once its Python module imports.

    Checked before anything starts (and by ``-t``), so a MySQL user without
    the optional PyMySQL learns which extra to install instead of reading a
    SQLAlchemy traceback after the NATS server came up."""
    d = (driver or "").strip().lower()
    d = _DRIVER_ALIASES.get(d, d)
    if d not in _DRIVER_MODULES:
        raise StoreError(
            f'sql: unknown driver "{driver}", supported drivers: {", ".join(_DRIVER_MODULES)}'
        )
    module, install = _DRIVER_MODULES[d]
    try:
        importlib.import_module(module)
    except ImportError as e:
        raise StoreError(
            f"sql: the {d} driver needs the Python package {module}, which cannot be "
            f"imported ({e}); install it with: {install}"
        ) from None
    return d


def parse_source(driver: str, source: str) -> SQLTarget:
    """Resolve ``--sql_driver``/``--sql_source``; StoreError names what is wrong."""
    if check_driver(driver) == DRIVER_POSTGRES:
        return _postgres(source or "")
    return _mysql(source or "")

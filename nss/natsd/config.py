"""The configuration file nss writes for its nats-server child.

Everything on a process's command line is public (``ps``, ``/proc/*/cmdline``),
so nothing secret may travel as a flag: ``--user``/``--pass``/``--auth`` and
the credentials in ``--cluster``/``--routes`` URLs go into a private
configuration file instead (``nss.private_dir``), merged into the NATS part
of the user's ``-c``/``-sc`` file. The other flags stay flags: nats-server
lets flags override the file, which is how the two combine for the user
too.

The merge reproduces what the flags did: ``--user`` replaced the user of
the file's ``authorization`` block and kept the rest of it; ``--cluster
nats://u:p@host:port`` replaced the route listener and its credentials and
kept the rest of the ``cluster`` block; ``--routes`` replaced the routes.

Pure functions of their inputs (the supervisor, :mod:`nss.natsd.supervisor`,
reads the user's file and writes the result), so the rules are unit-tested
without processes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from nss.options import NATSOptions
from nss.redact import has_credentials, url_credentials

__all__ = [
    "INTERNAL_MONITOR",
    "MONITOR_KEYS",
    "Pins",
    "child_config",
    "credentials_config",
]

# nss serves the user's monitoring port and proxies the NATS endpoints to
# the child, whose own listener is a random loopback port (never the
# network: nats-server's monitor follows -a, 0.0.0.0 by default).
INTERNAL_MONITOR = "127.0.0.1:-1"
MONITOR_KEYS = frozenset({"http", "http_port", "monitor_port", "https", "https_port"})


@dataclass(frozen=True)
class Pins:
    """Ports a restarted (or reloaded) child must keep: the ones the first
    child bound, so clients and routes find it again (``-p -1`` too)."""

    client: int | None = None
    cluster: int | None = None


def _key(d: dict[str, Any], name: str) -> str:
    """The spelling ``d`` uses for a case-insensitive NATS config key."""
    return next((k for k in d if k.lower() == name), name)


def _submap(d: dict[str, Any], name: str) -> dict[str, Any]:
    key = _key(d, name)
    value = d.get(key)
    if not isinstance(value, dict):
        value = d[key] = {}
    return value


def _drop(d: dict[str, Any], *names: str) -> None:
    for k in [k for k in d if k.lower() in names]:
        del d[k]


def _listen_of(url: str) -> str:
    """``host:port`` of a ``nats://[user:pass@]host:port`` route listener."""
    parts = urlsplit(url.strip())
    host = parts.hostname or "0.0.0.0"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port if parts.port is not None else -1}"


def _set_credentials(auth: dict[str, Any], user: str, password: str) -> None:
    if user:
        _drop(auth, "user", "username")
        auth["user"] = user
    if password:
        _drop(auth, "pass", "password")
        auth["password"] = password


def credentials_config(opts: NATSOptions) -> dict[str, Any]:
    """The secret settings ``build_args`` leaves out, as config keys."""
    out: dict[str, Any] = {}
    if opts.user or opts.password or opts.auth_token:
        auth = out["authorization"] = {}
        _set_credentials(auth, opts.user, opts.password)
        if opts.auth_token:
            auth["token"] = opts.auth_token
    if opts.cluster_listen and has_credentials(opts.cluster_listen):
        user, password = url_credentials(opts.cluster_listen)
        out["cluster"] = {
            "listen": _listen_of(opts.cluster_listen),
            "authorization": {"user": user, "password": password},
        }
    if opts.routes and has_credentials(opts.routes):
        cluster = out.setdefault("cluster", {})
        cluster["routes"] = [r.strip() for r in opts.routes.split(",") if r.strip()]
    return out


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> None:
    """Apply :func:`credentials_config` to the user's keys the way the
    flags would have overridden them."""
    for name, value in overlay.items():
        if name == "authorization":
            auth = _submap(base, "authorization")
            _set_credentials(auth, value.get("user", ""), value.get("password", ""))
            if "token" in value:
                _drop(auth, "token")
                auth["token"] = value["token"]
        elif name == "cluster":
            cluster = _submap(base, "cluster")
            if "listen" in value:
                _drop(cluster, "listen", "host", "net", "port")
                cluster["listen"] = value["listen"]
                _set_credentials(_submap(cluster, "authorization"), **value["authorization"])
            if "routes" in value:
                _drop(cluster, "routes")
                cluster["routes"] = value["routes"]


def _pin_listen(d: dict[str, Any], port: int) -> None:
    """Fix the port of a ``listen``/``port`` pair (the top level or the
    ``cluster`` block), keeping the configured host."""
    for k in list(d):
        low = k.lower()
        if low == "listen":
            host = str(d[k]).rpartition(":")[0] if ":" in str(d[k]) else str(d[k])
            d[k] = f"{host}:{port}" if host else port
        elif low == "port":
            d[k] = port


def child_config(
    opts: NATSOptions,
    base: dict[str, Any],
    *,
    internal_monitor: bool,
    pins: Pins = Pins(),
) -> dict[str, Any]:
    """The child's configuration: ``base`` (the NATS keys of the user's
    file, possibly empty) with the credentials, nss's internal monitoring
    listener and the pinned ports applied. Empty means no file is needed."""
    out = copy.deepcopy(base)
    _merge(out, credentials_config(opts))
    if internal_monitor:
        _drop(out, *MONITOR_KEYS)
        out["http"] = INTERNAL_MONITOR
    if pins.client is not None:
        _pin_listen(out, pins.client)
    if pins.cluster is not None:
        key = _key(out, "cluster")
        if isinstance(out.get(key), dict):
            _pin_listen(out[key], pins.cluster)
    return out

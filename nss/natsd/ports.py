"""Where the child listens: addresses from its log and its ports file.

``-p -1`` / ``-m -1`` pick random ports, so nss learns the actual ones from
the child to connect to itself and to pin them for a restarted child.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

__all__ = [
    "Listening",
    "dial_host",
    "port_of_url",
    "ports_file_listeners",
    "read_ports_file",
    "split_host_port",
]


@dataclass(frozen=True)
class Listening:
    """A listener the child opened.

    ``kind`` is ``client``, ``monitor`` or ``route``. ``port`` is None when
    the address did not parse, ``host`` when the source does not say (the
    ports file has URLs of the dialable host, not the bind address).
    ``only_if_unknown`` marks the ports file's word, which must not
    overrule what the log already said.
    """

    kind: str
    port: int | None
    host: str | None = None
    scheme: str | None = None
    only_if_unknown: bool = False


def split_host_port(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def dial_host(host: str) -> str:
    """Host part of a URL that reaches a listener bound to ``host``.

    A wildcard bind is reached through loopback (config.md §1.4); IPv6
    literals need brackets in URLs.
    """
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "[::1]"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def port_of_url(url: str) -> int | None:
    try:
        return int(url.rstrip("/").rpartition(":")[2])
    except ValueError:
        return None


def read_ports_file(directory: str, suffix: str) -> dict[str, list[str]] | None:
    """Parse nats-server's ``<exe>_<pid>.ports`` JSON, or None if not ready."""
    try:
        names = [n for n in os.listdir(directory) if n.endswith(suffix)]
        if not names:
            return None
        with open(os.path.join(directory, names[0]), encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def ports_file_listeners(info: dict[str, list[str]]) -> list[Listening]:
    """The listeners a ports file names (the first URL of each kind)."""
    found = []
    if nats_urls := info.get("nats") or []:
        found.append(Listening("client", port_of_url(nats_urls[0]), only_if_unknown=True))
    if mon_urls := info.get("monitoring") or []:
        scheme = mon_urls[0].partition(":")[0] or "http"
        found.append(
            Listening("monitor", port_of_url(mon_urls[0]), scheme=scheme, only_if_unknown=True)
        )
    if cluster_urls := info.get("cluster") or []:
        found.append(Listening("route", port_of_url(cluster_urls[0]), only_if_unknown=True))
    return found

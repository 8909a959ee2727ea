"""The streaming monitoring endpoints (config.md §3), as plain functions.

Everything here reads the server's state and returns a :class:`Reply`
(status, body, headers); nothing knows about HTTP servers. That keeps the
Go-compatibility details -- field order, ``omitempty`` omissions, Go's time
and JSON formatting, lenient query parsing, the exact 404 texts -- testable
without sockets, and keeps this module stdlib-only so importing it costs
nothing at start-up (the HTTP glue is ``http.py`` and ``wire.py``, used only
with ``-m``/``-ms``).

The server runs on one event loop, so a handler sees a consistent snapshot
without the locks the Go server takes.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nss.options import VERSION
from nss.server.state import ServerState
from nss.stores.base import StoreError
from nss.units import go_quote

if TYPE_CHECKING:
    from nss.server.core.model import Channel, Client, Subscription
    from nss.server.monitor.view import ServerView

ROOT_PATH = "/streaming"
SERVER_PATH = ROOT_PATH + "/serverz"
STORE_PATH = ROOT_PATH + "/storez"
CLIENTS_PATH = ROOT_PATH + "/clientsz"
CHANNELS_PATH = ROOT_PATH + "/channelsz"
IS_FT_ACTIVE_PATH = ROOT_PATH + "/isFTActive"
HEALTHZ_PATH = "/healthz"
METRICS_PATH = "/metrics"

DEFAULT_LIST_LIMIT = 1024

# The runtime field Go fills with runtime.Version() ("go1.21.5").
RUNTIME_VERSION = "python" + sys.version.split()[0]

JSON_TYPE = "application/json"
JSONP_TYPE = "application/javascript"
TEXT_TYPE = "text/plain; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"

# States whose server answers clients (the rest make /healthz fail).
_SERVING_STATES = frozenset(
    {ServerState.STANDALONE, ServerState.FT_ACTIVE, ServerState.CLUSTERED}
)

_INT_RE = re.compile(r"[+-]?[0-9]+")
_INT64_MAX = (1 << 63) - 1
_INT64_MIN = -(1 << 63)

# Go's json.Marshal escapes these even inside strings (HTML safety and the
# JavaScript line terminators); Python's json does not.
_GO_ESCAPES = str.maketrans(
    {
        "<": "\\u003c",
        ">": "\\u003e",
        "&": "\\u0026",
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
    }
)

# Go's handleRootz text, byte for byte (tabs included).
_ROOT_HTML = """<html lang="en">
   <head>
    <link rel="shortcut icon" href="https://nats.io/img/favicon.ico">
    <style type="text/css">
      body { font-family: "Century Gothic", CenturyGothic, AppleGothic, sans-serif; font-size: 22; }
      a { margin-left: 32px; }
    </style>
  </head>
  <body>
    <img src="https://nats.io/img/logo.png" alt="NATS Streaming">
    <br/>
\t<a href=./streaming/serverz>server</a><br/>
\t<a href=./streaming/storez>store</a><br/>
\t<a href=./streaming/clientsz>clients</a><br/>
\t<a href=./streaming/channelsz>channels</a><br/>
    <br/>
    <a href=https://docs.nats.io/legacy/stan/intro/monitoring/>help</a>
  </body>
</html>"""


# --------------------------------------------------------------------------
# Replies and Go formatting
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """An HTTP answer, independent of the HTTP library serving it.

    ``content_type`` None means no Content-Type header at all, which is what
    Go sends for a bare ``WriteHeader`` (isFTActive).
    """

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


def go_atoi(value: str | None) -> int:
    """``strconv.Atoi`` with the error ignored, as the Go handlers use it.

    Unparsable input is 0 (config.md §3: lenient); out-of-range input
    saturates as Atoi's ErrRange value does. Stricter than ``int()``: no
    spaces, underscores or non-ASCII digits.
    """
    if not value or not _INT_RE.fullmatch(value):
        return 0
    return max(_INT64_MIN, min(_INT64_MAX, int(value)))


def go_time(ns: int) -> str:
    """A wall-clock time as Go's ``time.Time`` marshals to JSON.

    RFC 3339 with nanoseconds, trailing fractional zeros trimmed (no dot at
    all for a whole second), local offset, ``Z`` for a zero offset.
    """
    secs, frac = divmod(ns, 1_000_000_000)
    lt = time.localtime(secs)
    out = time.strftime("%Y-%m-%dT%H:%M:%S", lt)
    if frac:
        out += "." + f"{frac:09d}".rstrip("0")
    off = lt.tm_gmtoff or 0
    if off == 0:
        return out + "Z"
    sign = "+" if off > 0 else "-"
    hours, rem = divmod(abs(off), 3600)
    return f"{out}{sign}{hours:02d}:{rem // 60:02d}"


def uptime(seconds: float) -> str:
    """Go's ``myUptime``: largest non-zero unit first, whole seconds."""
    tsecs = max(0, int(seconds))
    tmins, thrs = tsecs // 60, tsecs // 3600
    tdays = thrs // 24
    tyrs = tdays // 365
    if tyrs > 0:
        return f"{tyrs}y{tdays % 365}d{thrs % 24}h{tmins % 60}m{tsecs % 60}s"
    if tdays > 0:
        return f"{tdays}d{thrs % 24}h{tmins % 60}m{tsecs % 60}s"
    if thrs > 0:
        return f"{thrs}h{tmins % 60}m{tsecs % 60}s"
    if tmins > 0:
        return f"{tmins}m{tsecs % 60}s"
    return f"{tsecs}s"


def go_json(obj: Any, indent: bool = True) -> bytes:
    """``json.MarshalIndent(obj, "", "  ")`` (or ``json.Marshal``) output.

    Non-ASCII stays UTF-8 and ``<>&`` are escaped, as in Go. The
    translation is safe on the whole document because those characters can
    only occur inside JSON strings.
    """
    if indent:
        text = json.dumps(obj, indent=2, ensure_ascii=False)
    else:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return text.translate(_GO_ESCAPES).encode("utf-8")


def json_reply(obj: Any, query: Mapping[str, str], status: int = 200, indent: bool = True) -> Reply:
    """nats-server's ``handleResponse``: JSON, or JSONP with ``callback``.

    JSONP replies carry no CORS header (they do not need one), exactly as
    nats-server v2.9 does.
    """
    data = go_json(obj, indent)
    callback = query.get("callback") or ""
    if callback:
        body = callback.encode("utf-8") + b"(" + data + b")"
        return Reply(status, body, JSONP_TYPE)
    return Reply(status, data, JSON_TYPE, (("Access-Control-Allow-Origin", "*"),))


def text_error(message: str, status: int) -> Reply:
    """Go's ``http.Error``: the message plus a newline, as plain text."""
    return Reply(
        status,
        (message + "\n").encode("utf-8"),
        TEXT_TYPE,
        (("X-Content-Type-Options", "nosniff"),),
    )


def not_found() -> Reply:
    """Go's ``http.NotFound`` (what ServeMux answers for unknown paths)."""
    return text_error("404 page not found", 404)


def offset_and_limit(query: Mapping[str, str]) -> tuple[int, int]:
    offset = go_atoi(query.get("offset"))
    if offset < 0:
        offset = 0
    limit = go_atoi(query.get("limit"))
    if limit <= 0:
        limit = DEFAULT_LIST_LIMIT
    return offset, limit


def min_max_offset(offset: int, limit: int, total: int) -> tuple[int, int]:
    return min(offset, total), min(offset + limit, total)


# --------------------------------------------------------------------------
# State snapshots
# --------------------------------------------------------------------------


def _channels(server: ServerView) -> dict[str, Channel]:
    """The channels, or none while the store is not open yet (start-up, FT
    standby), when Go would have an empty channel store too."""
    reg = server.channels
    return reg.channels if reg is not None else {}


def channel_subs(ch: Channel) -> list[Subscription]:
    """A channel's subscriptions in Go's ``getMonitorChannelSubs`` order."""
    return ch.all_subs()

def channel_subs_count(ch: Channel) -> int:
    n = len(ch.plain) + sum(1 for d in ch.durables.values() if d.client is None)
    for g in ch.queues.values():
        n += len(g.members) + (g.shadow is not None)
    return n


def num_subs(server: ServerView) -> int:
    return sum(channel_subs_count(ch) for ch in _channels(server).values())


def msgs_state(server: ServerView) -> tuple[int, int]:
    """Messages and bytes over all channels (may raise StoreError)."""
    count = size = 0
    for ch in _channels(server).values():
        m, b = ch.msgs.state()
        count += m
        size += b
    return count, size


def subscriptionz(sub: Subscription) -> dict[str, Any]:
    """Go's ``Subscriptionz``; ``omitempty`` fields are left out when empty.

    An offline subscription reports the client it last belonged to:
    durables keep their client ID (it is part of their key), queue shadows
    have it cleared and report ``saved_client_id`` when the server keeps one.
    """
    offline = sub.client is None
    client_id = sub.client_id
    if offline and not client_id:
        client_id = sub.saved_client_id
    d: dict[str, Any] = {"client_id": client_id, "inbox": sub.inbox, "ack_inbox": sub.ack_inbox}
    if sub.durable_name:
        d["durable_name"] = sub.durable_name
    if sub.qgroup:
        d["queue_name"] = sub.qgroup
    d["is_durable"] = bool(sub.is_durable)
    d["is_offline"] = offline
    d["max_inflight"] = int(sub.max_inflight)
    d["ack_wait"] = int(sub.ack_wait)
    d["last_sent"] = int(sub.last_sent)
    d["pending_count"] = len(sub.pending)
    d["is_stalled"] = bool(sub.stalled)
    return d


def _fds() -> tuple[int, int]:
    """Open and maximum file descriptors, from /proc as Go's procfs reads
    them; (0, 0) where there is no /proc, so both fields are omitted."""
    try:
        fds = len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0, 0
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return fds, 0
    return fds, (0 if soft == resource.RLIM_INFINITY else int(soft))


def _ns(seconds: float) -> int:
    return int(round(seconds * 1e9))


def _start_ns(server: ServerView) -> int:
    # start_time is a float; microseconds are what it holds faithfully
    return int(round(server.start_time * 1e6)) * 1000


# --------------------------------------------------------------------------
# Endpoints
# --------------------------------------------------------------------------


def serverz(server: ServerView, now_ns: int) -> dict[str, Any]:
    count, size = msgs_state(server)
    fds, max_fds = _fds()
    start = _start_ns(server)
    d: dict[str, Any] = {
        "cluster_id": server.info.ClusterID,
        "server_id": server.server_id,
        "version": VERSION,
        "go": RUNTIME_VERSION,
        "state": server.state,
        # "role" and "node_id" (Raft clustering) are always empty: omitted
        "now": go_time(now_ns),
        "start_time": go_time(start),
        "uptime": uptime((now_ns - start) / 1e9),
        "clients": len(server.clients.by_id),
        "subscriptions": num_subs(server),
        "channels": len(_channels(server)),
        "total_msgs": count,
        "total_bytes": size,
        "in_msgs": server.in_msgs,
        "in_bytes": server.in_bytes,
        "out_msgs": server.deliverer.out_msgs if server.deliverer is not None else 0,
        "out_bytes": server.deliverer.out_bytes if server.deliverer is not None else 0,
    }
    if fds:
        d["open_fds"] = fds
    if max_fds:
        d["max_fds"] = max_fds
    return d


def _limits_dict(
    max_msgs: int, max_bytes: int, max_age: float, max_subs: int, max_inactivity: float
) -> dict[str, Any]:
    return {
        "max_msgs": int(max_msgs),
        "max_bytes": int(max_bytes),
        "max_age": _ns(max_age),
        "max_subscriptions": int(max_subs),
        "max_inactivity": _ns(max_inactivity),
    }


def storez(server: ServerView, now_ns: int) -> dict[str, Any]:
    count, size = msgs_state(server)
    store = server.store
    lim = store.limits if store is not None else server.sopts.store_limits
    limits: dict[str, Any] = {"max_channels": int(lim.max_channels)}
    limits.update(
        _limits_dict(
            lim.max_msgs, lim.max_bytes, lim.max_age, lim.max_subscriptions, lim.max_inactivity
        )
    )
    if lim.per_channel:
        # Go shows them after Build(): inheritance applied. The store's
        # resolution is the one that is enforced, so show that.
        per: dict[str, Any] = {}
        for name in sorted(lim.per_channel):
            if store is not None:
                cl = store.channel_limits(name)
            else:
                from nss.stores.base import effective_limits

                cl = effective_limits(lim, name)
            per[name] = _limits_dict(
                cl.max_msgs, cl.max_bytes, cl.max_age, cl.max_subscriptions, cl.max_inactivity
            )
        limits["channels"] = per
    return {
        "cluster_id": server.info.ClusterID,
        "server_id": server.server_id,
        "now": go_time(now_ns),
        "type": store.name if store is not None else server.sopts.store_type.upper(),
        "limits": limits,
        "total_msgs": count,
        "total_bytes": size,
    }


def clientz(client: Client, subs: bool) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": client.id,
        "hb_inbox": client.hb_inbox,
        "subs_count": len(client.subs),
    }
    if subs and client.subs:
        by_channel: dict[str, list[dict[str, Any]]] = {}
        for sub in client.subs:
            by_channel.setdefault(sub.channel.name, []).append(subscriptionz(sub))
        # Go marshals maps with sorted keys
        d["subscriptions"] = {k: by_channel[k] for k in sorted(by_channel)}
    return d


def clientsz(server: ServerView, query: Mapping[str, str], now_ns: int) -> Reply:
    subs = go_atoi(query.get("subs")) == 1
    single = query.get("client") or ""
    if single:
        client = server.clients.by_id.get(single)
        if client is None:
            return text_error(f"Client {single} not found", 404)
        return json_reply(clientz(client, subs), query)
    offset, limit = offset_and_limit(query)
    ids = sorted(server.clients.by_id)
    lo, hi = min_max_offset(offset, limit, len(ids))
    clients = [clientz(server.clients.by_id[cid], subs) for cid in ids[lo:hi]]
    return json_reply(
        {
            "cluster_id": server.info.ClusterID,
            "server_id": server.server_id,
            "now": go_time(now_ns),
            "offset": offset,
            "limit": limit,
            "count": len(clients),
            "total": len(ids),
            "clients": clients,
        },
        query,
    )


def channelz(ch: Channel, subs: bool) -> dict[str, Any]:
    """Go's ``Channelz`` (may raise StoreError)."""
    msgs, size = ch.msgs.state()
    d: dict[str, Any] = {
        "name": ch.name,
        "msgs": msgs,
        "bytes": size,
        "first_seq": ch.msgs.first_sequence(),
        "last_seq": ch.msgs.last_sequence(),
    }
    if subs:
        subz = [subscriptionz(s) for s in channel_subs(ch)]
        d["subs_count"] = len(subz)
        if subz:
            d["subscriptions"] = subz
    else:
        d["subs_count"] = channel_subs_count(ch)
    return d


def channelsz(server: ServerView, query: Mapping[str, str], now_ns: int) -> Reply:
    subs = go_atoi(query.get("subs")) == 1
    name = query.get("channel") or ""
    channels = _channels(server)
    if name:
        ch = channels.get(name)
        if ch is None:
            return text_error(f"Channel {name} not found", 404)
        try:
            return json_reply(channelz(ch, subs), query)
        except StoreError as e:
            return text_error(
                f"Error getting information about channel {go_quote(name)}: "
                f"unable to get message state: {e}",
                500,
            )
    offset, limit = offset_and_limit(query)
    names = sorted(channels)
    lo, hi = min_max_offset(offset, limit, len(names))
    page = names[lo:hi]
    d: dict[str, Any] = {
        "cluster_id": server.info.ClusterID,
        "server_id": server.server_id,
        "now": go_time(now_ns),
        "offset": offset,
        "limit": limit,
        "count": len(page),
        "total": len(names),
    }
    if subs:
        try:
            chz = [channelz(channels[n], True) for n in page]
        except StoreError as e:
            # Go quotes the (empty) channel query parameter here
            return text_error(
                f'Error getting information about channel "": unable to get message state: {e}',
                500,
            )
        if chz:
            d["channels"] = chz
    elif page:
        d["names"] = page
    return json_reply(d, query)


def is_ft_active(server: ServerView) -> Reply:
    """200 with an empty body in FT active state, else 204 (no Content-Type:
    Go only calls WriteHeader)."""
    return Reply(200 if server.state == ServerState.FT_ACTIVE else 204)


def health_error(server: ServerView, ready: bool) -> str:
    """Why nss cannot serve clients right now ('' when it can).

    Used by /healthz so that load balancers and orchestrators route to the
    FT active server only and notice a server that lost its NATS server.
    """
    state = server.state
    if state == ServerState.SHUTDOWN:
        return "server is shutting down"
    if state == ServerState.FT_STANDBY:
        return "server is in FT standby mode"
    if state not in _SERVING_STATES:
        return f"server state is {state}"
    if not ready:
        return "server is starting"
    natsd = server.natsd
    if natsd is not None and not natsd.running:
        return "embedded NATS server is not running"
    conn = server.conn
    if conn is None or not conn.connected:
        return "not connected to NATS"
    return ""


def healthz(server: ServerView, query: Mapping[str, str], ready: bool) -> Reply:
    """nss's own health, in nats-server's /healthz format (compact JSON)."""
    err = health_error(server, ready)
    if err:
        return json_reply({"status": "unavailable", "error": err}, query, 503, indent=False)
    return json_reply({"status": "ok"}, query, indent=False)


def rootz() -> Reply:
    return Reply(200, _ROOT_HTML.encode("utf-8"), HTML_TYPE)


STREAMING_PATHS = frozenset(
    {ROOT_PATH, SERVER_PATH, STORE_PATH, CLIENTS_PATH, CHANNELS_PATH, IS_FT_ACTIVE_PATH}
)


def handle(
    server: ServerView,
    path: str,
    query: Mapping[str, str],
    *,
    ready: bool = True,
    now_ns: int | None = None,
) -> Reply | None:
    """Answer a monitoring request for ``path``, or None if it is not one of
    nss's own endpoints (the caller then proxies it to NATS, or 404s).

    Paths match exactly, like the Go ServeMux patterns they mirror
    (``/streaming/`` or ``/streaming/x`` are NATS's 404s).
    """
    if path == HEALTHZ_PATH:
        return healthz(server, query, ready)
    if path not in STREAMING_PATHS:
        return None
    if path == ROOT_PATH:
        return rootz()
    if path == IS_FT_ACTIVE_PATH:
        return is_ft_active(server)
    now = time.time_ns() if now_ns is None else now_ns
    if path == CLIENTS_PATH:
        return clientsz(server, query, now)
    if path == CHANNELS_PATH:
        return channelsz(server, query, now)
    try:
        if path == SERVER_PATH:
            return json_reply(serverz(server, now), query)
        return json_reply(storez(server, now), query)
    except StoreError as e:
        return text_error(f"Error getting information about channels state: {e}", 500)

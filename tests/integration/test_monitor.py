"""Monitoring endpoints on the -m port (config.md §3, issue 3 items 4-5).

A scripted STAN session builds every kind of subscription the endpoints
report (plain, online durable at MaxInflight, queue member, offline durable,
offline durable queue group), then each endpoint is compared with a golden
document. Volatile values (times, IDs, inboxes) are checked for shape and
replaced by placeholders first; key order is part of the comparison
because Go marshals struct fields in declaration order.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from procs import READY_LINE, NssProcess, free_port
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from stanclient import StanClient, Sub, wait_for

from nss.natsd import find_nats_server
from nss.pb import protocol_pb2 as pb

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


@dataclass
class Resp:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def http_get(port: int, path: str, headers: dict[str, str] | None = None) -> Resp:
    async with aiohttp.ClientSession() as s:
        async with s.get(
            f"http://127.0.0.1:{port}{path}", headers=headers, allow_redirects=False
        ) as r:
            return Resp(r.status, dict(r.headers), await r.read())


def normalise(doc: Any, names: dict[str, str]) -> Any:
    """Replace volatile values by placeholders after checking their shape."""
    if isinstance(doc, dict):
        out: dict[str, Any] = {}
        for k, v in doc.items():
            if k in ("now", "start_time"):
                assert TIME_RE.match(v), v
                v = "<time>"
            elif k == "uptime":
                assert re.fullmatch(r"\d+s", v), v
                v = "<uptime>"
            elif k in ("open_fds", "max_fds"):
                assert isinstance(v, int) and v > 0
                v = "<n>"
            elif k == "go":
                assert v.startswith("python3.")
                v = "<runtime>"
            out[names.get(k, k)] = normalise(v, names)
        return out
    if isinstance(doc, list):
        return [normalise(v, names) for v in doc]
    if isinstance(doc, str):
        return names.get(doc, doc)
    return doc


def assert_golden(actual: Any, golden: Any) -> None:
    # json text keeps key order, which Go's encoder fixes
    assert json.dumps(actual, indent=1) == json.dumps(golden, indent=1)


@dataclass
class Session:
    server: Any
    mport: int
    me: StanClient
    me3: StanClient
    names: dict[str, str]

    async def get(self, path: str, **kw: Any) -> Resp:
        return await http_get(self.mport, path, **kw)

    async def doc(self, path: str) -> Any:
        r = await self.get(path)
        assert r.status == 200, (path, r.status, r.body)
        assert r.headers["Content-Type"] == "application/json"
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert r.body.startswith(b'{\n  "'), r.body[:20]  # MarshalIndent, 2 spaces
        return normalise(r.json(), self.names)

    async def close(self) -> None:
        await self.me.close()
        await self.me3.close()


def _sub_names(names: dict[str, str], label: str, sub: Sub) -> None:
    names[sub.inbox] = f"<{label}.inbox>"
    names[sub.ack_inbox] = f"<{label}.ack_inbox>"


async def scripted_session(nss_factory: Any) -> Session:
    mport = free_port()
    server = nss_factory("-m", str(mport))
    me = await StanClient.connect(server.url, "me")
    me2 = await StanClient.connect(server.url, "me2")
    me3 = await StanClient.connect(server.url, "me3")
    for i in range(1, 4):
        await me.publish("foo", b"m%d" % i)
    await me.publish("bar", b"x")

    plain = await me.subscribe("foo", start=pb.First)
    await plain.take(3)
    dur = await me.subscribe("foo", durable="dur", start=pb.First, max_inflight=2, manual_acks=True)
    await dur.take(2)
    q = await me.subscribe("bar", queue="q", start=pb.First)
    await q.take(1)
    dq = await me2.subscribe("bar", queue="g", durable="dq", start=pb.First)
    await dq.take(1)
    await me2.close()  # the durable group goes offline: a shadow remains
    d3 = await me3.subscribe("baz", durable="d3")
    await d3.close()  # an offline durable

    names = {me.hb_inbox: "<me.hb_inbox>", me3.hb_inbox: "<me3.hb_inbox>"}
    for label, sub in (("plain", plain), ("dur", dur), ("q", q), ("dq", dq), ("d3", d3)):
        _sub_names(names, label, sub)
    sess = Session(server, mport, me, me3, names)
    first = (await sess.get("/streaming/serverz")).json()
    names[first["server_id"]] = "<server_id>"

    # auto-acks travel asynchronously: wait until only the manual ones are left
    async def settled() -> bool:
        doc = (await sess.get("/streaming/channelsz?subs=1")).json()
        pending = {
            (ch["name"], s["inbox"]): s["pending_count"]
            for ch in doc["channels"]
            for s in ch.get("subscriptions", [])
        }
        return sum(pending.values()) == 2

    deadline = time.monotonic() + 5
    while not await settled():
        assert time.monotonic() < deadline, "acks did not settle"
        await asyncio.sleep(0.02)
    return sess


# --------------------------------------------------------------------------
# golden documents
# --------------------------------------------------------------------------

SERVERZ = {
    "cluster_id": "test-cluster",
    "server_id": "<server_id>",
    "version": "0.25.6",
    "go": "<runtime>",
    "state": "STANDALONE",
    "now": "<time>",
    "start_time": "<time>",
    "uptime": "<uptime>",
    "clients": 2,
    "subscriptions": 5,
    "channels": 3,
    "total_msgs": 4,
    "total_bytes": 83,
    "in_msgs": 4,
    "in_bytes": 323,
    "out_msgs": 7,
    "out_bytes": 145,
    "open_fds": "<n>",
    "max_fds": "<n>",
}

STOREZ = {
    "cluster_id": "test-cluster",
    "server_id": "<server_id>",
    "now": "<time>",
    "type": "MEMORY",
    "limits": {
        "max_channels": 100,
        "max_msgs": 1000000,
        "max_bytes": 1024000000,
        "max_age": 0,
        "max_subscriptions": 1000,
        "max_inactivity": 0,
    },
    "total_msgs": 4,
    "total_bytes": 83,
}


def _subz(
    client: str,
    label: str,
    *,
    durable: str = "",
    queue: str = "",
    is_durable: bool = False,
    offline: bool = False,
    inflight: int = 1024,
    last_sent: int = 0,
    pending: int = 0,
    stalled: bool = False,
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "client_id": client,
        "inbox": f"<{label}.inbox>",
        "ack_inbox": f"<{label}.ack_inbox>",
    }
    if durable:
        d["durable_name"] = durable
    if queue:
        d["queue_name"] = queue
    d.update(
        is_durable=is_durable,
        is_offline=offline,
        max_inflight=inflight,
        ack_wait=30,
        last_sent=last_sent,
        pending_count=pending,
        is_stalled=stalled,
    )
    return d


PLAIN = _subz("me", "plain", last_sent=3)
DUR = _subz(
    "me", "dur", durable="dur", is_durable=True, inflight=2, last_sent=2, pending=2, stalled=True
)
Q = _subz("me", "q", queue="q", last_sent=1)
DQ = _subz("me2", "dq", queue="dq:g", is_durable=True, offline=True, last_sent=1)
D3 = _subz("me3", "d3", durable="d3", is_durable=True, offline=True)

HEADER = {"cluster_id": "test-cluster", "server_id": "<server_id>", "now": "<time>"}

CLIENTSZ = {
    **HEADER,
    "offset": 0,
    "limit": 1024,
    "count": 2,
    "total": 2,
    "clients": [
        {"id": "me", "hb_inbox": "<me.hb_inbox>", "subs_count": 3},
        {"id": "me3", "hb_inbox": "<me3.hb_inbox>", "subs_count": 0},
    ],
}

CLIENT_ME_SUBS = {
    "id": "me",
    "hb_inbox": "<me.hb_inbox>",
    "subs_count": 3,
    "subscriptions": {"bar": [Q], "foo": [PLAIN, DUR]},
}

CH_BAR = {"name": "bar", "msgs": 1, "bytes": 20, "first_seq": 1, "last_seq": 1}
CH_BAZ = {"name": "baz", "msgs": 0, "bytes": 0, "first_seq": 0, "last_seq": 0}
CH_FOO = {"name": "foo", "msgs": 3, "bytes": 63, "first_seq": 1, "last_seq": 3}

CHANNELSZ = {
    **HEADER,
    "offset": 0,
    "limit": 1024,
    "count": 3,
    "total": 3,
    "names": ["bar", "baz", "foo"],
}

CHANNELSZ_SUBS = {
    **HEADER,
    "offset": 0,
    "limit": 1024,
    "count": 3,
    "total": 3,
    "channels": [
        {**CH_BAR, "subs_count": 2, "subscriptions": [Q, DQ]},
        {**CH_BAZ, "subs_count": 1, "subscriptions": [D3]},
        {**CH_FOO, "subs_count": 2, "subscriptions": [PLAIN, DUR]},
    ],
}


# --------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------


async def test_golden_documents(nss_factory):
    s = await scripted_session(nss_factory)
    try:
        assert_golden(await s.doc("/streaming/serverz"), SERVERZ)
        assert_golden(await s.doc("/streaming/storez"), STOREZ)
        assert_golden(await s.doc("/streaming/clientsz"), CLIENTSZ)
        # subs=1 adds subscriptions, omitted for a client without any
        with_subs = {
            **CLIENTSZ,
            "clients": [CLIENT_ME_SUBS, CLIENTSZ["clients"][1]],  # type: ignore[index]
        }
        assert_golden(await s.doc("/streaming/clientsz?subs=1"), with_subs)
        assert_golden(await s.doc("/streaming/clientsz?client=me&subs=1"), CLIENT_ME_SUBS)
        assert_golden(
            await s.doc("/streaming/clientsz?client=me3"),
            CLIENTSZ["clients"][1],  # type: ignore[index]
        )
        assert_golden(await s.doc("/streaming/channelsz"), CHANNELSZ)
        assert_golden(await s.doc("/streaming/channelsz?subs=1"), CHANNELSZ_SUBS)
        # one channel: subs_count without subs=1 counts the same subscriptions
        assert_golden(await s.doc("/streaming/channelsz?channel=bar"), {**CH_BAR, "subs_count": 2})
        assert_golden(
            await s.doc("/streaming/channelsz?channel=foo&subs=1"),
            CHANNELSZ_SUBS["channels"][2],  # type: ignore[index]
        )
        assert_golden(
            await s.doc("/streaming/channelsz?channel=baz&subs=0"), {**CH_BAZ, "subs_count": 1}
        )
    finally:
        await s.close()


async def test_not_found_texts_and_jsonp(nss_factory):
    s = await scripted_session(nss_factory)
    try:
        for path, text in (
            ("/streaming/clientsz?client=nope", b"Client nope not found\n"),
            ("/streaming/channelsz?channel=nope&subs=1", b"Channel nope not found\n"),
            ("/streaming/nope", b"404 page not found\n"),
            ("/streaming/", b"404 page not found\n"),
            ("/nope", b"404 page not found\n"),
        ):
            r = await s.get(path)
            assert (r.status, r.body) == (404, text), path
            assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
            assert r.headers["X-Content-Type-Options"] == "nosniff"

        r = await s.get("/streaming/serverz?callback=cb")
        assert r.status == 200
        assert r.headers["Content-Type"] == "application/javascript"
        assert "Access-Control-Allow-Origin" not in r.headers
        assert r.body.startswith(b"cb({\n") and r.body.endswith(b"})")
        assert json.loads(r.body[3:-1])["clients"] == 2
        r = await s.get("/streaming/channelsz?channel=foo&callback=x.y")
        assert r.body.startswith(b"x.y(") and json.loads(r.body[4:-1])["name"] == "foo"

        r = await s.get("/streaming")
        assert r.status == 200
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        for link in ("serverz", "storez", "clientsz", "channelsz"):
            assert f"<a href=./streaming/{link}>".encode() in r.body
    finally:
        await s.close()


async def test_offset_and_limit(nss_factory):
    s = await scripted_session(nss_factory)
    try:

        async def page(q: str) -> tuple[int, int, int, int, list[str] | None]:
            d = (await s.get(f"/streaming/channelsz?{q}")).json()
            return d["offset"], d["limit"], d["count"], d["total"], d.get("names")

        assert await page("offset=1&limit=1") == (1, 1, 1, 3, ["baz"])
        assert await page("offset=2") == (2, 1024, 1, 3, ["foo"])
        assert await page("offset=3") == (3, 1024, 0, 3, None)  # names omitted
        assert await page("offset=99&limit=5") == (99, 5, 0, 3, None)
        assert await page("offset=-4&limit=0") == (0, 1024, 3, 3, ["bar", "baz", "foo"])
        # unparsable integers count as 0 (strconv.Atoi errors are ignored)
        assert await page("offset=x&limit=2.5") == (0, 1024, 3, 3, ["bar", "baz", "foo"])
        assert await page("limit=2") == (0, 2, 2, 3, ["bar", "baz"])

        d = (await s.get("/streaming/channelsz?subs=1&offset=1&limit=1")).json()
        assert [c["name"] for c in d["channels"]] == ["baz"] and d["count"] == 1
        d = (await s.get("/streaming/channelsz?subs=1&offset=5")).json()
        assert "channels" not in d and d["count"] == 0

        d = (await s.get("/streaming/clientsz?offset=1&limit=1")).json()
        assert (d["offset"], d["limit"], d["count"], d["total"]) == (1, 1, 1, 2)
        assert [c["id"] for c in d["clients"]] == ["me3"]
        d = (await s.get("/streaming/clientsz?offset=7")).json()
        assert d["clients"] == [] and d["count"] == 0  # not omitted: no omitempty
    finally:
        await s.close()


async def test_nats_endpoints_proxied(nss_factory):
    s = await scripted_session(nss_factory)
    try:
        r = await s.get("/varz")
        assert r.status == 200 and r.headers["Content-Type"] == "application/json"
        varz = r.json()
        assert varz["port"] == s.server.port
        # the monitoring address is the user's, not the child's internal one
        assert (varz["http_host"], varz["http_port"], varz["https_port"]) == ("0.0.0.0", s.mport, 0)
        assert "config_digest" not in varz  # nss's internal config file is not the user's
        r = await s.get("/subsz")
        assert r.status == 200 and r.json()["num_subscriptions"] >= 7
        # the query string goes through
        r = await s.get("/connz?subs=1&limit=1")
        connz = r.json()
        assert connz["limit"] == 1 and len(connz["connections"]) == 1
        assert "subscriptions_list" in connz["connections"][0]
        r = await s.get("/routez")
        assert r.status == 200 and "num_routes" in r.json()
        # NATS's root page is NATS's, and unknown paths are its 404
        r = await s.get("/")
        assert r.status == 200 and b"varz" in r.body
        # the log names the user's port, not the child's internal one
        log = s.server.log_text()
        assert f"Starting http monitor on 0.0.0.0:{s.mport}" in log
        assert "Using configuration file" not in log
    finally:
        await s.close()


async def test_metrics(nss_factory):
    s = await scripted_session(nss_factory)
    try:
        r = await s.get("/metrics")
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for fam in text_string_to_metric_families(r.body.decode()):
            for smp in fam.samples:
                samples[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value

        def val(name: str, **labels: str) -> float:
            return samples[(name, tuple(sorted(labels.items())))]

        assert val("nss_chan_msgs_total", channel="foo") == 3
        assert val("nss_chan_bytes_total", channel="foo") == 63
        assert val("nss_chan_last_seq", channel="foo") == 3
        assert val("nss_chan_subscriptions", channel="bar") == 2
        assert val("nss_chan_pending_msgs", channel="foo") == 2
        sub = dict(
            channel="foo",
            client_id="me",
            inbox=next(k for k, v in s.names.items() if v == "<dur.inbox>"),
            queue_name="",
            is_durable="true",
            is_offline="false",
        )
        assert val("nss_chan_subs_pending_count", **sub) == 2
        assert val("nss_chan_subs_max_inflight", **sub) == 2
        assert val("nss_chan_subs_stalled", **sub) == 1
        assert val("nss_server_clients") == 2
        assert val("nss_server_channels") == 3
        assert val("nss_server_subscriptions") == 5
        assert val("nss_server_msgs_total") == 4
        assert val("nss_server_in_msgs_total") == 4
        assert val("nss_server_out_msgs_total") == 7
        assert val("nss_server_out_bytes_total") == 145
        assert val("nss_server_pending_msgs") == 2
        assert val("nss_server_redelivered_msgs_total") == 0
        assert val("nss_server_state", state="STANDALONE") == 1
        assert val("nss_server_state", state="FT_ACTIVE") == 0
        assert val("nss_ft_takeovers_total") == 0
        assert val("nss_io_batches_total") >= 1
        assert val("nss_io_batched_msgs_total") >= 4
        assert ("process_cpu_seconds_total", ()) in samples

        r = await s.get("/metrics", headers={"Accept": "application/openmetrics-text"})
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        names = {f.name for f in openmetrics_families(r.body.decode())}
        assert {"nss_chan_msgs_total", "nss_server_in_msgs"} <= names
    finally:
        await s.close()


async def test_healthz_and_is_ft_active(nss_factory):
    mport = free_port()
    nss_factory("-m", str(mport))
    r = await http_get(mport, "/healthz")
    assert (r.status, r.body) == (200, b'{"status":"ok"}')
    assert r.headers["Content-Type"] == "application/json"
    r = await http_get(mport, "/streaming/isFTActive")
    assert (r.status, r.body) == (204, b"")


async def test_subsz_answers_only_when_streaming_is_ready():
    """stan.py's start-up poll: once NATS's /subsz on the -m port answers
    with >= 7 subscriptions, STAN clients must be able to connect."""
    port, mport = free_port(), free_port()
    t0 = time.monotonic()
    proc = NssProcess(["-p", str(port), "-a", "127.0.0.1", "-m", str(mport)])
    try:
        while True:
            assert time.monotonic() - t0 < 10, proc.log_text()
            try:
                r = await http_get(mport, "/subsz")
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)  # stan.py's retry interval
                continue
            if r.status == 200 and r.json()["num_subscriptions"] >= 7:
                break
        elapsed = time.monotonic() - t0
        c = await StanClient.connect(f"nats://127.0.0.1:{port}", "early", timeout=0.5)
        await c.close()
        print(f"spawn to /subsz ready: {elapsed:.3f}s")
        assert elapsed < 3.0
    finally:
        proc.stop()


async def test_external_nats_serves_streaming_endpoints_only(nss_factory):
    nport = free_port()
    natsd = subprocess.Popen(
        [find_nats_server(), "-a", "127.0.0.1", "-p", str(nport)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"nats://127.0.0.1:{nport}"
        await wait_for(lambda: _can_connect(nport), 5)
        mport = free_port()
        srv = nss_factory("-ns", url, "-m", str(mport))
        c = await StanClient.connect(url, "ext")
        doc = (await http_get(mport, "/streaming/clientsz")).json()
        assert [x["id"] for x in doc["clients"]] == ["ext"]
        for path in ("/varz", "/subsz", "/"):
            r = await http_get(mport, path)
            assert (r.status, r.body) == (404, b"404 page not found\n"), path
        r = await http_get(mport, "/healthz")
        assert r.status == 200
        # Go's stand-in NATS server has no logger: no INF line here
        assert "[INF] STREAM: Starting http monitor" not in srv.log_text()
        await c.close()
    finally:
        natsd.kill()
        natsd.wait()


def _can_connect(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def test_monitor_port_in_use():
    mport = free_port()
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", mport))
        taken.listen()
        proc = NssProcess(["-p", str(free_port()), "-m", str(mport)])
        assert proc.proc.wait(10) == 1
    line = proc.wait_for_line("Failed to start")
    assert line.endswith(
        f"Failed to start: Can't start monitoring: can't listen to the monitor port: "
        f"listen tcp 0.0.0.0:{mport}: bind: address already in use"
    )
    assert READY_LINE not in proc.log_text()


def test_http_and_https_ports_together():
    proc = NssProcess(["-p", str(free_port()), "-m", "18999", "-ms", "18998"])
    assert proc.proc.wait(10) == 1
    line = proc.wait_for_line("Failed to start")
    assert line.endswith(
        "Failed to start: Can't start monitoring: "
        "can't specify both HTTP (18999) and HTTPs (18998) ports"
    )


def test_https_without_certificate():
    proc = NssProcess(["-p", str(free_port()), "-ms", str(free_port())])
    assert proc.proc.wait(10) == 1
    line = proc.wait_for_line("Failed to start")
    assert line.endswith("Can't start monitoring: TLS cert and key required for HTTPS")


@pytest.fixture
def tls_files(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-keyout", str(key), "-out", str(cert), "-days", "1",
                "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("openssl is not available")
    return cert, key


async def test_https_monitoring(nss_factory, tls_files):
    import ssl

    cert, key = tls_files
    mport = free_port()
    nss_factory(
        "-ms", str(mport), "--tlscert", str(cert), "--tlskey", str(key),
        "-tls_client_cacert", str(cert),
    )  # fmt: skip
    ctx = ssl.create_default_context(cafile=str(cert))
    async with aiohttp.ClientSession() as sess:
        for path in ("/streaming/serverz", "/varz"):
            async with sess.get(f"https://127.0.0.1:{mport}{path}", ssl=ctx) as r:
                assert r.status == 200
                assert "server_id" in await r.json()


async def _exchange(port: int, data: bytes) -> bytes:
    """Send raw bytes to the monitoring port; all it answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


async def test_monitor_http_keep_alive_head_and_malformed_requests(nss_factory):
    """What an HTTP client sees of the -m port beyond plain GETs: requests
    in turn on one connection, HEAD through the proxy with the GET's length,
    a malformed request answered 400 and closed, and serving going on."""
    mport = free_port()
    srv = nss_factory("-m", str(mport))
    out = await _exchange(
        mport,
        b"GET /streaming/serverz HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /varz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    answers = out.split(b"HTTP/1.1 ")[1:]
    assert [a[:6] for a in answers] == [b"200 OK"] * 3, out[:300]
    assert b'"cluster_id": "test-cluster"' in answers[0]
    assert answers[1].endswith(b'{"status":"ok"}')
    assert b'"http_port": %d' % mport in answers[2]
    assert b"\r\nConnection: close\r\n" in answers[2]

    get = await http_get(mport, "/varz")
    head = await _exchange(mport, b"HEAD /varz HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and head.endswith(b"\r\n\r\n")
    length = int(re.search(rb"\r\nContent-Length: (\d+)\r\n", head).group(1))
    # the length of the /varz a GET gets (nss rewrites some of the child's lines)
    assert abs(length - len(get.body)) < 20

    # a body the child has no use for (it answers and closes unread): the
    # answer still comes through, and curl's Expect gets its 100 Continue
    body = bytes(5000)
    out = await _exchange(
        mport,
        b"POST /varz HTTP/1.1\r\nExpect: 100-continue\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body,
    )
    assert out.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), out[:200]
    assert b'"server_id"' in out

    for bad, status in ((b"GARBAGE\r\n\r\n", 400), (b"GET / HTTP/3.0\r\n\r\n", 505)):
        out = await _exchange(mport, bad)
        assert out.startswith(b"HTTP/1.1 %d " % status), out
    r = await http_get(mport, "/streaming/serverz")
    assert r.status == 200 and r.json()["state"] == "STANDALONE"
    assert srv.proc.poll() is None


def test_monitoring_imports_no_http_library(nss_factory):
    """-m costs no third-party HTTP stack (aiohttp took 12 MB and 0.12 s)."""
    mport = free_port()
    srv = nss_factory("-m", str(mport))
    maps = open(f"/proc/{srv.proc.pid}/maps").read()
    assert "aiohttp" not in maps and "yarl" not in maps and "multidict" not in maps

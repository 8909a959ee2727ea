"""Go-compatibility details of the monitoring endpoints, without sockets."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from nss.options import StoreLimits
from nss.pb import spb_pb2 as spb
from nss.server.monitor import endpoints as monitor
from nss.server.monitor.endpoints import (
    go_atoi,
    go_json,
    go_time,
    handle,
    min_max_offset,
    offset_and_limit,
    uptime,
)
from nss.server.monitor.histogram import LatencyHistogram


@pytest.fixture
def tz() -> Iterator[Any]:
    """Switch the process time zone for a test (Go and time.localtime both
    follow TZ)."""
    old = os.environ.get("TZ")

    def set_tz(name: str) -> None:
        os.environ["TZ"] = name
        time.tzset()

    yield set_tz
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_go_time_formats(tz):
    tz("UTC")
    # 2020-02-11T23:17:33.101243Z
    ns = 1581463053_101243000
    assert go_time(ns) == "2020-02-11T23:17:33.101243Z"
    assert go_time(1581463053_000000000) == "2020-02-11T23:17:33Z"  # no fraction at all
    assert go_time(1581463053_000000001) == "2020-02-11T23:17:33.000000001Z"
    assert go_time(1581463053_120000000) == "2020-02-11T23:17:33.12Z"
    tz("MST7")
    assert go_time(ns) == "2020-02-11T16:17:33.101243-07:00"  # config.md's example
    tz("IST-5:30")
    assert go_time(ns) == "2020-02-12T04:47:33.101243+05:30"


@pytest.mark.parametrize(
    "secs, text",
    [
        (0, "0s"),
        (5.9, "5s"),
        (65, "1m5s"),
        (3 * 3600 + 4 * 60 + 5, "3h4m5s"),
        (2 * 86400 + 3 * 3600 + 4 * 60 + 5, "2d3h4m5s"),
        (365 * 86400 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5, "1y2d3h4m5s"),
        (3600, "1h0m0s"),
        (-1, "0s"),
    ],
)
def test_uptime(secs, text):
    assert uptime(secs) == text


@pytest.mark.parametrize(
    "raw, value",
    [
        (None, 0),
        ("", 0),
        ("12", 12),
        ("+3", 3),
        ("-3", -3),
        ("007", 7),
        (" 1", 0),
        ("1_000", 0),
        ("1.5", 0),
        ("x", 0),
        ("\u0661", 0),  # Arabic-Indic one: int() takes it, Atoi does not
        ("99999999999999999999", (1 << 63) - 1),
    ],
)
def test_go_atoi(raw, value):
    assert go_atoi(raw) == value


def test_offset_limit_rules():
    assert offset_and_limit({}) == (0, 1024)
    assert offset_and_limit({"offset": "-2", "limit": "-1"}) == (0, 1024)
    assert offset_and_limit({"offset": "3", "limit": "2"}) == (3, 2)
    assert min_max_offset(3, 2, 4) == (3, 4)
    assert min_max_offset(9, 2, 4) == (4, 4)


def test_go_json_matches_marshal_indent():
    assert (
        go_json({"a": [], "b": {}, "c": [1]})
        == b'{\n  "a": [],\n  "b": {},\n  "c": [\n    1\n  ]\n}'
    )
    # Go keeps UTF-8 and escapes HTML characters
    assert (
        go_json({"n": "é<&>\u2028"}, indent=False)
        == '{"n":"é\\u003c\\u0026\\u003e\\u2028"}'.encode()
    )


def test_jsonp_and_errors():
    r = monitor.json_reply({"a": 1}, {"callback": "cb"})
    assert (r.status, r.content_type, r.headers) == (200, "application/javascript", ())
    assert r.body == b'cb({\n  "a": 1\n})'
    r = monitor.json_reply({"a": 1}, {"callback": ""})
    assert r.content_type == "application/json"
    assert r.headers == (("Access-Control-Allow-Origin", "*"),)
    r = monitor.text_error("Client x not found", 404)
    assert (r.status, r.body, r.content_type) == (
        404,
        b"Client x not found\n",
        "text/plain; charset=utf-8",
    )


def _server(state: str = "STANDALONE", connected: bool = True, natsd_running: bool = True) -> Any:
    """The attributes the endpoints read, before any channel exists."""
    return SimpleNamespace(
        state=state,
        info=spb.ServerInfo(ClusterID="c"),
        server_id="SID",
        start_time=time.time() - 65,
        clients=SimpleNamespace(by_id={}),
        channels=None,  # store not open yet: no channels
        store=None,
        sopts=SimpleNamespace(store_type="memory", store_limits=StoreLimits()),
        in_msgs=0,
        in_bytes=0,
        deliverer=None,
        natsd=SimpleNamespace(running=natsd_running),
        conn=SimpleNamespace(connected=connected),
    )


def test_endpoints_before_the_store_is_open():
    srv = _server()
    r = handle(srv, "/streaming/serverz", {})
    assert r is not None and r.status == 200
    doc = json.loads(r.body)
    assert (doc["channels"], doc["subscriptions"], doc["uptime"]) == (0, 0, "1m5s")
    assert "role" not in doc and "node_id" not in doc
    r = handle(srv, "/streaming/storez", {})
    assert r is not None and b'"type": "MEMORY"' in r.body
    r = handle(srv, "/streaming/channelsz", {"subs": "1"})
    assert r is not None and b'"channels"' not in r.body and b'"names"' not in r.body


def test_is_ft_active():
    r = handle(_server("FT_ACTIVE"), "/streaming/isFTActive", {})
    assert r is not None and (r.status, r.body, r.content_type) == (200, b"", None)
    for state in ("STANDALONE", "FT_STANDBY", "SHUTDOWN"):
        r = handle(_server(state), "/streaming/isFTActive", {})
        assert r is not None and r.status == 204


@pytest.mark.parametrize(
    "server, ready, status, body",
    [
        (_server(), True, 200, b'{"status":"ok"}'),
        (_server("FT_ACTIVE"), True, 200, b'{"status":"ok"}'),
        (
            _server(),
            False,
            503,
            b'{"status":"unavailable","error":"server is starting"}',
        ),
        (
            _server("FT_STANDBY"),
            True,
            503,
            b'{"status":"unavailable","error":"server is in FT standby mode"}',
        ),
        (
            _server("SHUTDOWN"),
            True,
            503,
            b'{"status":"unavailable","error":"server is shutting down"}',
        ),
        (
            _server(natsd_running=False),
            True,
            503,
            b'{"status":"unavailable","error":"embedded NATS server is not running"}',
        ),
        (
            _server(connected=False),
            True,
            503,
            b'{"status":"unavailable","error":"not connected to NATS"}',
        ),
    ],
)
def test_healthz(server, ready, status, body):
    r = handle(server, "/healthz", {}, ready=ready)
    assert r is not None and (r.status, r.body, r.content_type) == (
        status,
        body,
        "application/json",
    )


def test_non_streaming_paths_are_not_ours():
    srv = _server()
    for path in ("/varz", "/streaming/", "/streaming/serverz/", "/metrics"):
        assert handle(srv, path, {}) is None


def test_latency_histogram():
    h = LatencyHistogram((0.001, 0.01))
    for v in (0.0005, 0.001, 0.002, 0.5):
        h.observe(v)
    assert h.count == 4 and h.sum == pytest.approx(0.5035)
    assert h.cumulative() == [(0.001, 2), (0.01, 3), (float("inf"), 4)]


def test_metrics_expose_the_flush_latency_hook():
    from prometheus_client.parser import text_string_to_metric_families

    from nss.server.monitor import metrics

    srv = _server()
    h = LatencyHistogram((0.001,))
    h.observe(0.0004)
    h.observe(0.003)
    srv.io = SimpleNamespace(batches=3, batched_msgs=10, flush_latency=h)
    body, ctype = metrics.render(metrics.make_registry(srv), None)
    assert ctype.startswith("text/plain")
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    flush = {(s.name, s.labels.get("le")): s.value for s in fams["nss_store_flush_seconds"].samples}
    assert flush[("nss_store_flush_seconds_bucket", "0.001")] == 1
    assert flush[("nss_store_flush_seconds_bucket", "+Inf")] == 2
    assert flush[("nss_store_flush_seconds_count", None)] == 2
    assert fams["nss_io_batches"].samples[0].value == 3
    assert fams["nss_server_info"].samples[0].labels["cluster_id"] == "c"


def test_embedded_nats_internal_monitoring(tmp_path):
    import json
    import stat

    from nss.natsd import EmbeddedNATS
    from nss.options import NATSOptions

    e = EmbeddedNATS(NATSOptions(http_port=8222), monitor_address="https://0.0.0.0:8222")
    e._dir = str(tmp_path / "private")
    os.mkdir(e._dir)
    path = e._write_config()
    with open(path, encoding="utf-8") as f:
        assert json.load(f) == {"http": "127.0.0.1:-1"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # the child's monitor line names the user's address; our file is not news
    assert e._public_text("INF", "Starting http monitor on 127.0.0.1:41234") == (
        "Starting https monitor on 0.0.0.0:8222"
    )
    assert e._public_text("INF", f"Using configuration file: {path} (sha256:ab)") is None
    # nor the digest of our file (credentials in a known layout)
    assert e._public_text("INF", "Reloaded server configuration (sha256:22e7ec)") == (
        "Reloaded server configuration"
    )
    assert e._public_text("INF", "Server is ready") == "Server is ready"
    e._remove_dir()
    assert not os.path.exists(path)
    # a user config file is merged with ours: its monitoring keys are nss's
    # to serve, the child's own listener stays on loopback
    conf = tmp_path / "nats.conf"
    conf.write_text("port: 4222\nhttp_port: 8222\n")
    e = EmbeddedNATS(NATSOptions(config_file=str(conf)), monitor_address="http://h:1")
    e._dir = str(tmp_path / "d")
    os.mkdir(e._dir)
    path = e._write_config()
    with open(path, encoding="utf-8") as f:
        assert json.load(f) == {"port": 4222, "http": "127.0.0.1:-1"}
    assert e._public_text("INF", f"Using configuration file: {path}") == (
        f"Using configuration file: {conf}"
    )
    # without nss's listener, the child's own lines pass unchanged
    e = EmbeddedNATS(NATSOptions(http_port=8222))
    line = "Starting http monitor on 0.0.0.0:8222"
    assert e._public_text("INF", line) == line

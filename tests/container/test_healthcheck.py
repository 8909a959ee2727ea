"""The image's HEALTHCHECK script (container/nss-healthcheck) against real nss
processes on the host: it finds the monitoring port the way the server does
(flags, config file relative to the server's directory), passes a serving
server and an FT standby, and fails when /healthz is down or unhappy."""

from __future__ import annotations

import http.server
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import READY_LINE, ROOT, NssProcess, NssServer, free_port

SCRIPT = ROOT / "container" / "nss-healthcheck"


def healthcheck(*args: str, cwd: str | Path = "/") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=30, cwd=cwd
    )


@pytest.fixture
def servers() -> Iterator[list[NssProcess]]:
    started: list[NssProcess] = []
    yield started
    for s in started:
        s.stop()


def load_script():
    loader = importlib.machinery.SourceFileLoader("nss_healthcheck", str(SCRIPT))
    spec = importlib.util.spec_from_loader("nss_healthcheck", loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def test_server_args_from_command_lines() -> None:
    hc = load_script()
    assert hc.server_args(["/opt/nss/bin/python3", "/opt/nss/bin/nss", "-m", "8222"]) == [
        "-m",
        "8222",
    ]
    assert hc.server_args(["python3", "/nats-streaming-server", "-cid", "nss"]) == ["-cid", "nss"]
    assert hc.server_args(["python", "-m", "nss", "-p", "4222"]) == ["-p", "4222"]
    assert hc.server_args(["/opt/nss/bin/nats-server", "-p", "4222"]) is None
    assert hc.server_args(["python3", "/opt/nss/bin/nss-healthcheck"]) is None
    assert hc.server_args(["sh", "-c", "nss"]) is None


def test_serving_server_is_healthy(servers: list[NssProcess]) -> None:
    mport = free_port()
    srv = NssServer("-m", str(mport))
    servers.append(srv)
    r = healthcheck("--pid", str(srv.proc.pid))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"status": "ok"}


def test_monitoring_port_from_a_relative_config_file(
    servers: list[NssProcess], tmp_path: Path
) -> None:
    port, mport = free_port(), free_port()
    conf = tmp_path / "nss.conf"
    conf.write_text(f"port: {port}\nhttp: {mport}\nstreaming {{ cluster_id: hc }}\n")
    srv = NssProcess(["-sc", os.path.relpath(conf, ROOT)])  # nss runs in ROOT
    servers.append(srv)
    srv.wait_for_line(READY_LINE)
    # from elsewhere, so the relative path resolves only from the server's cwd
    elsewhere = tmp_path / "a" / "b" / "c"
    elsewhere.mkdir(parents=True)
    r = healthcheck("--pid", str(srv.proc.pid), cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"status": "ok"}


def test_ft_standby_counts_as_healthy(servers: list[NssProcess], tmp_path: Path) -> None:
    """A standby's /healthz is 503 (it must not get client traffic) but the
    container is fine: marking it unhealthy would have it restarted."""
    store = str(tmp_path / "store")
    ft = ["--ft_group", "g", "-store", "file", "-dir", store]
    active = NssProcess(["-p", str(free_port()), "-m", str(free_port()), *ft])
    servers.append(active)
    active.wait_for_line(READY_LINE)
    standby = NssProcess(["-p", str(free_port()), "-m", str(free_port()), *ft])
    servers.append(standby)
    standby.wait_for_line("Starting in standby mode")
    r = healthcheck("--pid", str(standby.proc.pid))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["error"] == "server is in FT standby mode"
    assert healthcheck("--pid", str(active.proc.pid)).returncode == 0


def test_monitoring_disabled_is_not_checked(servers: list[NssProcess]) -> None:
    srv = NssServer()
    servers.append(srv)
    r = healthcheck("--pid", str(srv.proc.pid))
    assert r.returncode == 0, r.stderr
    assert "monitoring is disabled" in r.stdout


def test_nothing_listening_is_unhealthy() -> None:
    url = f"http://127.0.0.1:{free_port()}/healthz"
    r = healthcheck("--url", url)
    assert r.returncode == 1
    assert url in r.stderr


def test_not_a_server_pid_is_unhealthy() -> None:
    r = healthcheck("--pid", str(os.getpid()))
    assert r.returncode == 1
    assert "not an nss server" in r.stderr


@pytest.fixture
def unhealthy_url() -> Iterator[str]:
    """A /healthz answering 503 "not connected to NATS", as nss does when it
    lost its NATS server (hard to provoke for real without losing the process)."""
    body = json.dumps({"status": "unavailable", "error": "not connected to NATS"}).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: object) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_port}/healthz"
    httpd.shutdown()


def test_unavailable_server_is_unhealthy(unhealthy_url: str) -> None:
    r = healthcheck("--url", unhealthy_url)
    assert r.returncode == 1
    assert "503" in r.stderr and "not connected to NATS" in r.stderr

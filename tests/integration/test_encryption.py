"""Encryption at rest through real servers, readable both ways with Go.

Stores the Go server v0.25.6 encrypted (FILE with AES and ChaCha, PostgreSQL
with AES; tests/fixtures/go-v0.25.6/encrypted) are served by nss with the
same key. The reverse direction runs the Go binary on stores nss encrypted
when ``NSS_GO_SERVER`` names it (skipped otherwise); without it,
tests/unit/test_crypto.py checks nss's records with an independent reader.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from procs import READY_LINE, ROOT, NssProcess, free_port, nats_child_pid
from stanclient import StanClient

from nss.pb import protocol_pb2 as pb

pytest_plugins = ["pg"]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "go-v0.25.6"
ENCRYPTED = FIXTURES / "encrypted"
ENV_KEY = "NATS_STREAMING_ENCRYPTION_KEY"
GO_SERVER = os.environ.get("NSS_GO_SERVER", "")
needs_go = pytest.mark.skipif(
    not GO_SERVER, reason="NSS_GO_SERVER does not name a Go nats-streaming-server binary"
)


class Server(NssProcess):
    """nss (or, with ``program``, the Go server) on a free port."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, program: list[str] | None = None,
        cluster_id: str = "fixture", wait: bool = True,
    ) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        env = {k: v for k, v in (env or {}).items()}
        super().__init__(["-p", str(self.port), "-cid", cluster_id, *args], env, program=program)
        if wait:
            self.wait_for_line(READY_LINE, timeout=30)


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.stop()


@pytest.fixture(autouse=True)
def _no_inherited_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_KEY, raising=False)


def _copy_datastore(name: str, tmp_path: Path) -> tuple[Path, str, dict[str, Any]]:
    src = ENCRYPTED / name
    d = tmp_path / "datastore"
    shutil.copytree(src / "datastore", d)
    for p in [d, *d.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    key = (src / "KEY").read_text().strip()
    return d, key, json.loads((src / "manifest.json").read_text())


async def _check_manifest(url: str, manifest: dict[str, Any]) -> None:
    """Every channel holds exactly what the manifest says; the durable
    resumes where the Go server left it; the next message gets last + 1."""
    c = await StanClient.connect(url, "checker", cluster_id="fixture")
    for name, ch in manifest["channels"].items():
        sub = await c.subscribe(name, start=pb.First, max_inflight=10000)
        msgs = await sub.take(ch["last"] - ch["first"] + 1)
        assert [m.sequence for m in msgs] == list(range(ch["first"], ch["last"] + 1))
        assert [hashlib.sha256(m.data).hexdigest() for m in msgs] == ch["sha256"], name
        await c.publish(name, b"next " + name.encode())
        m = await sub.next()
        assert (m.sequence, m.data) == (ch["last"] + 1, b"next " + name.encode())
        await sub.unsubscribe()
    await c.close()
    dur = manifest["durables"][0]
    w = await StanClient.connect(url, dur["clientID"], cluster_id="fixture", timeout=10)
    sub = await w.subscribe(dur["channel"], durable=dur["durable"], max_inflight=1000)
    first = await sub.take(len(dur["unacked_sent"]))
    assert [m.sequence for m in first] == dur["unacked_sent"]
    assert all(m.redelivered for m in first)
    await w.close()


async def _check_next_messages(url: str, manifest: dict[str, Any]) -> None:
    """After a restart, the messages nss encrypted are read back."""
    c = await StanClient.connect(url, "again", cluster_id="fixture")
    for name, ch in manifest["channels"].items():
        sub = await c.subscribe(name, start=pb.LastReceived)
        m = await sub.next()
        assert (m.sequence, m.data) == (ch["last"] + 1, b"next " + name.encode())
    await c.close()


@pytest.mark.parametrize(
    ("fixture", "key_by"),
    [("filestore-aes", "flag"), ("filestore-chacha", "env"), ("filestore-aes", "config")],
)
async def test_go_encrypted_datastore_is_served(
    servers: list[Server], tmp_path: Path, fixture: str, key_by: str
) -> None:
    d, key, manifest = _copy_datastore(fixture, tmp_path)
    limits = (FIXTURES / "limits.conf").read_text()
    args = ["-store", "file", "-dir", str(d), "-sc", str(FIXTURES / "limits.conf")]
    env: dict[str, str] = {}
    if key_by == "flag":
        args += ["--encryption_key", key]
    elif key_by == "env":
        args += ["-encrypt"]
        env[ENV_KEY] = key
    else:
        conf = tmp_path / "stan.conf"
        conf.write_text(
            limits.replace(
                "streaming {", f'streaming {{\n  encrypt: true\n  encryption_key: "{key}"'
            )
        )
        args[-1] = str(conf)
    servers.append(srv := Server(*args, env=env))
    await _check_manifest(srv.url, manifest)
    assert srv.stop() == 0
    servers.append(srv := Server(*args, env=env))
    await _check_next_messages(srv.url, manifest)
    assert key not in srv.log_text()


async def test_go_encrypted_postgres_is_served(
    servers: list[Server], pg_server: Any
) -> None:
    src = ENCRYPTED / "postgres-aes"
    manifest = json.loads((src / "manifest.json").read_text())
    pg_server.create_db("nss_enc_fixture")
    pg_server.run_script("nss_enc_fixture", (src / "data.sql").read_text())
    args = [
        "-st", "sql", "--sql_driver", "postgres", "--sql_source",
        pg_server.dsn("nss_enc_fixture"), "-sc", str(FIXTURES / "limits.conf"), "-encrypt",
        "--encryption_cipher", "CHACHA",  # reads AES (by its code), writes ChaCha
    ]
    env = {ENV_KEY: (src / "KEY").read_text().strip()}
    servers.append(srv := Server(*args, env=env))
    await _check_manifest(srv.url, manifest)
    assert srv.stop() == 0
    servers.append(srv := Server(*args, env=env))
    await _check_next_messages(srv.url, manifest)


def _run_failing(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nss", "-p", str(free_port()), "-cid", "fixture", *args],
        capture_output=True, text=True, timeout=60, cwd=str(ROOT),
        env={**os.environ, **(env or {})},
    )


def test_wrong_key_stops_the_start_with_one_clear_line(tmp_path: Path) -> None:
    d, key, _ = _copy_datastore("filestore-aes", tmp_path)
    r = _run_failing("-store", "file", "-dir", str(d), "-encrypt", env={ENV_KEY: key + "x"})
    assert r.returncode != 0
    out = r.stdout + r.stderr
    assert (
        'channel "events.a": the encryption key does not decrypt its messages (sequence 350'
    ) in out, out
    assert "start with the key the data was written with" in out
    assert key not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-encrypt"], "encryption key required: set the NATS_STREAMING_ENCRYPTION_KEY"),
        (
            ["-encryption_key", "abcd", "-encryption_cipher", "rot13"],
            "encryption cipher not supported: 'rot13' (--encryption_cipher takes AES or CHACHA)",
        ),
    ],
)
def test_bad_encryption_options_stop_the_start(
    tmp_path: Path, args: list[str], message: str
) -> None:
    r = _run_failing("-store", "file", "-dir", str(tmp_path / "d"), *args)
    assert r.returncode != 0
    assert message in r.stderr + r.stdout


async def test_key_reaches_no_log_endpoint_child_or_file(
    servers: list[Server], tmp_path: Path
) -> None:
    """The key, given the recommended way (environment) and the other ways
    (config file), is in no log line, monitoring answer, process listing or
    environment of the nats-server child, nor in a file nss wrote."""
    key = "s3cr3t-Key-for-the-leak-test"
    conf = tmp_path / "stan.conf"
    conf.write_text(f'streaming {{ encrypt: true, encryption_key: "{key}x" }}\n')
    mport = free_port()
    d = tmp_path / "d"
    servers.append(
        srv := Server(
            "-store", "file", "-dir", str(d), "-c", str(conf), "-m", str(mport),
            "-SDV", env={ENV_KEY: key},
        )
    )
    c = await StanClient.connect(srv.url, "leak", cluster_id="fixture")
    await c.publish("ch", b"payload-in-clear")
    await c.close()

    def fetch_all() -> str:
        out = []
        for path in (
            "/streaming/serverz", "/streaming/storez", "/streaming/clientsz?subs=1",
            "/streaming/channelsz?subs=1", "/varz", "/connz",
        ):
            with urllib.request.urlopen(f"http://127.0.0.1:{mport}{path}", timeout=5) as r:
                out.append(r.read().decode())
        return "\n".join(out)

    answers = await asyncio.to_thread(fetch_all)
    child = nats_child_pid(srv)
    cmdline = Path(f"/proc/{child}/cmdline").read_bytes().decode(errors="replace")
    environ = Path(f"/proc/{child}/environ").read_bytes().decode(errors="replace")
    files = ""
    for a in cmdline.split("\0"):
        if a.endswith(".conf") and Path(a).is_file():
            files += Path(a).read_text()
    files += "".join(p.read_bytes().decode(errors="replace") for p in d.rglob("*") if p.is_file())
    assert "payload-in-clear" not in files  # encrypted at rest
    for where, text in [
        ("log", srv.log_text()), ("endpoints", answers), ("child cmdline", cmdline),
        ("child environment", environ), ("files", files),
    ]:
        assert key not in text, where
        assert ENV_KEY not in text or where == "log", where


# ------------------------------------------------------------ the Go server reads nss's stores
@needs_go
@pytest.mark.parametrize("cipher", ["AES", "CHACHA"])
@pytest.mark.parametrize("store", ["file", "sql"])
async def test_go_server_serves_what_nss_encrypted(
    servers: list[Server], tmp_path: Path, request: pytest.FixtureRequest, store: str, cipher: str
) -> None:
    if store == "file":
        args = ["-store", "file", "-dir", str(tmp_path / "d")]
    else:
        pg = request.getfixturevalue("pg_server")
        pg.create_db(db := f"nss_enc_go_{cipher.lower()}")
        args = ["-store", "sql", "-sql_driver", "postgres", "-sql_source", pg.dsn(db)]
    args += ["-encrypt", "-encryption_cipher", cipher]
    env = {ENV_KEY: "key-both-servers-know"}
    payloads = [b"m%d" % i * (i % 7) for i in range(1, 201)]
    servers.append(srv := Server(*args, env=env))
    c = await StanClient.connect(srv.url, "writer", cluster_id="fixture")
    for p in payloads:
        await c.publish("enc.chan", p)
    sub = await c.subscribe(
        "enc.chan", durable="dur", start=pb.First, manual_acks=True, max_inflight=1000
    )
    for m in await sub.take(50):
        await sub.ack(m)
    await c.nc.flush()
    await sub.close()
    await c.close()
    assert srv.stop() == 0

    servers.append(go := Server(*args, env=env, program=[GO_SERVER]))
    c = await StanClient.connect(go.url, "reader", cluster_id="fixture")
    sub = await c.subscribe("enc.chan", start=pb.First, max_inflight=1000)
    assert [m.data for m in await sub.take(200)] == payloads
    await c.publish("enc.chan", b"from go")
    w = await StanClient.connect(go.url, "writer", cluster_id="fixture")
    dur = await w.subscribe("enc.chan", durable="dur", max_inflight=1000)
    assert [m.sequence for m in await dur.take(151)] == list(range(51, 202))
    await w.close()
    await c.close()
    go.stop()  # the Go server exits 143 on SIGTERM

    # and back: nss reads what Go appended with the same key
    servers.append(srv := Server(*args, env=env))
    c = await StanClient.connect(srv.url, "reader2", cluster_id="fixture")
    sub = await c.subscribe("enc.chan", start=pb.First, max_inflight=1000)
    assert [m.data for m in await sub.take(201)] == [*payloads, b"from go"]
    await c.close()

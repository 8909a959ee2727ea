"""The container image, built from the top-level Dockerfile and run for real.

No daemon: buildah builds it on a local Debian base and runs the entrypoint
as the image's user, PID 1 of its own PID namespace, on the host network,
with a host directory as the /data volume (see imagebuild.py). A STAN client
stores messages in the volume, the server is stopped with SIGTERM as
``docker stop`` does, and a second run configured by ``-sc`` reads them back.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from imagebuild import ContainerServer, Image, build_image, mounted, proc_status, remove_image
from imagebuild import unavailable as _unavailable
from procs import READY_LINE, free_port
from stanclient import StanClient

from nss.pb import protocol_pb2 as pb

_why = _unavailable()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(1800),  # the first run debootstraps the base, then builds
    pytest.mark.skipif(_why is not None, reason=_why or ""),
]

MB = 1_000_000
# nss's own layers (venv, nats-server, healthcheck) on top of the base: what
# keeps the image near 200 MB on the default slim base. Unstripped wheels or a
# left-over pip cache would blow it. Encryption at rest (issue 12) requires the
# `cryptography` package, whose native library alone is ~14 MB (it links its
# own OpenSSL): the budget grew from 75 MB to 90 MB with it (79 MB measured).
MAX_ADDED_BYTES = 90 * MB
MARKER = f"nss-test-build-secret-{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    img = build_image(f"localhost/nss:test-{os.getpid()}", MARKER)
    yield img
    remove_image(img.name)


@pytest.fixture(scope="module")
def image_ids(image: Image) -> tuple[int, int]:
    """uid and gid of the image's user, from its /etc/passwd."""
    user, _ = image.user
    with mounted(image.name) as root:
        for line in (root / "etc/passwd").read_text().splitlines():
            f = line.split(":")
            if f[0] == user or f[2] == user:
                return int(f[2]), int(f[3])
    raise AssertionError(f"image user {user!r} not in its /etc/passwd")


def healthz(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def run_healthcheck(srv: ContainerServer) -> subprocess.CompletedProcess[str]:
    test = srv.image.config["Healthcheck"]["Test"]
    assert test[0] == "CMD", test
    return srv.exec(test[1:])


def test_image_matches_the_go_images_interface(image: Image, image_ids: tuple[int, int]) -> None:
    c = image.config
    assert c["Cmd"] == ["-m", "8222"]  # the Go image's default command
    assert {"4222/tcp", "8222/tcp"} <= set(c["ExposedPorts"])
    assert "/data" in c["Volumes"]
    assert c.get("StopSignal", "SIGTERM") == "SIGTERM"
    assert c["Healthcheck"]["Test"][0] == "CMD"
    uid, gid = image_ids
    assert uid != 0 and gid != 0, "the server must not run as root"
    with mounted(image.name) as root:
        st = (root / "data").stat()
        assert (st.st_uid, st.st_gid) == (uid, gid), "the server user must own the volume"
        assert (root / "opt/nss/bin/nats-server").is_file()
        assert os.readlink(root / "nats-streaming-server") == c["Entrypoint"][0]
    total, base = image.size(), image.size(image.base)
    print(
        f"\nimage {image.name}: {total / MB:.0f} MB on base {image.base} ({base / MB:.0f} MB): "
        f"nss adds {(total - base) / MB:.0f} MB; built in {image.build_seconds:.0f}s"
    )
    assert total - base < MAX_ADDED_BYTES


def test_build_secrets_stay_out_of_the_image(image: Image) -> None:
    """The pip index settings and CA bundle were build secrets carrying
    MARKER: not one file, environment variable or history entry has it."""
    with mounted(image.name) as root:
        r = subprocess.run(
            ["grep", "-rlsF", MARKER, str(root)], capture_output=True, text=True, timeout=300
        )
        assert r.stdout == "", f"build secrets found in the image: {r.stdout}"
        assert not (root / "etc/pip.conf").exists()
    assert not any(MARKER in h for h in image.history)
    assert not any(k.startswith("PIP_") for k in image.env)


async def test_file_store_in_the_volume_survives_a_sigterm_restart(
    image: Image, image_ids: tuple[int, int], tmp_path: Path
) -> None:
    uid, gid = image_ids
    data = tmp_path / "data"  # a volume the image's user owns, like a fresh named one
    data.mkdir()
    os.chown(data, uid, gid)

    # docker run IMAGE -p 4222 -m 8222 -store file -dir /data/store
    port, mport = free_port(), free_port()
    srv = ContainerServer(
        image,
        ["-p", str(port), "-m", str(mport), "-store", "file", "-dir", "/data/store"],
        {str(data): "/data"},
    )
    try:
        srv.wait_for_line(READY_LINE, timeout=60)
        status = proc_status(srv.server_pid())
        assert status["NSpid"].split()[-1] == "1", "nss is not PID 1 of its namespace"
        assert status["Uid"].split()[0] == str(uid)
        assert healthz(mport) == (200, {"status": "ok"})
        hc = run_healthcheck(srv)
        assert hc.returncode == 0, hc.stderr

        c = await StanClient.connect(f"nats://127.0.0.1:{port}", "producer")
        for i in range(5):
            await c.publish("orders", b"order-%d" % i)
        await c.close()

        assert srv.terminate() == 0, srv.log_text()
        assert "Received SIGTERM, shutting down" in srv.log_text()
    finally:
        srv.stop()
    stored = [p for p in (data / "store").rglob("*") if p.is_file()]
    assert stored and all(p.stat().st_uid == uid for p in stored)

    # docker run -v ./conf:/etc/nss IMAGE -sc /etc/nss/nss.conf, same volume
    port, mport = free_port(), free_port()
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "nss.conf").write_text(
        f'port: {port}\nhttp_port: {mport}\nstreaming {{\n  store: file\n  dir: "/data/store"\n}}\n'
    )
    srv = ContainerServer(
        image, ["-sc", "/etc/nss/nss.conf"], {str(data): "/data", str(conf): "/etc/nss"}
    )
    try:
        srv.wait_for_line(READY_LINE, timeout=60)
        # the healthcheck found the monitoring port in the config file
        hc = run_healthcheck(srv)
        assert hc.returncode == 0, hc.stderr
        assert json.loads(hc.stdout) == {"status": "ok"}

        c = await StanClient.connect(f"nats://127.0.0.1:{port}", "consumer")
        sub = await c.subscribe("orders", start=pb.First)
        got = await sub.take(5, timeout=10)
        assert [m.data for m in got] == [b"order-%d" % i for i in range(5)]
        await c.close()
        assert srv.terminate() == 0, srv.log_text()
    finally:
        srv.stop()

"""Configuration files through a real server: values apply, flags win, and
mistakes stop the start with the file, line and key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from procs import free_port
from stanclient import StanClient

from nss.pb import protocol_pb2 as pb


async def test_streaming_block_limits_apply(nss_factory, tmp_path: Path) -> None:
    conf = tmp_path / "stan.conf"
    conf.write_text(
        """
        # NATS keys and a streaming block in one file, as with the Go server
        max_payload: 65536
        streaming {
          cluster_id: "conf-cluster"
          store_limits {
            max_msgs: 10
            channels { "foo.>": { max_msgs: 3 }, "bar": { max_msgs: 0 } }
          }
        }
        """
    )
    srv = nss_factory("-sc", str(conf), cluster_id="conf-cluster")
    c = await StanClient.connect(srv.url, "conf", cluster_id="conf-cluster")
    for i in range(12):
        await c.publish("foo.x", b"%d" % i)
        await c.publish("bar", b"%d" % i)
        await c.publish("other", b"%d" % i)
    for channel, first in (("foo.x", 10), ("bar", 1), ("other", 3)):
        sub = await c.subscribe(channel, start=pb.First)
        m = await sub.next()
        assert m.sequence == first, channel
    await c.close()
    assert c.nc.max_payload == 65536  # the NATS part reached the embedded server


def run_nss(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nss", "-p", str(free_port()), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("streaming {\n  cluster_id: x\n  max_msg: 10\n}\n")
    r = run_nss("-sc", str(conf))
    assert r.returncode == 1
    assert f"{conf}:3" in r.stderr and "max_msg" in r.stderr


def test_wrong_type_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("streaming {\n  hb_fail_count: \"ten\"\n}\n")
    r = run_nss("-sc", str(conf))
    assert r.returncode == 1
    assert 'parameter "hb_fail_count" value is expected to be int64, got string' in r.stderr
    assert f"{conf}:2" in r.stderr


def test_syntax_error_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text("streaming {\n  cluster_id: x\n")
    r = run_nss("-sc", str(conf))
    assert r.returncode == 1
    assert str(conf) in r.stderr


async def test_monitoring_port_from_the_nats_config(nss_factory, tmp_path: Path) -> None:
    """`http: PORT` in the file serves NATS and streaming endpoints together."""
    import json
    import urllib.request

    port = free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(f"http: {port}\nstreaming {{ cluster_id: mon }}\n")
    nss_factory("-c", str(conf), cluster_id="mon")
    for path in ("/streaming/serverz", "/varz"):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            body = json.loads(r.read())
        assert body.get("cluster_id", "mon") == "mon"
        assert path != "/varz" or body["http_port"] == port

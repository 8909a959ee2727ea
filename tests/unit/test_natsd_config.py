"""What the nats-server child gets: no secret on its command line, the same
effect through its private configuration file; the private directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nss import private_dir
from nss.natsd import build_args
from nss.natsd.config import Pins, child_config
from nss.options import NATSOptions

SECRETS = ("alicepw", "tok3n", "clusterpw", "routepw")


def _secret_opts() -> NATSOptions:
    return NATSOptions(
        user="alice",
        password="alicepw",
        auth_token="tok3n",
        cluster_listen="nats://cu:clusterpw@127.0.0.1:6222",
        routes="nats://ru:routepw@10.0.0.2:6222,nats://10.0.0.3:6222",
        cluster_name="c",
    )


def test_no_secret_on_the_command_line() -> None:
    args = build_args(_secret_opts())
    for secret in SECRETS:
        assert not any(secret in a for a in args), (secret, args)
    # the flags without secrets stay flags
    assert args[args.index("--cluster_name") + 1] == "c"


def test_flags_without_credentials_stay_flags() -> None:
    args = build_args(
        NATSOptions(cluster_listen="nats://127.0.0.1:6222", routes="nats://10.0.0.2:6222")
    )
    assert args[args.index("--cluster") + 1] == "nats://127.0.0.1:6222"
    assert args[args.index("--routes") + 1] == "nats://10.0.0.2:6222"
    assert child_config(NATSOptions(cluster_listen="nats://h:1"), {}, internal_monitor=False) == {}


def test_secrets_go_to_the_config_file() -> None:
    assert child_config(_secret_opts(), {}, internal_monitor=False) == {
        "authorization": {"user": "alice", "password": "alicepw", "token": "tok3n"},
        "cluster": {
            "listen": "127.0.0.1:6222",
            "authorization": {"user": "cu", "password": "clusterpw"},
            "routes": ["nats://ru:routepw@10.0.0.2:6222", "nats://10.0.0.3:6222"],
        },
    }


def test_merged_into_the_users_file_as_the_flags_would_override_it() -> None:
    base = {
        "Port": 4222,
        "Authorization": {"USER": "old", "pass": "old", "timeout": 2},
        "cluster": {
            "name": "c",
            "port": 6000,
            "authorization": {"user": "x", "password": "y", "timeout": 3},
            "routes": ["nats://old:1"],
        },
        "http": 8222,
    }
    out = child_config(_secret_opts(), base, internal_monitor=True)
    assert out == {
        "Port": 4222,
        "Authorization": {"timeout": 2, "user": "alice", "password": "alicepw", "token": "tok3n"},
        "cluster": {
            "name": "c",
            "authorization": {"timeout": 3, "user": "cu", "password": "clusterpw"},
            "listen": "127.0.0.1:6222",
            "routes": ["nats://ru:routepw@10.0.0.2:6222", "nats://10.0.0.3:6222"],
        },
        "http": "127.0.0.1:-1",
    }
    assert base["Authorization"]["USER"] == "old"  # the caller's dict is left alone


def test_pins_keep_the_ports_of_the_first_child() -> None:
    base = {"listen": "0.0.0.0:-1", "cluster": {"listen": "127.0.0.1:-1"}}
    out = child_config(NATSOptions(), base, internal_monitor=False, pins=Pins(4333, 6333))
    assert out == {"listen": "0.0.0.0:4333", "cluster": {"listen": "127.0.0.1:6333"}}
    out = child_config(NATSOptions(), {"port": -1}, internal_monitor=False, pins=Pins(4333))
    assert out == {"port": 4333}


def test_private_files_and_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    old = os.umask(0)
    try:
        d = private_dir.make()
        f = os.path.join(d, "x.conf")
        private_dir.write_private(f, "secret")
        private_dir.write_private(f, "secret2")  # replaced, still private
    finally:
        os.umask(old)
    assert Path(d).parent == tmp_path and Path(d).name.startswith(f"nss-{os.getpid()}-")
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert Path(f).read_text() == "secret2"
    assert os.listdir(d) == ["x.conf"]


def test_remove_stale_only_when_the_owner_is_gone(tmp_path: Path) -> None:
    dead = _dead_pid()
    gone = tmp_path / f"nss-{dead}-abc"
    alive = tmp_path / f"nss-{os.getppid()}-def"
    mine = tmp_path / f"nss-{os.getpid()}-ghi"
    legacy = tmp_path / "nss-natsd-xyz"  # no pid: owner unknown
    other = tmp_path / f"nss-{dead}-file"
    for p in (gone, alive, mine, legacy):
        p.mkdir()
        (p / "nats-server.conf").write_text("{}")
    other.write_text("not a directory")
    assert private_dir.remove_stale(str(tmp_path)) == [str(gone)]
    assert not gone.exists()
    assert alive.exists() and mine.exists() and legacy.exists() and other.exists()


def _dead_pid() -> int:
    import subprocess

    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_restarted_child_keeps_the_first_childs_ports() -> None:
    from nss.natsd import EmbeddedNATS

    e = EmbeddedNATS(NATSOptions(port=-1, http_port=-1, cluster_listen="nats://127.0.0.1:-1"))
    opts, extra = e._run_options()
    assert extra == [] and opts.cluster_listen == "nats://127.0.0.1:-1"  # first start
    e._client_port, e._monitor_port, e._cluster_port = 4333, 8333, 6333
    opts, extra = e._run_options()
    args = build_args(opts) + extra
    # the last of a repeated flag wins in nats-server's flag parsing
    assert args[len(args) - 1 - args[::-1].index("-p") + 1] == "4333"
    assert args[len(args) - 1 - args[::-1].index("-m") + 1] == "8333"
    assert args[args.index("--cluster") + 1] == "nats://127.0.0.1:6333"

"""nss-migrate's command line and locations, and the incomplete-copy rule
the server applies at start."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nss.migrate import cli
from nss.migrate.target import Target, TargetError, copy_limits, parse_target
from nss.pb import spb_pb2 as spb
from nss.stores.base import (
    ERR_INCOMPLETE_COPY,
    MIGRATE_MARKER_ID,
    RecoveredState,
    StoreError,
    check_complete,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "go-v0.25.6"


def test_locations() -> None:
    assert parse_target("file:///var/lib/stan/") == Target("FILE", path="/var/lib/stan")
    pg = parse_target("postgresql://u:secret@db:5432/stan")
    assert (pg.kind, pg.driver) == ("SQL", "postgres")
    assert "secret" not in pg.describe()
    assert parse_target("mysql://u@db:3306/stan").driver == "mysql"
    for bad in ("file://relative/path", "/abs/path", "redis://x"):
        with pytest.raises(TargetError):
            parse_target(bad)


def test_rekey_goes_to_nss_rekey_in_place(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``--rekey`` re-encrypts ``--from`` itself; a copy elsewhere is refused."""
    assert cli.main(["--from", "file:///a", "--to", "file:///b", "--rekey"]) == 1
    assert "give no --to" in capsys.readouterr().err
    env = {"NSS_REKEY_OLD_KEY": "", "NSS_REKEY_NEW_KEY": ""}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert cli.main(["--from", f"file://{tmp_path}", "--rekey"]) == 1
    assert "the old key is required" in capsys.readouterr().err


def test_same_store_twice_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--from", "file:///a/", "--to", "file:///a"]) == 1
    assert "same store" in capsys.readouterr().err


def test_missing_source_is_refused_and_not_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.main(["--from", f"file://{tmp_path}/none", "--to", f"file://{tmp_path}/d"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def test_password_never_printed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(FIXTURES / "filestore" / "datastore", src)
    for p in [src, *src.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    dst = "postgresql://u:hunter22@127.0.0.1:1/db?connect_timeout=1"
    assert cli.main(["--from", f"file://{src}", "--to", dst]) == 1
    err = capsys.readouterr().err
    assert "error" in err and "hunter22" not in err


def test_copy_limits_keep_the_message_limits_of_the_config_file(tmp_path: Path) -> None:
    conf = tmp_path / "s.conf"
    conf.write_text(
        'store_limits: { max_msgs: 7, max_age: "1h", max_subs: 3, max_channels: 2,\n'
        '  channels: { x: { max_msgs: 2, max_age: "1m", max_subs: 1 } } }\n'
    )
    server = cli.server_limits(str(conf))
    assert server is not None and server.max_age == 3600
    lim = copy_limits(server)
    assert (lim.max_msgs, lim.per_channel["x"].max_msgs) == (7, 2)
    # never expire, refuse a channel or a subscription while copying
    assert (lim.max_age, lim.max_subscriptions, lim.max_channels) == (0, 0, 0)
    assert (lim.per_channel["x"].max_age, lim.per_channel["x"].max_subscriptions) == (0, 0)
    assert server.max_age == 3600  # the server's own limits untouched
    assert cli.server_limits("") is None


def test_incomplete_copy_is_refused() -> None:
    info = spb.ServerInfo(ClusterID="c")
    check_complete(None)
    check_complete(RecoveredState(info=info, clients=[spb.ClientInfo(ID="a")]))
    marked = RecoveredState(info=info, clients=[spb.ClientInfo(ID=MIGRATE_MARKER_ID)])
    with pytest.raises(StoreError, match="incomplete copy"):
        check_complete(marked)
    assert "nss-migrate" in ERR_INCOMPLETE_COPY

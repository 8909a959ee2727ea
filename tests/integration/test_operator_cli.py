"""What a newcomer following the README meets on the command line (issue 9,
operators' polish): ``-t``, ``--version``, ``--sql_schema``, a bad cluster ID,
SQL drivers that are unknown or not installed, and the limits banner. Each
runs the real ``nss`` as a process, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from procs import ROOT, NssServer, free_port

import nss
from nss.sql import script

STARTING = "Starting nats-streaming-server"


def run_nss(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """``nss args`` to completion; a server that starts instead of exiting
    runs into ``timeout`` and fails the test."""
    return subprocess.run(
        [sys.executable, "-m", "nss", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(ROOT),
        env={**os.environ, **(env or {})},
    )


# ------------------------------------------------------------------ -t


def test_check_config_ok_exits_without_starting(tmp_path: Path) -> None:
    conf = tmp_path / "nss.conf"
    conf.write_text(
        "port: 4333\n"
        "streaming {\n"
        "  cluster_id: prod\n"
        "  store: file\n"
        f"  dir: {tmp_path / 'data'}\n"
        "  store_limits { max_age: 24h, channels { 'orders.>': { max_msgs: 10 } } }\n"
        "}\n"
    )
    res = run_nss("-t", "-sc", str(conf), timeout=20)
    assert (res.returncode, res.stdout, res.stderr) == (0, "configuration OK\n", "")
    assert not (tmp_path / "data").exists()  # nothing was opened


@pytest.mark.parametrize(
    ("conf", "flags", "error"),
    [
        # only nats-server knows this key's type: -t asks it, naming the user's file
        ('port: "abc"\n', [], "{conf}: interface conversion"),
        ("streaming { store_limits { channels { 'a..b': { max_msgs: 1 } } } }\n", [],
         '{conf}:1: invalid channel name "a..b"'),
        ("streaming { store: file }\n", [], "for FILE stores, root directory must be specified"),
        ("", ["-mm", "-5"], "max messages limit cannot be negative (-5)"),
        ("", ["-st", "file", "-dir", "/tmp/x", "--file_compact_frag", "0"],
         "compact fragmentation value must at least be 1"),
    ],
    ids=["nats-key", "channel-name", "file-without-dir", "negative-limit", "file-option"],
)  # fmt: skip
def test_check_config_reports_the_error(
    tmp_path: Path, conf: str, flags: list[str], error: str
) -> None:
    path = tmp_path / "nss.conf"
    path.write_text(conf or "port: 4333\n")
    res = run_nss("-t", "-c", str(path), *flags, timeout=20)
    assert res.returncode == 1
    assert error.format(conf=path) in res.stderr
    assert len(res.stderr.splitlines()) == 1
    assert STARTING not in res.stdout + res.stderr


# ------------------------------------------------------------ --version


def test_version_names_nss_release_and_go_compatibility() -> None:
    res = run_nss("--version")
    assert res.returncode == 0
    assert res.stdout.startswith(
        f"nss version {nss.__version__}, compatible with nats-streaming-server version 0.25.6, "
        "nats-server: v"
    )


# ------------------------------------------------------------ cluster ID


@pytest.mark.parametrize("cid", ["bad cluster id", "", "a..b", "prod.*", ">", "tab\tbed"])
def test_bad_cluster_id_refused_before_anything_starts(cid: str) -> None:
    res = run_nss("-cid", cid, "-p", str(free_port()), timeout=20)
    assert res.returncode == 1
    assert res.stderr.startswith(f'invalid cluster ID "{cid}"'.replace("\t", "\\t"))
    assert "_STAN.discover.<cluster ID>" in res.stderr
    assert STARTING not in res.stdout + res.stderr


@pytest.mark.parametrize("cid", ["my-cluster", "a.b", "prod_1"])
def test_good_cluster_ids_pass(cid: str) -> None:
    assert run_nss("-t", "-cid", cid).returncode == 0


# ------------------------------------------------------------ SQL


def test_sql_schema_prints_the_shipped_scripts() -> None:
    for name in ("postgres", "mysql", "drop_postgres"):
        res = run_nss("--sql_schema", name)
        assert (res.returncode, res.stdout) == (0, script(name))
    assert "CREATE TABLE IF NOT EXISTS StoreLock" in script("postgres")
    res = run_nss("--sql_schema", "oracle")
    assert res.returncode == 1
    assert "choose one of: postgres, mysql, drop_postgres" in res.stderr


def test_unknown_sql_driver_lists_the_supported_ones() -> None:
    res = run_nss("-st", "sql", "--sql_driver", "oracle", "--sql_source", "x", timeout=20)
    assert res.returncode == 1
    assert res.stderr == 'sql: unknown driver "oracle", supported drivers: postgres, mysql\n'


@pytest.fixture
def without_pymysql(tmp_path: Path) -> dict[str, str]:
    """An environment where ``import pymysql`` fails, as in an install
    without the ``mysql`` extra (the test venv has PyMySQL)."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['pymysql'] = None\n")
    env = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    }
    probe = subprocess.run(
        [sys.executable, "-c", "import pymysql"], env={**os.environ, **env}, capture_output=True
    )
    assert probe.returncode != 0
    return env


@pytest.mark.parametrize("check", [True, False], ids=["-t", "start"])
def test_mysql_without_pymysql_says_which_extra(
    without_pymysql: dict[str, str], check: bool
) -> None:
    args = ["-st", "sql", "--sql_driver", "mysql", "--sql_source", "nss:pw@tcp(127.0.0.1:3306)/nss"]
    res = run_nss(*(["-t"] if check else []), *args, "-p", str(free_port()), env=without_pymysql)
    assert res.returncode == 1
    assert "install it with: pip install 'nss[mysql]'" in res.stderr
    assert len(res.stderr.splitlines()) == 1
    assert STARTING not in res.stdout + res.stderr


# ------------------------------------------------------------ banner


def _banner(server: NssServer) -> list[str]:
    texts = [line.split("STREAM: ", 1)[1] for line in server.lines if "STREAM: " in line]
    start = texts.index("---------- Store Limits ----------")
    end = next(i for i in range(start + 1, len(texts)) if set(texts[i]) == {"-"})
    return texts[start : end + 1]


def test_banner_prints_limits_the_go_way(tmp_path: Path, nss_factory: type[NssServer]) -> None:
    conf = tmp_path / "limits.conf"
    conf.write_text("streaming { store_limits { channels { 'orders.>': { max_msgs: 10 } } } }\n")
    server = nss_factory("-ma", "24h", "-mb", "1GB", "-mm", "0", "-sc", str(conf))
    assert _banner(server) == [
        "---------- Store Limits ----------",
        "Channels:                  100 *",
        "--------- Channels Limits --------",
        "  Subscriptions:          1000 *",
        "  Messages     :     unlimited",
        "  Bytes        :       1.00 GB",
        "  Age          :       24h0m0s",
        "  Inactivity   :     unlimited *",
        "-------- List of Channels --------",
        "orders.>",
        " |-> Messages                   10",
        "----------------------------------",
    ]
    assert f"{STARTING}[test-cluster] version 0.25.6 (nss {nss.__version__})" in server.log_text()

"""Logging set-up (nss/log.py): Go-like lines, JSON, levels, reopen."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from nss import log
from nss.cli import parse_args
from nss.options import Options

LINE_RE = re.compile(
    r"^\[(?P<pid>\d+)\] (?P<date>\d{4}/\d\d/\d\d) (?P<time>\d\d:\d\d:\d\d\.\d{6}) "
    r"\[(?P<lvl>[A-Z]{3})\] (?P<rest>.*)$"
)


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    yield
    log.close()
    log.setup(Options())


def setup_from(*argv: str) -> None:
    log.setup(parse_args(list(argv)).options)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_file_output_has_go_format(tmp_path: Path) -> None:
    path = tmp_path / "stan.log"
    setup_from("-l", str(path))
    logger = log.get_logger()
    logger.info(
        "Starting nats-streaming-server[%s] version %s", "test-cluster", "0.25.6"
    )
    logger.warning("Channel limit reached", channel="foo.bar", count=3)
    logger.error("Something failed", err="disk full")
    logger.fatal("Failed to start", err="x")
    out = lines(path)
    assert len(out) == 4
    m = LINE_RE.match(out[0])
    assert m, out[0]
    assert int(m["pid"]) == os.getpid()
    assert m["lvl"] == "INF"
    assert m["rest"] == (
        "STREAM: Starting nats-streaming-server[test-cluster] version 0.25.6"
    )
    assert out[1].endswith(
        "[WRN] STREAM: Channel limit reached channel=foo.bar count=3"
    )
    assert out[2].endswith('[ERR] STREAM: Something failed err="disk full"')
    assert "[FTL] STREAM: Failed to start err=x" in out[3]


def test_file_is_appended(tmp_path: Path) -> None:
    path = tmp_path / "stan.log"
    path.write_text("previous line\n")
    setup_from("--log", str(path))
    log.get_logger().info("hello")
    out = lines(path)
    assert out[0] == "previous line"
    assert out[1].endswith("[INF] STREAM: hello")


def test_stderr_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    log.setup(Options())
    log.get_logger().info("to stderr")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.rstrip().endswith("[INF] STREAM: to stderr")
    assert LINE_RE.match(captured.err.rstrip())


def test_logtime_off(tmp_path: Path) -> None:
    path = tmp_path / "l.log"
    setup_from("-l", str(path), "-T=false")
    log.get_logger().info("no time")
    assert lines(path) == [f"[{os.getpid()}] [INF] STREAM: no time"]


def test_logtime_utc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    path = tmp_path / "l.log"
    setup_from("-l", str(path), "--logtime_utc")
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    log.get_logger().info("utc")
    m = LINE_RE.match(lines(path)[0])
    assert m
    stamp = dt.datetime.strptime(f"{m['date']} {m['time']}", "%Y/%m/%d %H:%M:%S.%f")
    assert abs((stamp - before).total_seconds()) < 5


def test_logger_name_prefix(tmp_path: Path) -> None:
    path = tmp_path / "l.log"
    setup_from("-l", str(path), "-T=false")
    log.get_logger("NATS").info("x")
    log.get_logger("").info("y")
    assert lines(path) == [
        f"[{os.getpid()}] [INF] NATS: x",
        f"[{os.getpid()}] [INF] y",
    ]


@pytest.mark.parametrize(
    ("argv", "debug", "trace"),
    [
        ([], False, False),
        (["-SD"], True, False),
        (["-SV"], False, True),
        (["-SDV"], True, True),
        (["-D"], True, False),
        (["-V"], False, True),
        (["-DV"], True, True),
        (["--stan_debug", "--stan_trace"], True, True),
        (["-SDV", "-SDV=false"], False, False),
    ],
)
def test_level_filtering(
    tmp_path: Path, argv: list[str], debug: bool, trace: bool
) -> None:
    path = tmp_path / "l.log"
    setup_from("-l", str(path), *argv)
    logger = log.get_logger()
    logger.trace("t")
    logger.debug("d")
    logger.info("i")
    tags = [LINE_RE.match(line)["lvl"] for line in lines(path)]  # type: ignore[index]
    expected = (["TRC"] if trace else []) + (["DBG"] if debug else []) + ["INF"]
    assert tags == expected
    assert log.is_debug_enabled() is debug
    assert log.is_trace_enabled() is trace


def test_loggers_created_before_setup_follow_it(tmp_path: Path) -> None:
    early = log.get_logger()
    bound = early.bind(client="me")
    path = tmp_path / "l.log"
    setup_from("-l", str(path), "-SDV", "-T=false")
    early.trace("early trace")
    bound.debug("bound debug")
    assert lines(path) == [
        f"[{os.getpid()}] [TRC] STREAM: early trace",
        f"[{os.getpid()}] [DBG] STREAM: bound debug client=me",
    ]


def test_disabled_level_is_a_nop(tmp_path: Path) -> None:
    setup_from("-l", str(tmp_path / "l.log"))
    logger = log.get_logger()

    class Boom:
        def __str__(self) -> str:  # pragma: no cover - must not be called
            raise AssertionError("formatted although disabled")

    assert logger.trace("x %s", Boom(), obj=Boom()) is None
    assert logger.debug("x", obj=Boom()) is None
    assert (tmp_path / "l.log").read_text() == ""


def test_json_output(tmp_path: Path) -> None:
    path = tmp_path / "l.json"
    setup_from("-l", str(path), "--log_json", "-SD")
    logger = log.get_logger()
    logger.info("Server is ready", port=4222, ratio=0.5)
    logger.debug("dbg %d", 7, obj=object())
    out = [json.loads(line) for line in lines(path)]
    assert out[0]["event"] == "Server is ready"
    assert out[0]["level"] == "info"
    assert out[0]["logger"] == "STREAM"
    assert out[0]["pid"] == os.getpid()
    assert out[0]["port"] == 4222
    assert out[0]["ratio"] == 0.5
    assert "time" in out[0]
    assert out[1]["level"] == "debug"
    assert out[1]["event"] == "dbg 7"
    assert out[1]["obj"].startswith("<object")


def test_json_without_time(tmp_path: Path) -> None:
    path = tmp_path / "l.json"
    setup_from("-l", str(path), "--log_json", "-T=false")
    log.get_logger().warning("w")
    assert json.loads(lines(path)[0]) == {
        "level": "warning",
        "pid": os.getpid(),
        "logger": "STREAM",
        "event": "w",
    }


def test_exception_traceback(tmp_path: Path) -> None:
    path = tmp_path / "l.log"
    setup_from("-l", str(path))
    try:
        raise RuntimeError("kaboom")
    except RuntimeError:
        log.get_logger().exception("Unexpected error")
    text = path.read_text()
    assert "[ERR] STREAM: Unexpected error" in text
    assert "RuntimeError: kaboom" in text


def test_reopen_after_rotation(tmp_path: Path) -> None:
    path = tmp_path / "stan.log"
    rotated = tmp_path / "stan.log.1"
    setup_from("-l", str(path))
    logger = log.get_logger()
    logger.info("before rotation")
    path.rename(rotated)
    logger.info("still to the moved file")
    log.reopen()
    logger.info("after reopen")
    assert [line.split("STREAM: ")[1] for line in lines(rotated)] == [
        "before rotation",
        "still to the moved file",
    ]
    assert [line.split("STREAM: ")[1] for line in lines(path)] == ["after reopen"]


def test_reopen_without_file_is_harmless(capsys: pytest.CaptureFixture[str]) -> None:
    log.setup(Options())
    log.reopen()
    log.get_logger().info("ok")
    assert "STREAM: ok" in capsys.readouterr().err


def test_stdlib_records_are_bridged(tmp_path: Path) -> None:
    path = tmp_path / "l.log"
    setup_from("-l", str(path), "-T=false")
    logging.getLogger("nats.aio.client").error("connection lost: %s", "eof")
    logging.getLogger("quiet").debug("not shown")
    assert lines(path) == [
        f"[{os.getpid()}] [ERR] nats.aio.client: connection lost: eof"
    ]


def test_structlog_get_logger_uses_same_setup(tmp_path: Path) -> None:
    path = tmp_path / "l.log"
    setup_from("-l", str(path), "-T=false")
    structlog.get_logger().info("via structlog", a=1)
    assert lines(path) == [f"[{os.getpid()}] [INF] via structlog a=1"]


def test_value_quoting(tmp_path: Path) -> None:
    path = tmp_path / "l.log"
    setup_from("-l", str(path), "-T=false")
    log.get_logger().info("q", empty="", eq="a=b", plain="x")
    assert lines(path)[0].endswith('STREAM: q empty="" eq="a=b" plain=x')

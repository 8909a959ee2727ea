"""Logging set-up: structlog with Go STAN compatible console lines.

Operators of the Go server grep for lines such as::

    [1234] 2026/11/21 11:40:51.123456 [INF] STREAM: Starting nats-streaming-server[test-cluster] ...

so the console renderer reproduces that shape (``[pid] date time [LVL]
NAME: event key=value ...``); ``--log_json`` switches to one JSON object per
line for log shippers.

Why not ``structlog.make_filtering_bound_logger``: it cannot express a
level below debug, and Go enables debug and trace independently (``-SV``
alone gives trace lines without debug lines).  Instead every logger is an
instance of one ``StanLogger`` class whose level methods are *swapped at the
class level* by ``setup()``: a disabled level is a plain ``return None``
method, so ``log.trace(...)`` on a hot path costs one call, and loggers
created at import time (before ``setup()``) follow later reconfiguration
without structlog's per-call lazy proxy.

Output goes through a single ``_Sink`` so that ``reopen()`` (SIGUSR1, log
rotation) only has to swap one file object, under a lock shared with the
writers, and so that one place redacts credentials from every line.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

import structlog
from structlog import BoundLoggerBase
from structlog.processors import format_exc_info

from nss import redact
from nss.options import Options

__all__ = [
    "TRACE",
    "StanLogger",
    "close",
    "get_logger",
    "is_debug_enabled",
    "is_trace_enabled",
    "reopen",
    "setup",
]

TRACE = 5  # below logging.DEBUG (10), for stdlib interoperability

# Go's three-letter level tags, keyed by structlog method name.
_TAGS = {
    "trace": "TRC",
    "debug": "DBG",
    "info": "INF",
    "notice": "INF",
    "msg": "INF",
    "warning": "WRN",
    "warn": "WRN",
    "error": "ERR",
    "exception": "ERR",
    "critical": "FTL",
    "fatal": "FTL",
}
# Level names used in JSON output (normalised: aliases collapse).
_JSON_LEVELS = {
    "trace": "trace",
    "debug": "debug",
    "info": "info",
    "notice": "info",
    "msg": "info",
    "warning": "warning",
    "warn": "warning",
    "error": "error",
    "exception": "error",
    "critical": "fatal",
    "fatal": "fatal",
}
_NAME_KEY = "_logger_name"  # context key carrying the "STREAM" prefix


class _Sink:
    """Where rendered lines go: stderr or an append-mode file.

    structlog calls ``getattr(sink, method_name)(line)``, so every level
    name is an alias of ``write``.  ``stream is None`` means "whatever
    ``sys.stderr`` is right now", which keeps pytest's capture working.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.path: str | None = None
        self.stream: TextIO | None = None

    def write(self, line: str) -> None:
        # The last line of defence: whatever a call site or a library put
        # in the line, no credential leaves the process (nss.redact).
        line = redact.text(line)
        with self.lock:
            stream = self.stream if self.stream is not None else sys.stderr
            try:
                stream.write(line + "\n")
                stream.flush()
            except (OSError, ValueError):
                # A full disk or a closed stream must not take the server
                # down from inside a log call.
                pass

    trace = debug = info = notice = msg = write
    warning = warn = error = exception = critical = fatal = write

    def open(self, path: str | None) -> None:
        with self.lock:
            self._close_locked()
            self.path = path
            if path:
                self.stream = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def reopen(self) -> None:
        with self.lock:
            if not self.path:
                return
            self._close_locked()
            self.stream = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def _close_locked(self) -> None:
        if self.stream is not None:
            try:
                self.stream.close()
            except OSError:
                pass
        self.stream = None


_SINK = _Sink()


# ---------------------------------------------------------------------------
# Renderers


class _Format:
    """Rendering settings captured by ``setup`` (read on every line)."""

    pid: int = os.getpid()
    logtime: bool = True
    utc: bool = False
    json: bool = False


def _timestamp() -> str:
    if _Format.utc:
        now = _dt.datetime.now(_dt.UTC)
    else:
        now = _dt.datetime.now()
    return now.strftime("%Y/%m/%d %H:%M:%S.%f")


def _json_timestamp() -> str:
    now = _dt.datetime.now(_dt.UTC)
    if not _Format.utc:
        now = now.astimezone()
    return now.isoformat(timespec="microseconds")


def _fmt_value(value: Any) -> str:
    """``key=value`` rendering: quote only what would be ambiguous."""
    text = value if isinstance(value, str) else str(value)
    if text == "" or any(c in text for c in ' ="\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


def _render_console(
    _logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> str:
    name = event_dict.pop(_NAME_KEY, "")
    event = event_dict.pop("event", "")
    exc = event_dict.pop("exception", None)
    parts = [f"[{_Format.pid}]"]
    if _Format.logtime:
        parts.append(_timestamp())
    parts.append(f"[{_TAGS.get(method, 'INF')}]")
    head = " ".join(parts)
    line = f"{head} {name}: {event}" if name else f"{head} {event}"
    if event_dict:
        line += " " + " ".join(f"{k}={_fmt_value(v)}" for k, v in event_dict.items())
    if exc:
        line += "\n" + str(exc).rstrip("\n")
    return line


def _render_json(
    _logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> str:
    out: dict[str, Any] = {}
    if _Format.logtime:
        out["time"] = _json_timestamp()
    out["level"] = _JSON_LEVELS.get(method, "info")
    out["pid"] = _Format.pid
    name = event_dict.pop(_NAME_KEY, "")
    if name:
        out["logger"] = name
    out["event"] = event_dict.pop("event", "")
    out.update(event_dict)
    return json.dumps(out, default=str, ensure_ascii=False)


def _render(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> str:
    if _Format.json:
        return _render_json(logger, method, event_dict)
    return _render_console(logger, method, event_dict)


# Shared by every logger and mutated in place, so a reconfiguration reaches
# loggers that already exist.
_PROCESSORS: list[Callable[..., Any]] = [format_exc_info, _render]


# ---------------------------------------------------------------------------
# Logger class


def _nop(self: Any, event: str, *args: Any, **kw: Any) -> None:
    return None


def _make_method(name: str) -> Callable[..., Any]:
    def meth(self: BoundLoggerBase, event: str, *args: Any, **kw: Any) -> Any:
        if args:
            event = event % args
        return self._proxy_to_logger(name, event, **kw)

    meth.__name__ = name
    return meth


class StanLogger(BoundLoggerBase):
    """The bound logger returned by ``get_logger``.

    Methods: ``trace``, ``debug``, ``info``/``notice``, ``warning``/``warn``,
    ``error``, ``exception``, ``fatal``/``critical``; ``%``-style positional
    arguments are interpolated into the event like structlog does.  Level
    methods are (re)assigned by ``setup``; the defaults below are used until
    then (info and above, to stderr).
    """

    trace: Callable[..., Any] = _nop
    debug: Callable[..., Any] = _nop
    info: Callable[..., Any] = _make_method("info")
    notice: Callable[..., Any] = _make_method("notice")
    msg: Callable[..., Any] = _make_method("info")
    warning: Callable[..., Any] = _make_method("warning")
    warn: Callable[..., Any] = _make_method("warning")
    error: Callable[..., Any] = _make_method("error")
    critical: Callable[..., Any] = _make_method("critical")
    fatal: Callable[..., Any] = _make_method("fatal")

    def exception(self, event: str, *args: Any, **kw: Any) -> Any:
        kw.setdefault("exc_info", True)
        return self.error(event, *args, **kw)

    def is_enabled_for(self, level: int) -> bool:
        """stdlib-style check (``TRACE``, ``logging.DEBUG`` ...)."""
        if level <= TRACE:
            return _STATE["trace"]
        if level <= logging.DEBUG:
            return _STATE["debug"]
        return True


_STATE = {"debug": False, "trace": False}


def _set_levels(debug: bool, trace: bool) -> None:
    _STATE["debug"] = debug
    _STATE["trace"] = trace
    StanLogger.debug = _make_method("debug") if debug else _nop  # type: ignore[method-assign]
    StanLogger.trace = _make_method("trace") if trace else _nop  # type: ignore[method-assign]


def is_debug_enabled() -> bool:
    """True when debug lines are emitted; lets hot paths skip formatting."""
    return _STATE["debug"]


def is_trace_enabled() -> bool:
    """True when trace lines are emitted; lets hot paths skip formatting."""
    return _STATE["trace"]


def get_logger(name: str = "STREAM") -> StanLogger:
    """A logger whose lines are prefixed with ``<name>:`` (none if empty).

    Safe to call at import time: configuration changes made by ``setup``
    later apply to it.
    """
    context = {_NAME_KEY: name} if name else {}
    return StanLogger(_SINK, _PROCESSORS, context)


# ---------------------------------------------------------------------------
# stdlib bridge


class _StdlibBridge(logging.Handler):
    """Forward records of libraries using ``logging`` (nats-py, asyncio).

    They end up in the same file with the same format instead of being lost
    or printed in a different shape.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self._loggers: dict[str, StanLogger] = {}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            log = self._loggers.get(record.name)
            if log is None:
                log = self._loggers[record.name] = get_logger(record.name)
            msg = record.getMessage()
            kw: dict[str, Any] = {}
            if record.exc_info:
                kw["exc_info"] = record.exc_info
            level = record.levelno
            if level >= logging.CRITICAL:
                log.fatal(msg, **kw)
            elif level >= logging.ERROR:
                log.error(msg, **kw)
            elif level >= logging.WARNING:
                log.warning(msg, **kw)
            elif level >= logging.INFO:
                log.info(msg, **kw)
            elif level >= logging.DEBUG:
                log.debug(msg, **kw)
            else:
                log.trace(msg, **kw)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


_BRIDGE: _StdlibBridge | None = None


def _install_bridge(debug: bool, trace: bool) -> None:
    global _BRIDGE
    root = logging.getLogger()
    if _BRIDGE is None:
        _BRIDGE = _StdlibBridge()
        root.addHandler(_BRIDGE)
    logging.addLevelName(TRACE, "TRACE")
    root.setLevel(TRACE if trace else logging.DEBUG if debug else logging.INFO)


# ---------------------------------------------------------------------------
# Public set-up


def setup(opts: Options) -> None:
    """Configure logging from the options (may be called again).

    The logger is shared between the streaming and the NATS side, as in Go:
    ``-l``, ``-T`` and ``--logtime_utc`` are NATS flags, and debug/trace are
    on when either the streaming (``-SD``/``-SV``/``-SDV``) or the NATS
    (``-D``/``-V``/``-DV``) flags ask for them.  Syslog and size-based
    rotation are left to the nats-server child; nss writes to stderr or the
    ``-l`` file.
    """
    st, nats = opts.streaming, opts.nats
    debug = bool(st.debug or nats.debug)
    trace = bool(st.trace or nats.trace)
    _Format.pid = os.getpid()
    _Format.logtime = bool(nats.logtime)
    _Format.utc = bool(nats.logtime_utc)
    _Format.json = bool(st.log_json)
    _SINK.open(nats.log_file or None)
    _set_levels(debug, trace)
    _install_bridge(debug, trace)
    structlog.configure(
        processors=_PROCESSORS,
        wrapper_class=StanLogger,
        logger_factory=lambda *_args: _SINK,
        cache_logger_on_first_use=False,
    )


def reopen() -> None:
    """Reopen the log file (SIGUSR1): after a rotation tool moved it away,
    new lines go to a fresh file at the configured path."""
    _SINK.reopen()


def close() -> None:
    """Close the log file and fall back to stderr (shutdown, tests)."""
    _SINK.open(None)

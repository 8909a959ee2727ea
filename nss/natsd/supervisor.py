"""The supervisor of the embedded NATS server: :class:`EmbeddedNATS`.

It owns what outlives one child process: the private directory and the
configuration file the child reads, the ports the first child bound (kept
by every restart), the restart policy, and the public state nss reads
(URLs, ports, failure). One process is :class:`nss.natsd.child.NATSChild`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import time
from collections.abc import Callable

from nss import private_dir
from nss.natsd.args import build_args, child_env, with_port
from nss.natsd.binary import find_nats_server
from nss.natsd.child import NATSChild
from nss.natsd.config import Pins, child_config
from nss.natsd.errors import NATSServerError
from nss.natsd.logs import LogLineFn, public_text
from nss.natsd.ports import Listening, dial_host
from nss.natsd.restart import ExitWindow, RestartPolicy
from nss.options import NATSOptions
from nss.redact import has_credentials

__all__ = ["DEFAULT_STARTUP_TIMEOUT", "EmbeddedNATS"]

DEFAULT_STARTUP_TIMEOUT = 10.0

_swept = False


def _sweep_stale_dirs() -> list[str]:
    """Once per process: remove private directories of dead nss processes."""
    global _swept
    if _swept:
        return []
    _swept = True
    return private_dir.remove_stale()


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
        # internal loopback port (nss.natsd.config.INTERNAL_MONITOR).
        self.monitor_address = monitor_address
        self._log_line = log_line
        self._on_exit = on_exit
        self._on_event = on_event
        self._restart_policy = restart
        self._exits = ExitWindow(restart.window) if restart is not None else None
        self._restart_task: asyncio.Task[None] | None = None
        self.restarts = 0
        self.failure = ""

        self._binary: str | None = None
        self._args: list[str] = []
        self._dir: str | None = None
        self._config_path = ""
        self._user_config = False  # the user's file has NATS keys
        self._stopping = False
        self._child: NATSChild | None = None

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
        return self._child.pid if self._child is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit status once the child has exited (negative = killed by signal)."""
        return self._child.returncode if self._child is not None else None

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.running

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
        return f"nats://{dial_host(host)}:{self._client_port}"

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
        return f"{scheme}://{dial_host(host)}:{self._monitor_port}"

    @property
    def cluster_port(self) -> int | None:
        """Actual route listener port when ``--cluster`` was given."""
        return self._cluster_port

    @property
    def last_lines(self) -> tuple[str, ...]:
        """The child's most recent output lines, for diagnostics."""
        return self._child.last_lines if self._child is not None else ()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Spawn nats-server and return once it accepts client connections.

        Must be called from the thread that lives as long as nss (see
        :meth:`nss.natsd.child.NATSChild.start`). Raises
        :class:`NATSServerError` if the binary is missing, the child exits
        first (e.g. port in use) or it is not ready within
        ``startup_timeout``; the child is killed in that case.
        """
        if self.pid is not None:
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
        rc = await self._child.stop(timeout) if self._child is not None else None
        self._remove_dir()
        return rc

    def reload(self) -> None:
        """Ask the child to reload its configuration (SIGHUP).

        The private copy is written again from the user's file first, so the
        child sees the user's edits. nats-server logs the outcome itself
        (``Reloaded server configuration`` or an error), which reaches nss's
        log.
        """
        if not self.running or self._child is None:
            raise NATSServerError("embedded NATS server is not running")
        if self._config_path:
            from nss.config import ConfigError

            try:
                self._write_config()
            except (OSError, ConfigError) as e:
                raise NATSServerError(f"unable to reload the configuration: {e}") from e
        self._child.send_signal(signal.SIGHUP)

    async def wait_exit(self) -> int:
        """Wait until the current child exits (for any reason); its status."""
        if self._child is None:
            raise RuntimeError("embedded NATS server not started")
        return await self._child.wait()

    # ------------------------------------------------------------ internals

    def _event(self, level: str, text: str) -> None:
        if self._on_event is not None:
            self._on_event(level, text)

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
                opts, cluster_listen=with_port(opts.cluster_listen, self._cluster_port)
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
        self._child = None
        assert self._binary is not None and self._dir is not None
        run_opts, extra = self._run_options()
        config = self._write_config()
        # With a config file the child might log to a file or syslog instead
        # of its stderr; the ports file is then the readiness signal.
        own_ports = ""
        ports_dir: str | None = None
        if self.opts.ports_file_dir:
            ports_dir = self.opts.ports_file_dir
        elif self._user_config:
            ports_dir = own_ports = self._dir
        args = build_args(
            dataclasses.replace(run_opts, config_file=config if self._user_config else ""),
            ports_file_dir=own_ports,
        )
        if config and not self._user_config:
            args += ["-c", config]
        self._args = [self._binary, *args, *extra]
        self._child = NATSChild(
            self._args,
            relay=self._relay,
            on_listening=self._learn,
            on_exit=self._child_died,
            need_route_listener=bool(self.opts.cluster_listen),
            ports_dir=ports_dir,
            config_file=self.opts.config_file,
            env=child_env(run_opts, os.environ, self.opts.config_file),
        )
        await self._child.start(self.startup_timeout)

    def _remove_dir(self) -> None:
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _learn(self, found: Listening) -> None:
        """Remember where the child listens (the pins of later children);
        the ports file only fills what the log did not say."""
        if found.port is None:
            return
        known = {
            "client": self._client_port,
            "monitor": self._monitor_port,
            "route": self._cluster_port,
        }[found.kind]
        if found.only_if_unknown and known is not None:
            return
        if found.kind == "client":
            self._client_port = found.port
            if found.host is not None:
                self._client_host = found.host
        elif found.kind == "monitor":
            self._monitor_port, self._monitor_scheme = found.port, found.scheme
            if found.host is not None:
                self._monitor_host = found.host
        else:
            self._cluster_port = found.port

    def _child_died(self, rc: int) -> None:
        """An unplanned exit of a child that was serving (or of a restart
        attempt): restart it, or give up and tell ``on_exit``."""
        if self._stopping:
            return
        policy = self._restart_policy
        if policy is None or self._exits is None:
            self.failure = f"embedded NATS server exited unexpectedly (status {rc})"
        else:
            exits = self._exits.record(time.monotonic())
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
        from nss.config import ConfigError

        try:
            await self._spawn()
        except (NATSServerError, ConfigError, OSError) as e:
            # a configuration file broken meanwhile counts as a failed start:
            # retried with the back-off, given up on with the fatal line
            if not isinstance(e, NATSServerError):
                e = NATSServerError(f"unable to write its configuration: {e}")
            self._event("ERR", f"embedded NATS server could not be restarted: {e}")
            self._child_died(e.returncode if e.returncode is not None else -1)
            return
        self.restarts += 1
        self._event(
            "INF", f"embedded NATS server restarted (pid {self.pid}) on {self.client_url}"
        )

    def _public_text(self, level: str, text: str) -> str | None:
        """The child's log text as the user should see it (None: hidden)."""
        return public_text(
            level,
            text,
            private_config=self._config_path,
            user_config=self.opts.config_file if self._user_config else "",
            monitor_address=self.monitor_address,
        )

    def _relay(self, level: str, text: str) -> None:
        """Re-emit a line of the child's output through nss's logger."""
        if self._log_line is None:
            return
        shown = self._public_text(level, text)
        if shown is not None:
            self._log_line(level, shown)

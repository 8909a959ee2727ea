"""One ``nats-server`` process, from spawn to reaping.

The supervisor (:class:`nss.natsd.supervisor.EmbeddedNATS`) starts one for
the first run and one per restart. This is where the child's life is tied
to nss's, its output drained and relayed, and its readiness detected.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence

from nss.natsd.errors import NATSServerError
from nss.natsd.logs import LogLineFn, listening, parse_log_line, start_failure
from nss.natsd.ports import Listening, ports_file_listeners, read_ports_file

__all__ = ["NATSChild"]

# linux/prctl.h
_PR_SET_PDEATHSIG = 1

_LAST_LINES = 30


def _make_preexec() -> Callable[[], None] | None:
    """Build the child-side hook that ties the child's life to ours.

    ``PR_SET_PDEATHSIG`` is delivered when the *thread* that forked the
    child exits, so :meth:`NATSChild.start` must run on the thread that
    lives as long as nss (the main thread running the event loop). libc is
    loaded here, before the fork, so the child only makes one foreign call.
    If nss died between fork and prctl the signal would never come, hence
    the ``getppid`` re-check. ctypes is imported here, lazily, to keep nss
    start-up fast.
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


class NATSChild:
    """Runs one ``nats-server`` command line.

    ``relay(level, text)`` receives each line of the child's output (parsed,
    not yet filtered for users), ``on_listening`` each listener the child
    reports, and ``on_exit(returncode)`` an exit after readiness (before
    readiness, the exit is :meth:`start`'s error instead).

    ``need_route_listener``: ``--cluster`` was given, so readiness also
    waits for the route listener. ``ports_dir``: where nats-server writes
    its ports file, the readiness signal when its log may go elsewhere.
    ``config_file``: the user's file, named when a silent child failed.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        relay: LogLineFn,
        on_listening: Callable[[Listening], None],
        on_exit: Callable[[int], None],
        need_route_listener: bool = False,
        ports_dir: str | None = None,
        config_file: str = "",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self._env = env
        self._relay = relay
        self._on_listening = on_listening
        self._on_exit = on_exit
        self._need_route_listener = need_route_listener
        self._ports_dir = ports_dir
        self._config_file = config_file

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
        self._saw_route_listener = False

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
    def last_lines(self) -> tuple[str, ...]:
        """The child's most recent output lines, for diagnostics."""
        return tuple(self._last_lines)

    # ------------------------------------------------------------ lifecycle

    async def start(self, timeout: float) -> None:
        """Spawn the child and return once it accepts clients.

        Raises :class:`NATSServerError` if it cannot be run, exits first or
        is not ready within ``timeout`` seconds; it is killed in that case.
        """
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._exited = loop.create_future()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                # Own session: a terminal Ctrl-C must reach only nss, which
                # shuts the child down after its own graceful shutdown.
                start_new_session=True,
                preexec_fn=_make_preexec(),
                env=self._env,
            )
        except OSError as e:
            raise NATSServerError(f"cannot run nats-server {self.argv[0]!r}: {e}") from e

        self._reader = asyncio.create_task(self._read_output(), name="natsd-output")
        self._watcher = asyncio.create_task(self._watch(), name="natsd-watch")
        if self._ports_dir:
            self._poller = asyncio.create_task(self._poll_ports_file(), name="natsd-ports")
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except TimeoutError:
            await self._abort()
            last = self._last_lines[-1] if self._last_lines else "no output"
            raise NATSServerError(
                f"embedded NATS server did not become ready within "
                f"{timeout:g}s (last output: {last})",
                last_lines=self.last_lines,
            ) from None
        except BaseException:
            await self._abort()
            raise
        finally:
            if self._poller is not None:
                self._poller.cancel()

    async def stop(self, timeout: float) -> int | None:
        """SIGINT (nats-server's graceful stop), SIGKILL after ``timeout``;
        the exit status once reaped (None if it never ran)."""
        proc, exited = self._proc, self._exited
        if proc is None or exited is None:
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
        return rc

    def send_signal(self, sig: int) -> None:
        if self._proc is None:
            raise ProcessLookupError("nats-server was not started")
        self._proc.send_signal(sig)

    async def wait(self) -> int:
        """Wait until the child exits (for any reason); its status."""
        if self._exited is None:
            raise RuntimeError("embedded NATS server not started")
        return await asyncio.shield(self._exited)

    async def _abort(self) -> None:
        """Kill a child that failed to start; its error is reported by start()."""
        if self._proc is not None and self._exited is not None:
            if not self._exited.done():
                with contextlib.suppress(ProcessLookupError):
                    self._proc.kill()
            await asyncio.shield(self._exited)
        if self._watcher is not None:
            await asyncio.shield(self._watcher)

    # --------------------------------------------------------------- output

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
        try:
            self._relay(level, text)
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
        """Learn the listeners and readiness from an INF line."""
        if (found := listening(text)) is not None:
            self._on_listening(found)
            if found.kind == "route":
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
            info = read_ports_file(self._ports_dir, suffix)
            if info is None:
                continue  # not there yet, or caught mid-write
            if self._log_visible:
                return
            for found in ports_file_listeners(info):
                self._on_listening(found)
            self._set_ready()
            return

    async def _watch(self) -> None:
        """Reap the child and report how it ended.

        Before readiness an exit becomes start()'s error; afterwards it goes
        to ``on_exit``.
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
            ready.set_exception(
                start_failure(rc, self._fatal, self._last_lines, self._config_file)
            )
            # start() may already have stopped waiting (timeout/cancel).
            ready.exception()
        exited.set_result(rc)
        if was_ready:
            self._on_exit(rc)

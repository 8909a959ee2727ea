"""Process entry point: command line, logging, signals, exit status.

Exit status: 0 after a graceful stop (SIGINT or SIGTERM; client test
suites read 1 at start-up as "port in use"), 1 when start-up fails or the
server dies (lost embedded NATS server).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Sequence

from nss import log, redact
from nss.cli import UsageError, process_command_line
from nss.config import ConfigError
from nss.options import Options


async def run(opts: Options) -> int:
    from nss.server.server import StanServer

    logger = log.get_logger()
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[str] = loop.create_future()

    def request_stop(name: str) -> None:
        if not stop.done():
            stop.set_result(name)

    server = StanServer(opts)
    pid_file = opts.nats.pid_file
    if pid_file:
        import os

        try:
            with open(pid_file, "w") as f:
                f.write(f"{os.getpid()}\n")
        except OSError as e:
            logger.error(f"Unable to write pid file {pid_file}: {e}")
    loop.add_signal_handler(signal.SIGINT, request_stop, "SIGINT")
    loop.add_signal_handler(signal.SIGTERM, request_stop, "SIGTERM")

    def stop_answering(signum: int, frame: object) -> None:
        # Runs between bytecodes as soon as the signal arrives, before the
        # loop reads anything else: stan.js kills the server and at once
        # expects its next request to time out. The loop still learns of
        # the signal through asyncio's wakeup fd and calls request_stop.
        server.stopping = True

    signal.signal(signal.SIGINT, stop_answering)
    signal.signal(signal.SIGTERM, stop_answering)
    loop.add_signal_handler(signal.SIGUSR1, log.reopen)

    def reload() -> None:
        from nss.natsd import NATSServerError

        if server.natsd is None:
            return
        try:
            server.natsd.reload()
        except NATSServerError as e:
            logger.error(f"Unable to reload the NATS configuration: {e}")

    loop.add_signal_handler(signal.SIGHUP, reload)
    start = loop.create_task(server.start())
    await asyncio.wait({start, stop}, return_when=asyncio.FIRST_COMPLETED)
    if not start.done():
        start.cancel()
        try:
            await start
        except BaseException:  # noqa: BLE001 - we are stopping anyway
            pass
        await server.shutdown()
        return 0
    exc = start.exception()
    if exc is not None:
        logger.fatal(f"Failed to start: {exc}")
        await server.shutdown()
        return 1
    assert server.fatal is not None
    await asyncio.wait({stop, server.fatal}, return_when=asyncio.FIRST_COMPLETED)
    if server.fatal.done() and not stop.done():
        logger.fatal(server.fatal.result())
        await server.shutdown()
        return 1
    logger.info(f"Received {stop.result()}, shutting down")
    await server.shutdown()
    return 0


def load_config_files(opts: Options, explicit: set[str]) -> None:
    """Apply -sc/-c (flags given on the command line win) and pick the NATS
    configuration the embedded server gets (config.md §2.1): -sc alone serves
    both, -c alone serves both, with both each serves its own module."""
    sc, c = opts.streaming.stan_config, opts.nats.config_file
    path = sc or c
    if not path:
        return
    from nss.config_apply import apply_streaming_config, monitor_ports, nats_authorization
    from nss.stores.limits import validate

    apply_streaming_config(opts, path, explicit)
    validate(opts.streaming.store_limits)
    nats_file = c or sc
    ports = monitor_ports(nats_file)
    if "nats.http_port" not in explicit and "nats.https_port" not in explicit:
        opts.nats.http_port = ports.get("http", opts.nats.http_port)
        opts.nats.https_port = ports.get("https", opts.nats.https_port)
    # Go's own NATS connections use the NATS options' credentials, which a
    # NATS config file sets in its authorization block (flags still win).
    auth = nats_authorization(nats_file)
    for attr, value in zip(("user", "password", "auth_token"), auth, strict=True):
        if value and f"nats.{attr}" not in explicit:
            setattr(opts.nats, attr, value)
    if not opts.streaming.nats_server_url:
        # nss.natsd hands the child the NATS part of this file
        opts.nats.config_file = nats_file


_SIGNALS = {
    "stop": signal.SIGKILL,
    "quit": signal.SIGINT,
    "reopen": signal.SIGUSR1,
    "reload": signal.SIGHUP,
    "ldm": signal.SIGUSR2,
    "term": signal.SIGTERM,
}


def send_signal(spec: str) -> int:
    """``-sl <cmd>[=<pid or pid file>]``: signal a running server and exit.
    Without a pid, the one running nss / nats-streaming-server is found with
    pgrep (it must be unique)."""
    import os
    import subprocess

    cmd, _, target = spec.partition("=")
    sig = _SIGNALS.get(cmd.lower())
    if sig is None:
        print(f"unknown signal {cmd!r}", file=sys.stderr)
        return 1
    if not target:
        me = str(os.getpid())
        found = set()
        for name in ("nss", "nats-streaming-server"):
            r = subprocess.run(["pgrep", "-f", name], capture_output=True, text=True)
            found |= {p for p in r.stdout.split() if p != me}
        if len(found) != 1:
            print(f"found {len(found)} running servers: give the pid", file=sys.stderr)
            return 1
        target = found.pop()
    if not target.isdigit():
        try:
            with open(target) as f:
                target = f.read().strip()
        except OSError as e:
            print(f"unable to read pid file: {e}", file=sys.stderr)
            return 1
    try:
        os.kill(int(target), sig)
    except (OSError, ValueError) as e:
        print(f"unable to signal {target}: {e}", file=sys.stderr)
        return 1
    return 0


def preflight(opts: Options, explicit: set[str]) -> bool:
    """Merge the configuration files and check everything that can be
    checked before starting (with ``-t``, the NATS part too); on a mistake
    print it and return False."""
    from nss.preflight import CheckError, check_nats_config, check_options
    from nss.stores.base import StoreError

    user_nats_file = opts.nats.config_file or opts.streaming.stan_config
    try:
        load_config_files(opts, explicit)
        check_options(opts)
        if opts.nats.check_config:
            check_nats_config(opts, user_nats_file)
    except (UsageError, ConfigError, ValueError, StoreError, CheckError) as e:
        print(redact.text(str(e)), file=sys.stderr)
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    res = process_command_line(sys.argv[1:] if argv is None else list(argv))
    if isinstance(res, int):
        return res
    opts = res.options
    if opts.nats.signal:
        return send_signal(opts.nats.signal)
    if not preflight(opts, res.explicit):
        return 1
    if opts.nats.check_config:
        print("configuration OK")
        return 0
    from nss.stores.crypto import adopt_env_key

    adopt_env_key(opts.streaming)
    redact.register_options(opts)
    log.setup(opts)
    try:
        return asyncio.run(run(opts))
    except KeyboardInterrupt:
        return 0
    finally:
        log.close()

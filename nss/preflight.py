"""What can be checked before anything starts: on every start, and alone with ``-t``.

A mistake found here costs the user one clear line and exit status 1, before
the embedded NATS server, the monitoring port or the store are touched;
found later, it would come out of a half-started server as a driver
traceback or a NATS protocol error. ``-t`` runs the same checks (plus the
NATS server's own check of the configuration it would be given) and stops,
so a configuration can be validated on a host where a server is running.
"""

from __future__ import annotations

import subprocess

from nss.cli import check_supported
from nss.options import Options


class CheckError(Exception):
    """A configuration that cannot start; ``str()`` is the line to print."""


def check_options(opts: Options) -> None:
    """Flags and files merged into ``opts``: supported, consistent, and the
    store's own options valid. Raises ``UsageError``, ``ValueError`` or
    ``StoreError`` with a one-line message."""
    check_supported(opts)
    st = opts.streaming
    from nss.stores.limits import build

    build(st.store_limits)  # per-channel entries and inheritance, like Go's Build
    if st.store_type == "FILE":
        from nss.stores.file import validate_file_options

        validate_file_options(st.file_options)
    elif st.store_type == "SQL":
        from nss.stores.sql.dsn import parse_source

        # the driver's module imports and the data source parses; no connection
        parse_source(st.sql_options.driver, st.sql_options.source)


def check_nats_config(opts: Options, user_file: str) -> None:
    """Have the nats-server binary check the configuration file nss would
    hand it (the NATS part of ``user_file``, the ``-c``/``-sc`` file), since
    only it knows every NATS key. Nothing to check with an external NATS
    server (``-ns``) or without NATS keys."""
    user_path = opts.nats.config_file
    if opts.streaming.nats_server_url or not user_path:
        return
    import json
    import os

    from nss import private_dir
    from nss.config_apply import nats_config
    from nss.natsd import NATSServerError, find_nats_server

    try:
        binary = find_nats_server(opts.nats.nats_server_bin)
    except NATSServerError as e:
        raise CheckError(str(e)) from None
    # the NATS part only, as the child gets it (streaming keys are not
    # nats-server's), in a private file since it may hold credentials
    path = os.path.join(private_dir.make(), "nats-server-check.conf")
    private_dir.write_private(path, json.dumps(nats_config(user_path)))
    try:
        proc = subprocess.run(
            [binary, "-t", "-c", path], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise CheckError(
            f"cannot run nats-server {binary!r} to check the configuration: {e}"
        ) from None
    if proc.returncode != 0:
        raise CheckError(_nats_error(proc.stdout + proc.stderr, path, user_file or path))


def _nats_error(output: str, child_path: str, user_path: str) -> str:
    """nats-server's complaint about the file nss generated, told about the
    user's file: the generated copy (a temporary JSON file) means nothing
    to the user and its line numbers are not theirs."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    text = lines[-1] if lines else "nats-server rejected the configuration"
    text = text.removeprefix("nats-server: ")
    if child_path != user_path:
        # "<tmp>/nats-server.conf:3:2: <reason>" -> "<reason>"
        head, sep, rest = text.partition(child_path)
        if sep:
            text = head + rest.split(": ", 1)[-1]
    return f"configuration file {user_path}: {text}"

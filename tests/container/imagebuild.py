"""Build the nss image and run it without a container daemon.

There is no Docker daemon on the test machines, and the official Python base
image cannot be pulled. So:

- the base is a Debian minbase with python3, made by debootstrap from the
  mirror this machine's apt already uses, cached as a tarball in
  /var/cache/nss-test-base and imported into containers-storage;
- buildah builds the top-level Dockerfile with ``--isolation chroot``; pip's
  index settings and CA bundle are read from this machine's configuration
  and handed over as build secrets, so that nothing about the local proxy is
  written in the repository or baked into the image;
- buildah runs the image's entrypoint in a chroot on the host network,
  inside a new PID namespace (``unshare``), as the image's user
  (``setpriv``): nss is PID 1 and gets SIGTERM the way a container runtime
  sends it.
"""

from __future__ import annotations

import ast
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from procs import ROOT, NssProcess

TOOLS = ("buildah", "podman", "debootstrap", "unshare", "nsenter")
CACHE = Path(os.environ.get("NSS_TEST_BASE_CACHE", "/var/cache/nss-test-base"))
DEFAULT_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# pip settings a build needs to reach the index this machine uses
PIP_INDEX_KEYS = ("index-url", "extra-index-url", "trusted-host", "proxy")


def run(cmd: list[str], timeout: float = 600, **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a tool; a failure raises with its output, which says why."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    if r.returncode != 0:
        out = r.stdout[-3000:] + r.stderr[-3000:]
        raise RuntimeError(f"{' '.join(cmd[:3])} ... failed ({r.returncode}):\n{out}")
    return r


def unavailable() -> str | None:
    """Why the image cannot be built and run here, or None."""
    if os.geteuid() != 0:
        return "container image tests need root (buildah chroot isolation, debootstrap)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return (
            f"{', '.join(missing)} not installed: scripts/test installs them "
            "(apt-get install buildah podman debootstrap)"
        )
    if not Path("/etc/os-release").exists() or not host_suite():
        return "not a Debian-like host: no suite to debootstrap the test base from"
    return None


# --------------------------------------------------------------- the base


def host_suite() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME":
            return value.strip().strip('"')
    return ""


def apt_sources() -> list[tuple[str, list[str], list[str]]]:
    """(uri, suites, components) of every enabled ``deb`` source, from the
    one-line lists and the deb822 ``.sources`` files."""
    out: list[tuple[str, list[str], list[str]]] = []
    apt = Path("/etc/apt")
    lists = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for f in lists:
        if not f.is_file():
            continue
        for line in f.read_text().splitlines():
            line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(line) >= 3 and line[0] == "deb":
                out.append((line[1], [line[2]], line[3:]))
    for f in sorted((apt / "sources.list.d").glob("*.sources")):
        for para in re.split(r"\n\s*\n", f.read_text()):
            fields: dict[str, str] = {}
            for line in para.splitlines():
                if line.startswith("#") or ":" not in line or line[0].isspace():
                    continue
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            suites = fields.get("suites", "").split()
            components = fields.get("components", "").split()
            out.extend((uri, suites, components) for uri in fields.get("uris", "").split())
    return out


def apt_mirror(suite: str) -> str:
    """The mirror this machine's apt installs ``suite`` from."""
    for uri, suites, components in apt_sources():
        if suite in suites and "main" in components:
            return uri
    raise RuntimeError(f"no apt source serves {suite} main (see /etc/apt/sources.list*)")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise base creation between concurrent test runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def image_exists(name: str) -> bool:
    return (
        subprocess.run(
            ["buildah", "inspect", "--type", "image", name], capture_output=True
        ).returncode
        == 0
    )


def make_base_tarball(suite: str, tarball: Path) -> None:
    """debootstrap a minbase with python3 and venv; trim what a slim image
    would not carry (apt lists and caches, docs, man pages, locales)."""
    root = CACHE / f"{suite}.rootfs"
    shutil.rmtree(root, ignore_errors=True)
    run(
        [
            "debootstrap",
            "--variant=minbase",
            "--include=python3,python3-venv",
            suite,
            str(root),
            apt_mirror(suite),
        ],
        timeout=1200,
    )
    for sub in (
        "var/lib/apt/lists",
        "var/cache/apt",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
    ):
        for p in (root / sub).glob("*"):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
    part = tarball.with_suffix(".part")
    run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(part), "."])
    part.rename(tarball)
    shutil.rmtree(root, ignore_errors=True)


def ensure_base() -> str:
    """The local base image's name, made (or re-imported) only when absent."""
    suite = host_suite()
    name = f"localhost/nss-test-base:{suite}"
    with locked(CACHE / ".lock"):
        if image_exists(name):
            return name
        tarball = CACHE / f"{suite}.tar"
        if not tarball.exists():
            make_base_tarball(suite, tarball)
        run(["podman", "import", str(tarball), name])
    return name


# ------------------------------------------------------ pip's index, as secrets


def pip_settings() -> dict[str, str]:
    """This machine's effective pip configuration (files and PIP_* env)."""
    r = run([sys.executable, "-m", "pip", "config", "list"])
    found: dict[str, tuple[int, str]] = {}
    rank = {":env:": 3, "install": 2, "global": 1}
    for line in r.stdout.splitlines():
        key, eq, raw = line.partition("=")
        if not eq:
            continue
        section, _, name = key.rpartition(".")
        try:
            value = str(ast.literal_eval(raw))
        except (ValueError, SyntaxError):
            value = raw.strip("'\"")
        prio = rank.get(section, 0)
        if name not in found or prio > found[name][0]:
            found[name] = (prio, value)
    return {k: v for k, (_, v) in found.items()}


def write_build_secrets(directory: Path, marker: str) -> list[str]:
    """``--secret`` options with this machine's pip index settings and CA
    bundle. Index URLs may hold credentials and the CA is the local proxy's:
    secrets are mounted for one RUN and never stored in a layer. ``marker``
    (a comment in both) lets the test prove that."""
    settings = pip_settings()
    lines = [f"# {marker}", "[global]"]
    for key in PIP_INDEX_KEYS:
        value = settings.get(key, "")
        if key.endswith("url"):  # local file:// indexes do not exist in the build
            value = " ".join(u for u in value.split() if u.startswith(("http://", "https://")))
        if key == "proxy" and not value:
            value = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or ""
        if value:
            lines.append(f"{key} = {value}")
    pipconf = directory / "pip.conf"
    pipconf.write_text("\n".join(lines) + "\n")
    ca_src = (
        settings.get("cert")
        or os.environ.get("REQUESTS_CA_BUNDLE")
        or os.environ.get("SSL_CERT_FILE")
        or DEFAULT_CA_BUNDLE
    )
    cacert = directory / "ca.crt"
    text = Path(ca_src).read_text() if Path(ca_src).is_file() else ""
    cacert.write_text(f"{text}\n# {marker}\n")
    for f in (pipconf, cacert):
        f.chmod(0o600)
    return ["--secret", f"id=pipconf,src={pipconf}", "--secret", f"id=cacert,src={cacert}"]


# ----------------------------------------------------------------- the image


@dataclass
class Image:
    name: str
    base: str
    config: dict  # the Docker image config (Entrypoint, Cmd, User, Healthcheck ...)
    history: list[str]
    build_seconds: float

    @property
    def entrypoint(self) -> list[str]:
        return list(self.config.get("Entrypoint") or [])

    @property
    def user(self) -> tuple[str, str]:
        user, _, group = (self.config.get("User") or "root").partition(":")
        return user, group or user

    @property
    def env(self) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.config.get("Env") or [])

    def size(self, name: str | None = None) -> int:
        r = run(["podman", "image", "inspect", "--format", "{{.Size}}", name or self.name])
        return int(r.stdout.strip())


def build_image(tag: str, marker: str) -> Image:
    base = ensure_base()
    with tempfile.TemporaryDirectory(prefix="nss-build-secrets-") as tmp:
        secrets = write_build_secrets(Path(tmp), marker)
        start = time.monotonic()
        build = ["buildah", "bud", "--isolation", "chroot", "--format", "docker"]
        opts = ["--pull=never", "--build-arg", f"BASE={base}", *secrets]
        run([*build, *opts, "-t", tag, str(ROOT)], timeout=1200)
        took = time.monotonic() - start
    info = json.loads(run(["buildah", "inspect", "--type", "image", tag]).stdout)
    history = [h.get("created_by", "") for h in info["Docker"].get("history", [])]
    return Image(tag, base, info["Docker"]["config"], history, took)


def remove_image(name: str) -> None:
    subprocess.run(["buildah", "rmi", "-f", name], capture_output=True)


@contextlib.contextmanager
def mounted(image: str) -> Iterator[Path]:
    """The image's root filesystem, read from a throw-away working container."""
    ctr = run(["buildah", "from", "--pull=never", image]).stdout.strip()
    try:
        yield Path(run(["buildah", "mount", ctr]).stdout.strip())
    finally:
        subprocess.run(["buildah", "rm", ctr], capture_output=True)


# ------------------------------------------------------------ running it


def _children(pid: int) -> list[int]:
    """Child pids, from /proc/*/stat (this kernel has no /proc/PID/task/*/children)."""
    kids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            kids.append(int(d.name))
    return sorted(kids)


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


class ContainerServer(NssProcess):
    """nss started from the image like ``docker run IMAGE args...``: the
    image's entrypoint, as its user, PID 1 of its own PID namespace, with
    ``volumes`` (host path -> container path) bind-mounted."""

    def __init__(self, image: Image, args: list[str], volumes: dict[str, str]) -> None:
        self.image = image
        self.ctr = run(["buildah", "from", "--pull=never", image.name]).stdout.strip()
        for path in volumes.values():
            # as with docker run -v, the mount replaces the image's anonymous
            # volume there (buildah run would mount that one over it)
            if path in (image.config.get("Volumes") or {}):
                run(["buildah", "config", "--volume", f"{path}-", self.ctr])
        user, group = image.user
        mounts = [a for host, path in volumes.items() for a in ("-v", f"{host}:{path}")]
        program = [
            "buildah", "run", "--isolation", "chroot", "--user", "0:0",
            "--cap-add", "CAP_SYS_ADMIN", *mounts, self.ctr, "--",
            "unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
            "setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups", "--",
            *image.entrypoint,
        ]  # fmt: skip
        super().__init__(args, program=program)
        self.pid = 0

    def server_pid(self, timeout: float = 10.0) -> int:
        """nss's pid on the host: the child ``unshare`` forked (PID 1 inside)."""
        deadline = time.monotonic() + timeout
        while not self.pid:
            todo = [self.proc.pid]
            while todo:
                pid = todo.pop()
                kids = _children(pid)
                if (_cmdline(pid)[:1] or [""])[0].endswith("unshare") and kids:
                    self.pid = kids[0]
                    break
                todo.extend(kids)
            if not self.pid:
                if time.monotonic() > deadline:
                    raise AssertionError("nss's process not found under buildah run")
                time.sleep(0.05)
        return self.pid

    def exec(self, command: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in the server's namespaces and root as the image's
        user, with the image's environment: what ``docker exec`` and the
        runtime's HEALTHCHECK do."""
        user, group = self.image.user
        enter = ["nsenter", f"--target={self.server_pid()}", "--pid", "--mount", "--root", "--wd"]
        as_user = ["setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups", "--"]
        return subprocess.run(
            [*enter, *as_user, *command],
            env=self.image.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM to PID 1, as ``docker stop`` sends it; the exit status."""
        os.kill(self.server_pid(), signal.SIGTERM)
        return self.proc.wait(timeout)

    def stop(self, sig: int = signal.SIGKILL, timeout: float = 10.0) -> int:
        """Clean-up: SIGKILL to PID 1 ends everything in its namespace."""
        try:
            if self.proc.poll() is None:
                with contextlib.suppress(OSError, AssertionError):
                    os.kill(self.server_pid(timeout=1), sig)
            return super().stop(signal.SIGKILL, timeout)
        finally:
            subprocess.run(["buildah", "rm", self.ctr], capture_output=True)

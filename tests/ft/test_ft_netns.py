"""Two "hosts" (network namespaces joined by a veth pair, each with its own
embedded NATS server routed to the other) sharing one datastore directory.
Cutting the active off the network must not produce a second writer; killing
it hands over to the other host."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import READY_LINE, NssProcess

FAST = ("--ft_hb_interval", "100ms", "--ft_hb_missed_interval", "250ms")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def _netns_available() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    name = "nsschk" + uuid.uuid4().hex[:6]
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError:
        return False
    _ip("netns", "del", name)
    return True


pytestmark = pytest.mark.skipif(
    not _netns_available(), reason="network namespaces need root and iproute2"
)


@pytest.fixture
def two_hosts() -> Iterator[dict[str, str]]:
    tag = uuid.uuid4().hex[:6]
    hosts = {"a": f"nssa{tag}", "b": f"nssb{tag}"}
    # a /24 used only between these two namespaces, invented per run
    net = f"10.{200 + int(tag[0], 16) % 50}.{int(tag[1:3], 16)}"
    addrs = {"a": f"{net}.1", "b": f"{net}.2"}
    va, vb = f"va{tag}", f"vb{tag}"
    try:
        for h in hosts.values():
            _ip("netns", "add", h)
            _ip("-n", h, "link", "set", "lo", "up")
        _ip("link", "add", va, "type", "veth", "peer", "name", vb)
        for key, dev in (("a", va), ("b", vb)):
            _ip("link", "set", dev, "netns", hosts[key])
            _ip("-n", hosts[key], "addr", "add", f"{addrs[key]}/24", "dev", dev)
            _ip("-n", hosts[key], "link", "set", dev, "up")
        yield {
            "ns_a": hosts["a"],
            "ns_b": hosts["b"],
            "a": addrs["a"],
            "b": addrs["b"],
            "dev_a": va,
        }
    finally:
        for h in hosts.values():
            subprocess.run(["ip", "netns", "del", h], capture_output=True)


def member(host: dict[str, str], me: str, other: str, datastore: Path) -> NssProcess:
    return NssProcess(
        [
            "-a",
            host[me],
            "-p",
            "4222",
            "--cluster",
            f"nats://{host[me]}:6222",
            "--routes",
            f"nats://{host[other]}:6222",
            "--ft_group",
            "grp",
            "-store",
            "file",
            "-dir",
            str(datastore),
            "-SD",
            *FAST,
        ],
        prefix=["ip", "netns", "exec", host[f"ns_{me}"]],
    )


def test_cut_off_active_keeps_its_lock_then_sigkill_hands_over(
    two_hosts: dict[str, str], tmp_path: Path
) -> None:
    datastore = tmp_path / "shared"
    a = member(two_hosts, "a", "b", datastore)
    b = None
    try:
        a.wait_for_line(READY_LINE, timeout=20)
        b = member(two_hosts, "b", "a", datastore)
        b.wait_for_line("Starting in standby mode", timeout=20)
        # the routes carry A's heartbeats to B
        b.wait_for_line("Route connection created", timeout=20)
        # cut host A off: B hears nothing, but A still holds the store lock
        _ip("-n", two_hosts["ns_a"], "link", "set", two_hosts["dev_a"], "down")
        b.wait_for_line("ft: unable to get store lock at this time", timeout=10)
        assert "Server is active" not in b.log_text()
        # host A dies: its lock goes with it and B takes over
        a.stop(signal.SIGKILL)
        b.wait_for_line("Server is active", timeout=10)
        b.wait_for_line(READY_LINE, timeout=10)
    finally:
        a.stop()
        if b is not None:
            b.stop()

"""Synchronous publishes on the FILE store: a SIGKILL loses no acknowledged
message, and why the index is fsynced with the data on every commit (the
Go server, taking over an nss store, trusts an index that lags its data
file)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from procs import free_port
from stanclient import StanClient, StanError, wait_for

from nss.pb import protocol_pb2 as pb


async def test_sigkill_under_sync_publishers_loses_no_acked_message(
    nss_factory, tmp_path: Path
) -> None:
    """Two publishers waiting for each PubAck (two commits in flight at a
    time) while the server is SIGKILLed: after a restart every acked
    message is there, each once, in order."""
    d = str(tmp_path / "data")
    srv = nss_factory("-store", "file", "-dir", d)
    acked: dict[str, list[int]] = {"a": [], "b": []}

    async def publish_sync(c: StanClient, who: str) -> None:
        i = 0
        while True:
            try:
                await c.publish("ch", b"%s%d" % (who.encode(), i))
            except (TimeoutError, StanError, OSError):
                return
            acked[who].append(i)
            i += 1

    clients = [await StanClient.connect(srv.url, f"pub-{w}") for w in acked]
    tasks = [asyncio.create_task(publish_sync(c, w)) for c, w in zip(clients, acked, strict=True)]
    await wait_for(lambda: min(len(v) for v in acked.values()) >= 150, timeout=60)
    srv.stop(signal.SIGKILL)
    for t in tasks:
        t.cancel()
    for c in clients:
        await c.drop()
    mport = free_port()
    srv2 = nss_factory("-store", "file", "-dir", d, "-m", str(mport), port=srv.port)
    c = await StanClient.connect(srv2.url, "reader")
    # every stored message: a publish stored just before the kill may have
    # lost its PubAck (at least once), and must not push an acked one out
    last = (await asyncio.to_thread(_channelsz, mport, "ch"))["last_seq"]
    assert last >= sum(len(v) for v in acked.values())
    sub = await c.subscribe("ch", start=pb.First, max_inflight=100000)
    stored = [m.data.decode() for m in await sub.take(last, timeout=30)]
    for who, seqs in acked.items():
        mine = [int(s[1:]) for s in stored if s[0] == who]
        assert mine[: len(seqs)] == seqs, who  # in order, none missing
        assert len(mine) == len(set(mine)), who
    await c.close()


def _channelsz(mport: int, channel: str = "foo") -> dict:
    url = f"http://127.0.0.1:{mport}/streaming/channelsz?channel={channel}"
    with urllib.request.urlopen(url, timeout=2) as r:
        return json.load(r)


@pytest.mark.skipif(
    not os.environ.get("NSS_GO_SERVER"), reason="NSS_GO_SERVER (a Go v0.25.6 binary) not set"
)
async def test_go_server_trusts_a_lagging_index(nss_factory, tmp_path: Path) -> None:
    """Why nss fsyncs ``.idx`` with ``.dat`` on every commit: after a power
    cut that loses index pages, nss rebuilds the missing index records from
    the data file, but the Go server (FT partner, or a downgrade) serves
    only what the index lists and writes its next message over the rest."""
    d = tmp_path / "data"
    srv = nss_factory("-store", "file", "-dir", str(d))
    c = await StanClient.connect(srv.url, "pub")
    for i in range(100):
        await c.publish("foo", b"m%d" % i)
    await c.close()
    assert srv.stop() == 0
    idx = d / "foo" / "msgs.1.idx"
    idx.write_bytes(idx.read_bytes()[: 4 + 60 * 32])  # the un-fsynced tail is gone
    nss_copy = tmp_path / "nss-data"
    shutil.copytree(d, nss_copy)

    mport = free_port()
    go = subprocess.Popen(
        [os.environ["NSS_GO_SERVER"], "-store", "file", "-dir", str(d),
         "-p", str(free_port()), "-m", str(mport)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                got = await asyncio.to_thread(_channelsz, mport)
                break
            except OSError:
                assert time.monotonic() < deadline, "the Go server did not start"
                await asyncio.sleep(0.1)
        assert (got["msgs"], got["last_seq"]) == (60, 60)  # 40 acked messages gone
    finally:
        go.terminate()
        go.wait(10)

    mport = free_port()
    srv = nss_factory("-store", "file", "-dir", str(nss_copy), "-m", str(mport))
    got = await asyncio.to_thread(_channelsz, mport)
    assert (got["msgs"], got["last_seq"]) == (100, 100)
    srv.wait_for_line('Indexed 40 trailing messages of "')

"""Two partitions of one cluster ID on one NATS server, and a duplicate."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from procs import READY_LINE, NssProcess, free_port
from stanclient import StanClient

from nss.pb import protocol_pb2 as pb


def partition_conf(tmp_path: Path, name: str, channels: list[str]) -> str:
    entries = "\n".join(f'      "{c}": {{}}' for c in channels)
    path = tmp_path / f"{name}.conf"
    path.write_text(
        f"""
        streaming {{
          cluster_id: part-cluster
          partitioning: true
          store_limits {{
            channels {{
{entries}
            }}
          }}
        }}
        """
    )
    return str(path)


@pytest.fixture
def partitions(tmp_path: Path, nss_factory):
    foo = nss_factory("-sc", partition_conf(tmp_path, "foo", ["foo", "foo.*"]),
                      cluster_id="part-cluster")
    procs: list[NssProcess] = []

    def start(name: str, channels: list[str]) -> NssProcess:
        p = NssProcess(
            ["-ns", foo.url, "-SDV", "-m", str(free_port()),
             "-sc", partition_conf(tmp_path, name, channels)]
        )
        procs.append(p)
        return p

    yield foo, start
    for p in procs:
        p.stop()


async def test_each_partition_serves_its_channels(partitions) -> None:
    foo, start = partitions
    bar = start("bar", ["bar", "bar.>"])
    bar.wait_for_line(READY_LINE)
    c = await StanClient.connect(foo.url, "client", cluster_id="part-cluster")
    for channel in ("foo", "foo.x", "bar", "bar.x.y"):
        await c.publish(channel, channel.encode())
        sub = await c.subscribe(channel, start=pb.First)
        assert (await sub.next()).data == channel.encode()
    # nobody serves "baz" or "foo.x.y": no PubAck, no subscription response
    pending = c.publish_async("baz", b"lost")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(pending), 1.5)
    with pytest.raises(Exception, match="[Tt]imeout"):
        await c.subscribe("foo.x.y")
    # pings are answered by both partitions; the client is known to both
    assert await c.ping() == ""
    await c.close()


async def test_duplicate_channel_stops_the_newcomer(partitions) -> None:
    foo, start = partitions
    dup = start("dup", ["zzz", "foo.bar"])
    line = dup.wait_for_line("causes conflict")
    assert 'channel "foo.bar" causes conflict with channels on server' in line
    assert dup.proc.wait(10) == 1
    # the first partition keeps serving
    c = await StanClient.connect(foo.url, "after", cluster_id="part-cluster")
    await c.publish("foo", b"still here")
    await c.close()


def test_partitioning_without_channels_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "empty.conf"
    conf.write_text("streaming { partitioning: true }\n")
    p = NssProcess(["-p", str(free_port()), "-sc", str(conf)])
    try:
        p.wait_for_line("stan: no configured channel")
        assert p.proc.wait(10) == 1
    finally:
        p.stop()

"""Store limits (stores.md §2, protocol.md §10.3)."""

from __future__ import annotations

import asyncio
import time

import pytest
from rawproto import eventually
from stanclient import StanClient, StanError

from nss.pb import protocol_pb2 as pb


async def _publish_n(c: StanClient, channel: str, first: int, last: int, size: int = 0) -> None:
    for i in range(first, last + 1):
        await c.publish(channel, (b"m%d" % i).ljust(size, b"."))


async def _available(c: StanClient, channel: str, within: float = 0.1) -> list[int]:
    """Sequences a new First subscription receives (then it is removed)."""
    sub = await c.subscribe(channel, start=pb.First)
    seqs = []
    try:
        while True:
            try:
                seqs.append((await sub.next(within)).sequence)
            except TimeoutError:
                return seqs
    finally:
        await sub.unsubscribe()


async def test_max_channels(nss_factory):
    srv = nss_factory("-mc", "2")
    c = await StanClient.connect(srv.url, "me")
    await c.publish("a", b"x")
    await c.subscribe("b")
    with pytest.raises(StanError) as ei:
        await c.publish("c", b"x")
    assert str(ei.value) == "too many channels"
    with pytest.raises(StanError) as ei:
        await c.subscribe("c")
    assert str(ei.value) == "too many channels"
    # existing channels keep working
    await c.publish("a", b"y")
    await c.publish("b", b"y")
    assert await _available(c, "a") == [1, 2]
    await c.close()


async def test_max_subscriptions_per_channel(nss_factory):
    srv = nss_factory("-msu", "3")
    c = await StanClient.connect(srv.url, "me")
    s1 = await c.subscribe("foo")
    d = await c.subscribe("foo", durable="dur")
    await d.close()  # an offline durable still counts
    await c.subscribe("foo", queue="g", durable="qd")
    with pytest.raises(StanError) as ei:
        await c.subscribe("foo")
    assert str(ei.value) == "too many subscriptions per channel"
    with pytest.raises(StanError) as ei:
        await c.subscribe("foo", queue="g", durable="qd")  # each member is a record
    assert str(ei.value) == "too many subscriptions per channel"
    # resuming the offline durable creates no new record
    d2 = await c.subscribe("foo", durable="dur")
    # other channels are not affected
    await c.subscribe("bar")
    await s1.unsubscribe()
    s4 = await c.subscribe("foo")
    await c.publish("foo", b"x")
    assert (await s4.next()).sequence == 1
    assert (await d2.next()).sequence == 1
    await c.close()


async def test_max_msgs_drops_oldest(nss_factory):
    srv = nss_factory("-mm", "5")
    c = await StanClient.connect(srv.url, "me")
    await _publish_n(c, "foo", 1, 12)
    assert await _available(c, "foo") == [8, 9, 10, 11, 12]
    await c.publish("foo", b"m13")
    assert await _available(c, "foo") == [9, 10, 11, 12, 13]
    await c.close()


async def test_max_msgs_one(nss_factory):
    srv = nss_factory("-mm", "1")
    c = await StanClient.connect(srv.url, "me")
    await _publish_n(c, "foo", 1, 3)
    assert await _available(c, "foo") == [3]
    await c.close()


def _msg_size(seq: int, channel: str, data: bytes) -> int:
    return pb.MsgProto(
        sequence=seq, subject=channel, data=data, timestamp=time.time_ns()
    ).ByteSize()


async def test_max_bytes_drops_oldest_keeps_one(nss_factory):
    size = _msg_size(1, "foo", b"x" * 40)
    srv = nss_factory("-mb", str(size * 2 + size // 2))  # room for two messages
    c = await StanClient.connect(srv.url, "me")
    await _publish_n(c, "foo", 1, 5, size=40)
    assert await _available(c, "foo") == [4, 5]
    # a message bigger than the limit replaces everything but is kept
    await c.publish("foo", b"y" * (size * 4))
    assert await _available(c, "foo") == [6]
    await c.publish("foo", b"small")
    assert await _available(c, "foo") == [7]
    await c.close()


async def test_max_bytes_with_size_suffix(nss_factory):
    srv = nss_factory("-mb", "1KB")
    c = await StanClient.connect(srv.url, "me")
    await _publish_n(c, "foo", 1, 10, size=200)
    # 1KB = 1024 bytes: four messages of ~220 bytes fit
    avail = await _available(c, "foo")
    size = _msg_size(10, "foo", b"x" * 200)
    assert avail == list(range(11 - 1024 // size, 11))
    await c.close()


async def test_max_age_expires_messages(nss_factory):
    srv = nss_factory("-ma", "400ms")
    c = await StanClient.connect(srv.url, "me")
    await _publish_n(c, "foo", 1, 2)
    await asyncio.sleep(0.2)  # a gap between the two batches (setup, not a wait)
    await _publish_n(c, "foo", 3, 3)
    t0 = time.monotonic()

    async def old_ones_gone() -> list[int] | None:
        avail = await _available(c, "foo", within=0.02)
        return avail if avail and avail[0] > 2 else None

    avail = await eventually(old_ones_gone, timeout=5)
    # 1 and 2 expired, 3 (200ms younger) may or may not be gone too
    assert avail in ([3], [])
    assert time.monotonic() - t0 < 3

    async def all_gone() -> bool:
        return await _available(c, "foo", within=0.02) == []

    await eventually(all_gone, timeout=5)
    # sequences continue after everything expired
    await c.publish("foo", b"m4")
    assert await _available(c, "foo") == [4]
    await c.close()


async def test_max_age_live_subscriber_unaffected(nss_factory):
    srv = nss_factory("-ma", "300ms")
    c = await StanClient.connect(srv.url, "me")
    sub = await c.subscribe("foo")
    await _publish_n(c, "foo", 1, 3)
    assert [m.sequence for m in await sub.take(3)] == [1, 2, 3]

    async def all_gone() -> bool:
        return await _available(c, "foo", within=0.02) == []

    await eventually(all_gone, timeout=5)
    await c.publish("foo", b"m4")
    assert (await sub.next()).sequence == 4
    await c.close()


async def test_expired_pending_message_is_not_redelivered(nss_factory):
    srv = nss_factory("-ma", "300ms")
    c = await StanClient.connect(srv.url, "me")
    sub = await c.subscribe("foo", manual_acks=True, ack_wait=1)
    await c.publish("foo", b"x")
    await sub.next()
    # it expires before its AckWait: implicitly acked, never redelivered
    await sub.expect_nothing(1.5)
    await c.close()


async def _deleted(srv, name: str, timeout: float = 5.0) -> None:
    """Wait for the server to report the channel's deletion. (Polling with
    subscriptions would keep the channel alive: each one restarts the timer.)"""
    await asyncio.to_thread(srv.wait_for_line, f'Channel "{name}" has been deleted', timeout)


@pytest.mark.parametrize("flag", ["-mi", "--max_inactivity"])
async def test_max_inactivity_deletes_idle_channel(nss_factory, flag):
    srv = nss_factory(flag, "300ms")
    c = await StanClient.connect(srv.url, "me")
    t0 = time.monotonic()
    await _publish_n(c, "idle", 1, 3)
    await _publish_n(c, "busy", 1, 3)
    await _publish_n(c, "offline", 1, 3)
    live = await c.subscribe("busy")
    d = await c.subscribe("offline", durable="dur")
    await d.close()  # an offline durable is not an active subscription
    await _deleted(srv, "idle")
    await _deleted(srv, "offline")
    assert time.monotonic() - t0 >= 0.3
    # recreated from scratch: sequences restart at 1
    assert await _available(c, "idle") == []
    await c.publish("idle", b"new")
    assert await _available(c, "idle") == [1]
    # the durable went away with its channel: a new one applies its start position
    d2 = await c.subscribe("offline", durable="dur", start=pb.First)
    await c.publish("offline", b"new")
    assert (await d2.next()).sequence == 1
    # the channel with a subscription is still there
    assert 'Channel "busy" has been deleted' not in srv.log_text()
    assert await _available(c, "busy") == [1, 2, 3]
    await live.expect_nothing(0.01)
    await c.close()


async def test_max_inactivity_timer_restarts_when_last_sub_leaves(nss_factory):
    srv = nss_factory("-mi", "300ms")
    c = await StanClient.connect(srv.url, "me")
    await _publish_n(c, "foo", 1, 2)
    sub = await c.subscribe("foo")
    # held well beyond the inactivity period by the subscription
    await sub.expect_nothing(0.6)
    assert 'Channel "foo" has been deleted' not in srv.log_text()
    assert await _available(c, "foo") == [1, 2]
    await sub.unsubscribe()
    await _deleted(srv, "foo")
    assert await _available(c, "foo") == []
    await c.close()


async def test_max_inactivity_publishing_keeps_channel(nss_factory):
    srv = nss_factory("-mi", "400ms")
    c = await StanClient.connect(srv.url, "me")
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 1.0:  # publish every 100ms for a second
        i += 1
        await c.publish("foo", b"%d" % i)
        await asyncio.sleep(0.1)
    assert 'Channel "foo" has been deleted' not in srv.log_text()
    assert await _available(c, "foo") == list(range(1, i + 1))
    await c.close()


async def test_pending_message_dropped_by_limit_is_not_redelivered(nss_factory):
    srv = nss_factory("-mm", "2")
    c = await StanClient.connect(srv.url, "me")
    sub = await c.subscribe("foo", manual_acks=True, ack_wait=1)
    await _publish_n(c, "foo", 1, 3)  # message 1 is dropped
    assert [m.sequence for m in await sub.take(3)] == [1, 2, 3]
    red = await sub.take(2, timeout=3)
    assert [(m.sequence, m.redelivered) for m in red] == [(2, True), (3, True)]
    for m in red:
        await sub.ack(m)
    await sub.expect_nothing(1.2)
    await c.close()

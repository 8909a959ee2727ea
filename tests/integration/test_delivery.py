"""Delivery, acks, MaxInFlight and AckWait redelivery (protocol.md §8)."""

from __future__ import annotations

import asyncio
import time

from stanclient import StanClient

from nss.pb import protocol_pb2 as pb


async def _publish_n(c: StanClient, channel: str, n: int) -> None:
    for i in range(1, n + 1):
        await c.publish(channel, b"m%d" % i)


async def test_unacked_message_is_redelivered_with_count(nss):
    c = await StanClient.connect(nss.url, "me")
    sub = await c.subscribe("foo", manual_acks=True, ack_wait=1)
    await c.publish("foo", b"x")
    m = await sub.next()
    t0 = time.monotonic()
    assert (m.sequence, m.redelivered, m.redeliveryCount) == (1, False, 0)
    r1 = await sub.next(3)
    assert time.monotonic() - t0 >= 0.8  # not before AckWait
    assert (r1.sequence, r1.redelivered, r1.redeliveryCount) == (1, True, 1)
    assert (r1.data, r1.timestamp, r1.subject) == (m.data, m.timestamp, m.subject)
    r2 = await sub.next(3)
    assert (r2.sequence, r2.redelivered, r2.redeliveryCount) == (1, True, 2)
    await sub.ack(r2)
    await sub.expect_nothing(1.3)
    await c.close()


async def test_only_unacked_messages_are_redelivered_in_order(nss):
    c = await StanClient.connect(nss.url, "me")
    sub = await c.subscribe("foo", manual_acks=True, ack_wait=1)
    await _publish_n(c, "foo", 5)
    msgs = await sub.take(5)
    for m in msgs:
        if m.sequence in (2, 4):
            await sub.ack(m)
    red = await sub.take(3, timeout=3)
    assert [m.sequence for m in red] == [1, 3, 5]
    assert all(m.redelivered and m.redeliveryCount == 1 for m in red)
    for m in red:
        await sub.ack(m)
    await sub.expect_nothing(1.3)
    await c.close()


async def test_auto_acked_messages_are_not_redelivered(nss):
    c = await StanClient.connect(nss.url, "me")
    sub = await c.subscribe("foo", ack_wait=1)
    await _publish_n(c, "foo", 3)
    assert [m.sequence for m in await sub.take(3)] == [1, 2, 3]
    await sub.expect_nothing(1.3)
    await c.close()


async def test_acks_are_idempotent_and_unknown_sequences_ignored(nss):
    c = await StanClient.connect(nss.url, "me")
    sub = await c.subscribe("foo", manual_acks=True, ack_wait=1, max_inflight=2)
    await _publish_n(c, "foo", 3)
    m1, m2 = await sub.take(2)
    # an ack for a sequence never sent, and a duplicate ack
    await sub.ack(pb.MsgProto(sequence=99))
    await sub.ack(m1)
    await sub.ack(m1)
    m3 = await sub.next()
    assert m3.sequence == 3
    await sub.ack(m2)
    await sub.ack(m3)
    await sub.expect_nothing(1.3)
    await c.close()


async def test_ack_with_wrong_channel_is_ignored(nss):
    c = await StanClient.connect(nss.url, "me")
    sub = await c.subscribe("foo", manual_acks=True, ack_wait=1)
    await c.subscribe("bar")
    await c.publish("foo", b"x")
    m = await sub.next()
    # right ack inbox, but Ack.subject names another channel
    await c.nc.publish(
        sub.ack_inbox, pb.Ack(subject="bar", sequence=m.sequence).SerializeToString()
    )
    await c.nc.publish(
        sub.ack_inbox, pb.Ack(subject="nope", sequence=m.sequence).SerializeToString()
    )
    r = await sub.next(3)
    assert (r.sequence, r.redelivered) == (1, True)
    await sub.ack(r)
    await c.close()


async def test_max_inflight_stall_and_resume(nss):
    c = await StanClient.connect(nss.url, "me")
    sub = await c.subscribe("foo", manual_acks=True, max_inflight=2)
    await _publish_n(c, "foo", 6)
    m1, m2 = await sub.take(2)
    assert (m1.sequence, m2.sequence) == (1, 2)
    await sub.expect_nothing(0.2)
    await sub.ack(m2)
    m3 = await sub.next()
    assert m3.sequence == 3
    await sub.expect_nothing(0.2)
    await sub.ack(m1)
    await sub.ack(m3)
    m4, m5 = await sub.take(2)
    assert (m4.sequence, m5.sequence) == (4, 5)
    await sub.expect_nothing(0.2)
    # a live message is held back too while stalled
    await c.publish("foo", b"m7")
    await sub.expect_nothing(0.2)
    await sub.ack(m4)
    await sub.ack(m5)
    assert [m.sequence for m in await sub.take(2)] == [6, 7]
    await c.close()


async def test_max_inflight_one(nss):
    c = await StanClient.connect(nss.url, "me")
    sub = await c.subscribe("foo", manual_acks=True, max_inflight=1)
    await _publish_n(c, "foo", 3)
    for seq in (1, 2, 3):
        m = await sub.next()
        assert m.sequence == seq
        await sub.expect_nothing(0.1)
        await sub.ack(m)
    await c.close()


async def test_redelivery_ignores_max_inflight(nss):
    c = await StanClient.connect(nss.url, "me")
    sub = await c.subscribe("foo", manual_acks=True, max_inflight=2, ack_wait=1)
    await _publish_n(c, "foo", 4)
    m1, m2 = await sub.take(2)
    # both are redelivered even though the sub is stalled, and nothing new
    red = await sub.take(2, timeout=3)
    assert [(m.sequence, m.redelivered) for m in red] == [(1, True), (2, True)]
    await sub.ack(m1)
    m3 = await sub.next()
    assert (m3.sequence, m3.redelivered) == (3, False)
    await sub.ack(m2)
    await sub.ack(m3)
    m4 = await sub.next()
    assert m4.sequence == 4
    await sub.ack(m4)
    await c.close()


async def test_redelivery_count_is_per_sequence(nss):
    c = await StanClient.connect(nss.url, "me")
    sub = await c.subscribe("foo", manual_acks=True, ack_wait=1)
    await c.publish("foo", b"a")
    await sub.next()
    r = await sub.next(3)
    assert (r.sequence, r.redeliveryCount) == (1, 1)
    await c.publish("foo", b"b")
    m2 = await sub.next()
    assert (m2.sequence, m2.redelivered, m2.redeliveryCount) == (2, False, 0)
    red = await sub.take(2, timeout=3)
    counts = {m.sequence: m.redeliveryCount for m in red}
    assert counts[1] == 2
    # message 2 was sent later: its deadline may fall in the next round
    if 2 in counts:
        assert counts[2] == 1
    await sub.ack(r)
    await sub.ack(m2)
    await c.close()


async def test_plain_subscribers_are_independent(nss):
    c = await StanClient.connect(nss.url, "me")
    slow = await c.subscribe("foo", manual_acks=True, max_inflight=1)
    fast = await c.subscribe("foo")
    await _publish_n(c, "foo", 5)
    assert [m.sequence for m in await fast.take(5)] == [1, 2, 3, 4, 5]
    m = await slow.next()
    assert m.sequence == 1
    await slow.expect_nothing(0.1)
    await c.close()


async def test_ack_from_another_connection_counts(nss):
    """Acks are matched by ack inbox, not by the NATS connection they come from."""
    c = await StanClient.connect(nss.url, "me")
    other = await StanClient.connect(nss.url, "other")
    sub = await c.subscribe("foo", manual_acks=True, max_inflight=1, ack_wait=1)
    await _publish_n(c, "foo", 2)
    m1 = await sub.next()
    await other.nc.publish(sub.ack_inbox, pb.Ack(subject="foo", sequence=1).SerializeToString())
    m2 = await sub.next()
    assert (m1.sequence, m2.sequence, m2.redelivered) == (1, 2, False)
    await sub.ack(m2)
    await other.close()
    await c.close()


async def test_redelivery_timer_follows_each_deadline(nss):
    """The ack timer re-arms for the next pending deadline, not a whole AckWait."""
    c = await StanClient.connect(nss.url, "me")
    sub = await c.subscribe("foo", manual_acks=True, ack_wait=1)
    await c.publish("foo", b"1")
    m1 = await sub.next()
    t1 = time.monotonic()
    await sub.expect_nothing(0.3)  # spread the two deadlines (setup)
    await c.publish("foo", b"2")
    m2 = await sub.next()
    t2 = time.monotonic()
    r1 = await sub.next(3)
    tr1 = time.monotonic()
    r2 = await sub.next(3)
    tr2 = time.monotonic()
    assert (r1.sequence, r2.sequence) == (m1.sequence, m2.sequence) == (1, 2)
    assert 0.85 <= tr1 - t1 <= 1.6
    # re-armed for message 2's own deadline: not a whole AckWait after r1
    # (which would make this about 1.7s)
    assert 0.85 <= tr2 - t2 <= 1.45
    await sub.ack(r1)
    await sub.ack(r2)
    await c.close()


async def test_large_backlog_with_small_max_inflight(nss):
    c = await StanClient.connect(nss.url, "me")
    n = 3000
    errs = await asyncio.gather(*(c.publish_async("foo", b"%d" % i) for i in range(n)))
    assert set(errs) == {""}
    sub = await c.subscribe("foo", start=pb.First, max_inflight=50)
    msgs = await sub.take(n, timeout=10)
    assert [m.sequence for m in msgs] == list(range(1, n + 1))
    assert not any(m.redelivered for m in msgs)
    await sub.expect_nothing(0.2)
    await c.close()


async def test_extreme_ack_wait_and_max_inflight(nss):
    c = await StanClient.connect(nss.url, "me")
    sub = await c.subscribe(
        "foo", manual_acks=True, ack_wait=2**31 - 1, max_inflight=2**31 - 1
    )
    await c.publish("foo", b"x")
    m = await sub.next()
    assert (m.sequence, m.redelivered) == (1, False)
    await sub.ack(m)
    await c.publish("foo", b"y")
    assert (await sub.next()).sequence == 2
    await c.close()

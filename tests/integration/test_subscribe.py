"""Subscriptions and their start positions (protocol.md §7, §7.1)."""

from __future__ import annotations

import asyncio
import time

from rawproto import SUB, raw_connect
from stanclient import StanClient

from nss.pb import protocol_pb2 as pb

SEC = 1_000_000_000


async def _publish_n(c: StanClient, channel: str, n: int, start: int = 1) -> None:
    for i in range(start, start + n):
        await c.publish(channel, b"m%d" % i)


async def _seqs(sub, n: int) -> list[int]:
    return [m.sequence for m in await sub.take(n)]


# ---------------------------------------------------------------- NewOnly


async def test_new_only_empty_channel(nss):
    c = await StanClient.connect(nss.url, "me")
    sub = await c.subscribe("foo", start=pb.NewOnly)
    await sub.expect_nothing(0.1)
    await c.publish("foo", b"x")
    assert await _seqs(sub, 1) == [1]
    await c.close()


async def test_new_only_skips_existing(nss):
    c = await StanClient.connect(nss.url, "me")
    await _publish_n(c, "foo", 3)
    sub = await c.subscribe("foo", start=pb.NewOnly)
    await sub.expect_nothing(0.2)
    await c.publish("foo", b"m4")
    m = await sub.next()
    assert (m.sequence, m.data) == (4, b"m4")
    await c.close()


# ---------------------------------------------------------------- LastReceived


async def test_last_received_empty_channel(nss):
    c = await StanClient.connect(nss.url, "me")
    sub = await c.subscribe("foo", start=pb.LastReceived)
    await sub.expect_nothing(0.1)
    await c.publish("foo", b"x")
    assert await _seqs(sub, 1) == [1]
    await c.close()


async def test_last_received_gets_last_then_new(nss):
    c = await StanClient.connect(nss.url, "me")
    await _publish_n(c, "foo", 3)
    sub = await c.subscribe("foo", start=pb.LastReceived)
    m = await sub.next()
    assert (m.sequence, m.data) == (3, b"m3")
    await sub.expect_nothing(0.2)
    await c.publish("foo", b"m4")
    assert await _seqs(sub, 1) == [4]
    await c.close()


async def test_last_received_single_message(nss):
    c = await StanClient.connect(nss.url, "me")
    await c.publish("foo", b"only")
    sub = await c.subscribe("foo", start=pb.LastReceived)
    assert await _seqs(sub, 1) == [1]
    await c.close()


# ---------------------------------------------------------------- TimeDeltaStart


async def test_time_delta_start_between_messages(nss):
    c = await StanClient.connect(nss.url, "me")
    await _publish_n(c, "foo", 2)
    await asyncio.sleep(0.3)  # a time gap between message 2 and 3 (setup, not a wait)
    await c.publish("foo", b"m3")
    await c.publish("foo", b"m4")
    probe = await c.subscribe("foo", start=pb.First)
    ts = [m.timestamp for m in await probe.take(4)]
    assert ts[2] - ts[1] >= 0.25 * SEC
    await probe.unsubscribe()
    # a start time 150ms before message 3 (well after message 2)
    delta = time.time_ns() - (ts[2] - SEC * 15 // 100)
    sub = await c.subscribe("foo", start=pb.TimeDeltaStart, start_time_delta_ns=delta)
    assert await _seqs(sub, 2) == [3, 4]
    await sub.expect_nothing(0.1)
    await c.close()


async def test_time_delta_start_before_everything(nss):
    c = await StanClient.connect(nss.url, "me")
    await _publish_n(c, "foo", 3)
    sub = await c.subscribe("foo", start=pb.TimeDeltaStart, start_time_delta_ns=3600 * SEC)
    assert await _seqs(sub, 3) == [1, 2, 3]
    await c.close()


async def test_time_delta_start_after_last_is_new_only(nss):
    c = await StanClient.connect(nss.url, "me")
    await _publish_n(c, "foo", 3)
    # delta 0 => start time is "now", after the last message
    sub = await c.subscribe("foo", start=pb.TimeDeltaStart, start_time_delta_ns=0)
    # negative delta => start time in the future
    sub2 = await c.subscribe("foo", start=pb.TimeDeltaStart, start_time_delta_ns=-3600 * SEC)
    await sub.expect_nothing(0.2)
    await sub2.expect_nothing(0.01)
    await c.publish("foo", b"m4")
    assert await _seqs(sub, 1) == [4]
    assert await _seqs(sub2, 1) == [4]
    await c.close()


async def test_time_delta_start_empty_channel(nss):
    c = await StanClient.connect(nss.url, "me")
    sub = await c.subscribe("foo", start=pb.TimeDeltaStart, start_time_delta_ns=SEC)
    await sub.expect_nothing(0.1)
    await c.publish("foo", b"x")
    assert await _seqs(sub, 1) == [1]
    await c.close()


# ---------------------------------------------------------------- SequenceStart


async def test_sequence_start_in_range(nss):
    c = await StanClient.connect(nss.url, "me")
    await _publish_n(c, "foo", 5)
    sub = await c.subscribe("foo", start=pb.SequenceStart, start_sequence=3)
    assert await _seqs(sub, 3) == [3, 4, 5]
    await sub.expect_nothing(0.1)
    s1 = await c.subscribe("foo", start=pb.SequenceStart, start_sequence=1)
    assert await _seqs(s1, 5) == [1, 2, 3, 4, 5]
    s5 = await c.subscribe("foo", start=pb.SequenceStart, start_sequence=5)
    assert await _seqs(s5, 1) == [5]
    await c.close()


async def test_sequence_start_zero_is_first(nss):
    c = await StanClient.connect(nss.url, "me")
    await _publish_n(c, "foo", 3)
    sub = await c.subscribe("foo", start=pb.SequenceStart, start_sequence=0)
    assert await _seqs(sub, 3) == [1, 2, 3]
    await c.close()


async def test_sequence_start_beyond_last_is_new_only(nss):
    c = await StanClient.connect(nss.url, "me")
    await _publish_n(c, "foo", 3)
    sub = await c.subscribe("foo", start=pb.SequenceStart, start_sequence=100)
    await sub.expect_nothing(0.2)
    await c.publish("foo", b"m4")
    # new-only: the next message is 4, not 100
    assert await _seqs(sub, 1) == [4]
    await c.close()


async def test_sequence_start_empty_channel(nss):
    c = await StanClient.connect(nss.url, "me")
    sub = await c.subscribe("foo", start=pb.SequenceStart, start_sequence=5)
    await sub.expect_nothing(0.1)
    await c.publish("foo", b"x")
    # lastSent = last = 0: message 1 is delivered
    assert await _seqs(sub, 1) == [1]
    await c.close()


async def test_sequence_start_before_first_available(nss_factory):
    srv = nss_factory("-mm", "3")
    c = await StanClient.connect(srv.url, "me")
    await _publish_n(c, "foo", 6)  # 1..3 dropped, first = 4
    sub = await c.subscribe("foo", start=pb.SequenceStart, start_sequence=2)
    assert await _seqs(sub, 3) == [4, 5, 6]
    sub2 = await c.subscribe("foo", start=pb.SequenceStart, start_sequence=5)
    assert await _seqs(sub2, 2) == [5, 6]
    await c.close()


# ---------------------------------------------------------------- First


async def test_first_empty_channel(nss):
    c = await StanClient.connect(nss.url, "me")
    sub = await c.subscribe("foo", start=pb.First)
    await sub.expect_nothing(0.1)
    await c.publish("foo", b"x")
    assert await _seqs(sub, 1) == [1]
    await c.close()


async def test_first_gets_everything(nss):
    c = await StanClient.connect(nss.url, "me")
    await _publish_n(c, "foo", 4)
    sub = await c.subscribe("foo", start=pb.First)
    msgs = await sub.take(4)
    assert [(m.sequence, m.data) for m in msgs] == [(i, b"m%d" % i) for i in range(1, 5)]
    await c.publish("foo", b"m5")
    assert await _seqs(sub, 1) == [5]
    await c.close()


async def test_first_after_limit_drop(nss_factory):
    srv = nss_factory("-mm", "2")
    c = await StanClient.connect(srv.url, "me")
    await _publish_n(c, "foo", 5)
    sub = await c.subscribe("foo", start=pb.First)
    assert await _seqs(sub, 2) == [4, 5]
    await c.close()


# ---------------------------------------------------------------- all expired


async def test_start_positions_after_all_messages_expired(nss_factory):
    """After every message expired, first = last + 1 (protocol.md §7.1)."""
    srv = nss_factory("-ma", "300ms")
    c = await StanClient.connect(srv.url, "me")
    await _publish_n(c, "foo", 3)

    async def all_gone() -> bool:
        s = await c.subscribe("foo", start=pb.First)
        try:
            await s.next(0.05)
            return False
        except TimeoutError:
            return True
        finally:
            await s.unsubscribe()

    deadline = time.monotonic() + 5
    while not await all_gone():
        assert time.monotonic() < deadline, "messages did not expire"
    subs = [
        await c.subscribe("foo", start=pb.First),
        await c.subscribe("foo", start=pb.LastReceived),
        await c.subscribe("foo", start=pb.NewOnly),
        await c.subscribe("foo", start=pb.SequenceStart, start_sequence=1),
        await c.subscribe("foo", start=pb.SequenceStart, start_sequence=2),
        await c.subscribe("foo", start=pb.TimeDeltaStart, start_time_delta_ns=3600 * SEC),
    ]
    for s in subs:
        await s.expect_nothing(0.02)
    await c.publish("foo", b"m4")
    for s in subs:
        m = await s.next()
        assert (m.sequence, m.data) == (4, b"m4")
    await c.close()


# ---------------------------------------------------------------- misc


async def test_ack_inbox_is_server_generated_and_unique(nss):
    c = await StanClient.connect(nss.url, "me")
    s1 = await c.subscribe("foo")
    s2 = await c.subscribe("foo")
    s3 = await c.subscribe("bar")
    inboxes = {s1.ack_inbox, s2.ack_inbox, s3.ack_inbox}
    assert len(inboxes) == 3
    assert all(i.startswith("_INBOX.") and len(i) == len("_INBOX.") + 22 for i in inboxes)
    await c.close()


async def test_subscription_response_precedes_first_message(nss):
    c = await StanClient.connect(nss.url, "me")
    await _publish_n(c, "foo", 5)
    nc = await raw_connect(nss.url)
    try:
        # one NATS subscription receives both the response and the messages,
        # so their arrival order is observable
        base = nc.new_inbox()
        s = await nc.subscribe(base + ".>")
        req = pb.SubscriptionRequest(
            clientID="me",
            subject="foo",
            inbox=base + ".data",
            maxInFlight=100,
            ackWaitInSecs=30,
            startPosition=pb.First,
        )
        await nc.publish(SUB, req.SerializeToString(), reply=base + ".resp")
        first = await s.next_msg(timeout=2)
        assert first.subject == base + ".resp"
        resp = pb.SubscriptionResponse.FromString(first.data)
        assert resp.error == "" and resp.ackInbox
        for i in range(1, 6):
            m = await s.next_msg(timeout=2)
            assert m.subject == base + ".data"
            assert pb.MsgProto.FromString(m.data).sequence == i
    finally:
        await nc.close()
        await c.close()


async def test_many_subscribers_each_get_everything(nss):
    c = await StanClient.connect(nss.url, "me")
    subs = [await c.subscribe("foo") for _ in range(5)]
    await _publish_n(c, "foo", 10)
    for s in subs:
        assert await _seqs(s, 10) == list(range(1, 11))
    await c.close()


async def test_start_position_ignored_when_joining_existing_queue_group(nss):
    c = await StanClient.connect(nss.url, "me")
    await _publish_n(c, "foo", 3)
    q1 = await c.subscribe("foo", queue="g", start=pb.First)
    assert await _seqs(q1, 3) == [1, 2, 3]
    # the group's position is used; First is ignored
    q2 = await c.subscribe("foo", queue="g", start=pb.First)
    await q2.expect_nothing(0.2)
    await c.close()

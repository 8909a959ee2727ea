"""Queue groups, plain and durable (protocol.md §8.4, §9.2, §9.3)."""

from __future__ import annotations

import time

import pytest
from stanclient import StanClient, StanError, wait_for

from nss.pb import protocol_pb2 as pb

COLON = "stan: durable name of a durable queue subscriber can't contain the character ':'"


async def _publish_n(c: StanClient, channel: str, first: int, last: int) -> None:
    for i in range(first, last + 1):
        await c.publish(channel, b"m%d" % i)


async def _seqs(sub, n: int) -> list[int]:
    return [m.sequence for m in await sub.take(n)]


def _drain(*subs) -> None:
    """Forget what is queued (already inspected through ``received``)."""
    for s in subs:
        while not s.queue.empty():
            s.queue.get_nowait()


async def test_queue_group_distributes(nss):
    c = await StanClient.connect(nss.url, "me")
    q1 = await c.subscribe("foo", queue="g", manual_acks=True)
    q2 = await c.subscribe("foo", queue="g", manual_acks=True)
    await _publish_n(c, "foo", 1, 10)
    await wait_for(lambda: len(q1.received) + len(q2.received) == 10)
    s1 = [m.sequence for m in q1.received]
    s2 = [m.sequence for m in q2.received]
    # fewest pending wins: equal loads alternate
    assert sorted(s1 + s2) == list(range(1, 11))
    assert len(s1) == 5 and len(s2) == 5
    assert s1 == sorted(s1) and s2 == sorted(s2)
    _drain(q1, q2)
    await q1.expect_nothing(0.1)
    await q2.expect_nothing(0.01)
    await c.close()


async def test_each_group_and_plain_sub_gets_everything(nss):
    c = await StanClient.connect(nss.url, "me")
    a1 = await c.subscribe("foo", queue="a")
    a2 = await c.subscribe("foo", queue="a")
    b1 = await c.subscribe("foo", queue="b")
    # a durable group and a plain group with the same qGroup are different groups
    da = await c.subscribe("foo", queue="a", durable="d")
    plain = await c.subscribe("foo")
    await _publish_n(c, "foo", 1, 6)
    assert await _seqs(b1, 6) == list(range(1, 7))
    assert await _seqs(da, 6) == list(range(1, 7))
    assert await _seqs(plain, 6) == list(range(1, 7))
    await wait_for(lambda: len(a1.received) + len(a2.received) == 6)
    assert sorted(m.sequence for m in a1.received + a2.received) == list(range(1, 7))
    await c.close()


async def test_member_leaving_transfers_pending(nss):
    for leave in ("close", "unsubscribe"):
        c = await StanClient.connect(nss.url, "me-" + leave)
        ch = "foo-" + leave
        q1 = await c.subscribe(ch, queue="g", manual_acks=True)
        q2 = await c.subscribe(ch, queue="g", manual_acks=True)
        await _publish_n(c, ch, 1, 4)
        await wait_for(lambda q1=q1, q2=q2: len(q1.received) + len(q2.received) == 4)
        q1_seqs = [m.sequence for m in q1.received]
        q2_seqs = [m.sequence for m in q2.received]
        assert q1_seqs and q2_seqs
        for _ in q2_seqs:
            await q2.next()
        t0 = time.monotonic()
        await getattr(q1, leave)()
        # q1's unacked messages go to q2 at once (AckWait is 30s)
        red = await q2.take(len(q1_seqs), timeout=3)
        assert time.monotonic() - t0 < 2
        assert sorted(m.sequence for m in red) == q1_seqs
        assert all(m.redelivered for m in red)
        for m in list(q2.received):
            await q2.ack(m)
        # the group goes on with q2 alone
        await _publish_n(c, ch, 5, 5)
        m5 = await q2.next()
        assert (m5.sequence, m5.redelivered) == (5, False)
        await c.close()


async def test_connection_close_of_member_transfers_pending(nss):
    a = await StanClient.connect(nss.url, "a")
    b = await StanClient.connect(nss.url, "b")
    qa = await a.subscribe("foo", queue="g", manual_acks=True, max_inflight=1)
    qb = await b.subscribe("foo", queue="g", manual_acks=True, max_inflight=1)
    await _publish_n(a, "foo", 1, 2)
    ma = await qa.next()
    mb = await qb.next()
    assert {ma.sequence, mb.sequence} == {1, 2}
    await a.close()
    r = await qb.next(3)
    assert (r.sequence, r.redelivered) == (ma.sequence, True)
    await b.close()


async def test_max_inflight_per_member(nss):
    c = await StanClient.connect(nss.url, "me")
    q1 = await c.subscribe("foo", queue="g", manual_acks=True, max_inflight=1)
    q2 = await c.subscribe("foo", queue="g", manual_acks=True, max_inflight=2)
    await _publish_n(c, "foo", 1, 6)
    await wait_for(lambda: len(q1.received) + len(q2.received) == 3)
    assert len(q1.received) == 1 and len(q2.received) == 2
    _drain(q1, q2)
    await q1.expect_nothing(0.2)
    # q1 acks: it takes the next message
    await q1.ack(q1.received[0])
    await wait_for(lambda: len(q1.received) == 2)
    assert q1.received[1].sequence == 4
    assert len(q2.received) == 2
    await c.close()


async def test_ack_on_other_members_inbox(nss):
    """An ack for a sequence pending on another member of the group is accepted."""
    c = await StanClient.connect(nss.url, "me")
    q1 = await c.subscribe("foo", queue="g", manual_acks=True, ack_wait=1)
    q2 = await c.subscribe("foo", queue="g", manual_acks=True, ack_wait=1)
    await _publish_n(c, "foo", 1, 2)
    await wait_for(lambda: len(q1.received) == 1 and len(q2.received) == 1)
    m1 = q1.received[0]
    m2 = q2.received[0]
    _drain(q1, q2)
    await q2.ack(m1)
    await q1.ack(m2)
    await q1.expect_nothing(1.3)
    await q2.expect_nothing(0.01)
    await c.close()


async def test_queue_redelivery(nss):
    c = await StanClient.connect(nss.url, "me")
    q = await c.subscribe("foo", queue="g", manual_acks=True, ack_wait=1)
    await c.publish("foo", b"x")
    m = await q.next()
    r = await q.next(3)
    assert (r.sequence, r.redelivered, r.redeliveryCount) == (m.sequence, True, 1)
    r2 = await q.next(3)
    assert r2.redeliveryCount == 2
    await q.ack(r2)
    await q.expect_nothing(1.3)
    await c.close()


async def test_non_durable_group_disappears_with_last_member(nss):
    c = await StanClient.connect(nss.url, "me")
    await _publish_n(c, "foo", 1, 3)
    q = await c.subscribe("foo", queue="g", start=pb.First)
    assert await _seqs(q, 3) == [1, 2, 3]
    await q.close()
    # a new group: the start position applies again
    q2 = await c.subscribe("foo", queue="g", start=pb.First)
    assert await _seqs(q2, 3) == [1, 2, 3]
    await c.close()


async def test_durable_group_last_member_close_keeps_shadow(nss):
    c = await StanClient.connect(nss.url, "me")
    await _publish_n(c, "foo", 1, 3)
    q = await c.subscribe("foo", queue="g", durable="dur", start=pb.First, manual_acks=True)
    got = await q.take(3)
    await q.ack(got[0])
    await q.ack(got[2])  # 2 stays pending
    await q.close()
    await _publish_n(c, "foo", 4, 5)
    # rejoin: the shadow's pending first, then the group's position; First ignored
    q2 = await c.subscribe("foo", queue="g", durable="dur", start=pb.First, manual_acks=True)
    got = await q2.take(3)
    assert [(m.sequence, m.redelivered) for m in got] == [(2, True), (4, False), (5, False)]
    for m in got:
        await q2.ack(m)
    # a second member starts at the group position: nothing old
    q3 = await c.subscribe("foo", queue="g", durable="dur", start=pb.First)
    await q3.expect_nothing(0.2)
    await q2.expect_nothing(0.01)
    await c.close()


async def test_durable_group_survives_connection_close(nss):
    a = await StanClient.connect(nss.url, "a")
    q = await a.subscribe("foo", queue="g", durable="dur")
    await _publish_n(a, "foo", 1, 2)
    assert await _seqs(q, 2) == [1, 2]
    await a.close()
    p = await StanClient.connect(nss.url, "p")
    await _publish_n(p, "foo", 3, 4)
    # any client can rejoin a durable queue group
    b = await StanClient.connect(nss.url, "b")
    qb = await b.subscribe("foo", queue="g", durable="dur", start=pb.First)
    assert await _seqs(qb, 2) == [3, 4]
    await b.close()
    await p.close()


async def test_durable_group_last_member_unsubscribe_destroys(nss):
    c = await StanClient.connect(nss.url, "me")
    await _publish_n(c, "foo", 1, 3)
    q = await c.subscribe("foo", queue="g", durable="dur", start=pb.First)
    assert await _seqs(q, 3) == [1, 2, 3]
    await q.unsubscribe()
    q2 = await c.subscribe("foo", queue="g", durable="dur", start=pb.First)
    assert await _seqs(q2, 3) == [1, 2, 3]
    await c.close()


async def test_durable_group_non_last_member_leaves(nss):
    c = await StanClient.connect(nss.url, "me")
    q1 = await c.subscribe("foo", queue="g", durable="dur")
    q2 = await c.subscribe("foo", queue="g", durable="dur")
    await q1.unsubscribe()  # not the last: the group lives on
    await _publish_n(c, "foo", 1, 2)
    assert await _seqs(q2, 2) == [1, 2]
    await q2.close()  # last one closes: shadow kept
    await _publish_n(c, "foo", 3, 3)
    q3 = await c.subscribe("foo", queue="g", durable="dur", start=pb.First)
    assert await _seqs(q3, 1) == [3]
    await c.close()


async def test_durable_queue_name_with_colon(nss):
    c = await StanClient.connect(nss.url, "me")
    with pytest.raises(StanError) as ei:
        await c.subscribe("foo", queue="g", durable="a:b")
    assert str(ei.value) == COLON
    # ':' is fine in the queue name and in a non-queue durable name
    await c.subscribe("foo", queue="g:h", durable="ab")
    await c.subscribe("foo", durable="a:b")
    await c.subscribe("foo", queue="x:y")
    await c.close()


async def test_durable_queue_colon_error_after_channel_creation(nss):
    """Go checks the ':' only after creating the channel (processSub)."""
    c = await StanClient.connect(nss.url, "me")
    with pytest.raises(StanError) as ei:
        await c.subscribe("Foo", queue="g", durable="a:b")
    assert str(ei.value) == COLON
    with pytest.raises(StanError) as ei:
        await c.publish("foo", b"x")
    assert str(ei.value) == (
        'rejecting channel "foo" because channel "Foo" alreay exists '
        "(different cases not allowed)"
    )
    await c.close()


async def test_queue_redelivery_goes_to_best_member(nss):
    """On AckWait the message goes to the member with the fewest pending; the
    original holder is implicitly acked (protocol.md §8.5)."""
    c = await StanClient.connect(nss.url, "me")
    q1 = await c.subscribe("foo", queue="g", manual_acks=True, ack_wait=1)
    q2 = await c.subscribe("foo", queue="g", manual_acks=True, ack_wait=30)
    await c.publish("foo", b"x")
    await wait_for(lambda: len(q1.received) + len(q2.received) == 1)
    assert len(q1.received) == 1  # first member, equal loads
    _drain(q1, q2)
    r = await q2.next(3)
    assert (r.sequence, r.redelivered, r.redeliveryCount) == (1, True, 1)
    await q1.expect_nothing(0.1)
    # q1 no longer holds it: nothing more comes to q1 after its AckWait
    await q2.ack(r)
    await q1.expect_nothing(1.2)
    await q2.expect_nothing(0.01)
    await c.close()


async def test_queue_redelivery_count_follows_the_group(nss):
    c = await StanClient.connect(nss.url, "me")
    q1 = await c.subscribe("foo", queue="g", manual_acks=True, ack_wait=1)
    q2 = await c.subscribe("foo", queue="g", manual_acks=True, ack_wait=1)
    await c.publish("foo", b"x")
    await wait_for(lambda: len(q1.received) + len(q2.received) == 1)
    # the message bounces between members; its count keeps growing
    await wait_for(
        lambda: len(q1.received) + len(q2.received) == 3, timeout=5
    )
    all_msgs = sorted(q1.received + q2.received, key=lambda m: m.redeliveryCount)
    assert [(m.sequence, m.redeliveryCount) for m in all_msgs] == [(1, 0), (1, 1), (1, 2)]
    last = all_msgs[-1]
    await q1.ack(last)  # either inbox acks it for the group
    _drain(q1, q2)
    await q1.expect_nothing(1.2)
    await q2.expect_nothing(0.01)
    await c.close()


async def test_durable_group_shadow_takes_group_position(nss):
    c = await StanClient.connect(nss.url, "me")
    q1 = await c.subscribe("foo", queue="g", durable="dur")
    q2 = await c.subscribe("foo", queue="g", durable="dur")
    await _publish_n(c, "foo", 1, 6)
    await wait_for(lambda: len(q1.received) + len(q2.received) == 6)
    # whoever got message 6 leaves first; the other one becomes the shadow
    first, second = (q1, q2) if q1.received[-1].sequence == 6 else (q2, q1)
    await first.unsubscribe()
    await second.close()
    await _publish_n(c, "foo", 7, 7)
    q3 = await c.subscribe("foo", queue="g", durable="dur", start=pb.First)
    assert await _seqs(q3, 1) == [7]
    await q3.expect_nothing(0.2)
    await c.close()


async def test_queue_redelivery_skips_stalled_members(nss):
    """The redelivery goes to the best member as chosen for any message: not
    stalled first, fewest pending (§8.4, §8.5). The original holder, implicitly
    acked, is no longer stalled and takes new messages again."""
    c = await StanClient.connect(nss.url, "me")
    q1 = await c.subscribe("foo", queue="g", manual_acks=True, max_inflight=1, ack_wait=1)
    q2 = await c.subscribe("foo", queue="g", manual_acks=True, max_inflight=100, ack_wait=30)
    await c.publish("foo", b"1")
    await wait_for(lambda: len(q1.received) == 1)  # first member on a tie; now stalled
    await _publish_n(c, "foo", 2, 3)
    await wait_for(lambda: len(q2.received) == 2)
    _drain(q1, q2)
    # q1 is stalled: the redelivery of 1 goes to q2 although q2 has more pending
    r = await q2.next(3)
    assert (r.sequence, r.redelivered, r.redeliveryCount) == (1, True, 1)
    await q1.expect_nothing(0.1)
    # q1 holds nothing now: it is the member with the fewest pending
    await c.publish("foo", b"4")
    m4 = await q1.next()
    assert (m4.sequence, m4.redelivered) == (4, False)
    await q2.expect_nothing(0.1)
    await c.close()



async def test_durable_group_all_members_of_a_closed_connection(nss):
    """Both members belong to one connection: on close the first one's pending
    moves to the second, which becomes the shadow with all of it."""
    a = await StanClient.connect(nss.url, "a")
    q1 = await a.subscribe("foo", queue="g", durable="dur", manual_acks=True)
    q2 = await a.subscribe("foo", queue="g", durable="dur", manual_acks=True)
    await _publish_n(a, "foo", 1, 4)
    await wait_for(lambda: len(q1.received) + len(q2.received) == 4)
    await a.close()
    b = await StanClient.connect(nss.url, "b")
    await _publish_n(b, "foo", 5, 5)
    qb = await b.subscribe("foo", queue="g", durable="dur", manual_acks=True)
    got = await qb.take(5)
    assert sorted(m.sequence for m in got[:4]) == [1, 2, 3, 4]
    assert all(m.redelivered for m in got[:4])
    assert (got[4].sequence, got[4].redelivered) == (5, False)
    await b.close()

"""Durable subscriptions (protocol.md §9.1)."""

from __future__ import annotations

import pytest
from rawproto import SUBCLOSE, UNSUB, request
from stanclient import StanClient, StanError

from nss.pb import protocol_pb2 as pb

DUP = "stan: duplicate durable registration"


async def _publish_n(c: StanClient, channel: str, first: int, last: int) -> None:
    for i in range(first, last + 1):
        await c.publish(channel, b"m%d" % i)


async def _seqs(sub, n: int) -> list[int]:
    return [m.sequence for m in await sub.take(n)]


async def test_close_keeps_durable_position(nss):
    c = await StanClient.connect(nss.url, "me")
    await _publish_n(c, "foo", 1, 3)
    d = await c.subscribe("foo", durable="dur", start=pb.First)
    assert await _seqs(d, 3) == [1, 2, 3]
    await d.close()
    await _publish_n(c, "foo", 4, 5)
    # start position is ignored on resume
    d2 = await c.subscribe("foo", durable="dur", start=pb.First)
    assert await _seqs(d2, 2) == [4, 5]
    await d2.expect_nothing(0.2)
    await c.close()


async def test_unsubscribe_removes_durable(nss):
    c = await StanClient.connect(nss.url, "me")
    await _publish_n(c, "foo", 1, 3)
    d = await c.subscribe("foo", durable="dur", start=pb.First)
    assert await _seqs(d, 3) == [1, 2, 3]
    await d.unsubscribe()
    # a brand new durable: the start position applies again
    d2 = await c.subscribe("foo", durable="dur", start=pb.First)
    assert await _seqs(d2, 3) == [1, 2, 3]
    await d2.unsubscribe()
    d3 = await c.subscribe("foo", durable="dur", start=pb.NewOnly)
    await d3.expect_nothing(0.2)
    await c.close()


async def test_connection_close_keeps_durable(nss):
    c = await StanClient.connect(nss.url, "me")
    d = await c.subscribe("foo", durable="dur")
    await _publish_n(c, "foo", 1, 2)
    assert await _seqs(d, 2) == [1, 2]
    await c.close()
    p = await StanClient.connect(nss.url, "pub")
    await _publish_n(p, "foo", 3, 4)
    c2 = await StanClient.connect(nss.url, "me")
    d2 = await c2.subscribe("foo", durable="dur", start=pb.First)
    assert await _seqs(d2, 2) == [3, 4]
    await c2.close()
    await p.close()


async def test_resume_redelivers_pending_first(nss):
    c = await StanClient.connect(nss.url, "me")
    d = await c.subscribe("foo", durable="dur", manual_acks=True)
    await _publish_n(c, "foo", 1, 3)
    msgs = await d.take(3)
    await d.ack(msgs[1])  # only 2 acked
    await d.close()
    await _publish_n(c, "foo", 4, 5)
    d2 = await c.subscribe("foo", durable="dur", manual_acks=True)
    got = await d2.take(4)
    assert [(m.sequence, m.redelivered) for m in got] == [
        (1, True),
        (3, True),
        (4, False),
        (5, False),
    ]
    assert got[0].redeliveryCount == 1 and got[1].redeliveryCount == 1
    for m in got:
        await d2.ack(m)
    await d2.close()
    d3 = await c.subscribe("foo", durable="dur", manual_acks=True)
    await d3.expect_nothing(0.3)
    await c.close()


async def test_resume_uses_new_max_inflight_and_ack_wait(nss):
    c = await StanClient.connect(nss.url, "me")
    d = await c.subscribe("foo", durable="dur", manual_acks=True, max_inflight=10)
    await _publish_n(c, "foo", 1, 3)
    await d.take(3)
    await d.close()
    await _publish_n(c, "foo", 4, 4)
    # resumed with MaxInFlight 1: pending are forced out, new ones wait
    d2 = await c.subscribe("foo", durable="dur", manual_acks=True, max_inflight=1, ack_wait=1)
    red = await d2.take(3)
    assert [(m.sequence, m.redelivered) for m in red] == [(1, True), (2, True), (3, True)]
    await d2.expect_nothing(0.2)
    for m in red:
        await d2.ack(m)
    m4 = await d2.next()
    assert (m4.sequence, m4.redelivered) == (4, False)
    # AckWait of the resumed sub is 1s
    r4 = await d2.next(3)
    assert (r4.sequence, r4.redelivered) == (4, True)
    await d2.ack(r4)
    await c.close()


async def test_duplicate_durable_registration(nss):
    c = await StanClient.connect(nss.url, "me")
    d = await c.subscribe("foo", durable="dur")
    with pytest.raises(StanError) as ei:
        await c.subscribe("foo", durable="dur")
    assert str(ei.value) == DUP
    # the original is unaffected
    await c.publish("foo", b"x")
    assert await _seqs(d, 1) == [1]
    # other names / channels are fine
    await c.subscribe("foo", durable="other")
    await c.subscribe("bar", durable="dur")
    await c.close()


async def test_durable_key_includes_client_id(nss):
    a = await StanClient.connect(nss.url, "a")
    b = await StanClient.connect(nss.url, "b")
    da = await a.subscribe("foo", durable="dur", start=pb.First)
    db = await b.subscribe("foo", durable="dur", start=pb.First)
    await _publish_n(a, "foo", 1, 2)
    assert await _seqs(da, 2) == [1, 2]
    assert await _seqs(db, 2) == [1, 2]
    await da.close()
    await _publish_n(a, "foo", 3, 3)
    assert await _seqs(db, 1) == [3]
    # b cannot take over a's offline durable: b's own is online => duplicate
    with pytest.raises(StanError) as ei:
        await b.subscribe("foo", durable="dur")
    assert str(ei.value) == DUP
    # a resumes its own, from where it left
    da2 = await a.subscribe("foo", durable="dur", start=pb.First)
    assert await _seqs(da2, 1) == [3]
    await a.close()
    await b.close()


async def test_offline_durable_not_resumable_by_other_client(nss):
    a = await StanClient.connect(nss.url, "a")
    da = await a.subscribe("foo", durable="dur")
    await _publish_n(a, "foo", 1, 2)
    await da.take(2)
    await da.close()
    b = await StanClient.connect(nss.url, "b")
    db = await b.subscribe("foo", durable="dur", start=pb.First)
    # a new durable for b: the start position applies
    assert await _seqs(db, 2) == [1, 2]
    await a.close()
    await b.close()


async def test_close_and_unsubscribe_by_delivery_inbox(nss):
    c = await StanClient.connect(nss.url, "me")
    d = await c.subscribe("foo", durable="dur")
    req = pb.UnsubscribeRequest(clientID="me", subject="foo", inbox=d.inbox)
    r = pb.SubscriptionResponse.FromString(
        await request(c.nc, SUBCLOSE, req.SerializeToString())
    )
    assert r.error == ""
    await _publish_n(c, "foo", 1, 1)
    d2 = await c.subscribe("foo", durable="dur")
    assert await _seqs(d2, 1) == [1]
    req = pb.UnsubscribeRequest(clientID="me", subject="foo", inbox=d2.inbox)
    r = pb.SubscriptionResponse.FromString(await request(c.nc, UNSUB, req.SerializeToString()))
    assert r.error == ""
    d3 = await c.subscribe("foo", durable="dur", start=pb.First)
    assert await _seqs(d3, 1) == [1]
    await c.close()


async def test_closed_durable_gets_nothing_and_old_ack_inbox_is_dead(nss):
    c = await StanClient.connect(nss.url, "me")
    d = await c.subscribe("foo", durable="dur", manual_acks=True)
    await _publish_n(c, "foo", 1, 1)
    m = await d.next()
    old_ack_inbox = d.ack_inbox
    await d.close()
    # an ack to the old ack inbox after the close is not processed
    await c.nc.publish(old_ack_inbox, pb.Ack(subject="foo", sequence=1).SerializeToString())
    await c.nc.flush()
    d2 = await c.subscribe("foo", durable="dur", manual_acks=True)
    assert d2.ack_inbox != old_ack_inbox
    r = await d2.next()
    assert (r.sequence, r.redelivered) == (m.sequence, True)
    await d2.ack(r)
    await c.close()


async def test_durable_with_replace_durable(nss_factory):
    srv = nss_factory("--replace_durable")
    c = await StanClient.connect(srv.url, "me")
    d = await c.subscribe("foo", durable="dur", manual_acks=True)
    await _publish_n(c, "foo", 1, 2)
    await d.take(2)
    # the second registration replaces the first (closed, then resumed)
    d2 = await c.subscribe("foo", durable="dur", manual_acks=True)
    red = await d2.take(2)
    assert [(m.sequence, m.redelivered) for m in red] == [(1, True), (2, True)]
    await d.expect_nothing(0.2)
    await c.close()

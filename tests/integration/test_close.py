"""Subscription close / unsubscribe and connection close (protocol.md §9.3, §9.4, §12, §14)."""

from __future__ import annotations

import asyncio

import pytest
from rawproto import CLOSE, SUBCLOSE, UNSUB, raw_connect, request
from stanclient import StanClient, StanError

from nss.pb import protocol_pb2 as pb


async def _unsub_raw(nc, nats_subject: str, **fields) -> pb.SubscriptionResponse:
    req = pb.UnsubscribeRequest(**fields)
    return pb.SubscriptionResponse.FromString(
        await request(nc, nats_subject, req.SerializeToString())
    )


async def _listen(nc, inbox: str) -> asyncio.Queue:
    """A second NATS subscription on a delivery inbox: sees what the server sends."""
    q: asyncio.Queue = asyncio.Queue()

    async def cb(msg):
        await q.put(pb.MsgProto.FromString(msg.data))

    await nc.subscribe(inbox, cb=cb)
    return q


async def _quiet(q: asyncio.Queue, within: float = 0.3) -> None:
    try:
        m = await asyncio.wait_for(q.get(), within)
    except TimeoutError:
        return
    raise AssertionError(f"server still delivers seq={m.sequence}")


@pytest.mark.parametrize("how", ["close", "unsubscribe"])
async def test_plain_sub_close_and_unsubscribe_stop_delivery(nss, how):
    c = await StanClient.connect(nss.url, "me")
    spy_nc = await raw_connect(nss.url)
    try:
        sub = await c.subscribe("foo")
        spy = await _listen(spy_nc, sub.inbox)
        await spy_nc.flush()
        await c.publish("foo", b"1")
        assert (await asyncio.wait_for(spy.get(), 2)).sequence == 1
        await getattr(sub, how)()
        await c.publish("foo", b"2")
        await _quiet(spy)
        # gone either way: a second removal does not find it
        for subj in (UNSUB, SUBCLOSE):
            r = await _unsub_raw(c.nc, subj, clientID="me", subject="foo", inbox=sub.ack_inbox)
            assert r.error == "stan: invalid subscription"
        # a non-durable: nothing is resumed
        sub2 = await c.subscribe("foo")
        await sub2.expect_nothing(0.2)
    finally:
        await spy_nc.close()
        await c.close()


async def test_connection_close_removes_all_subs(nss):
    c = await StanClient.connect(nss.url, "me")
    other = await StanClient.connect(nss.url, "other")
    spy_nc = await raw_connect(nss.url)
    try:
        s1 = await c.subscribe("foo")
        s2 = await c.subscribe("bar", queue="q")
        s3 = await c.subscribe("foo", durable="d")
        spies = [await _listen(spy_nc, s.inbox) for s in (s1, s2, s3)]
        await spy_nc.flush()
        keep = await other.subscribe("foo")
        r = pb.CloseResponse.FromString(
            await request(
                c.nc, c.resp.closeRequests, pb.CloseRequest(clientID="me").SerializeToString()
            )
        )
        assert r.error == ""
        await other.publish("foo", b"x")
        await other.publish("bar", b"y")
        assert (await keep.next()).sequence == 1
        for spy in spies:
            await _quiet(spy, 0.1)
        # the closed client's subs are gone
        r2 = await _unsub_raw(c.nc, UNSUB, clientID="me", subject="foo", inbox=s1.ack_inbox)
        assert r2.error == "stan: invalid subscription"
    finally:
        await spy_nc.close()
        await c.nc.close()
        await other.close()


async def test_unsubscribe_errors(nss):
    c = await StanClient.connect(nss.url, "me")
    other = await StanClient.connect(nss.url, "other")
    try:
        sub = await c.subscribe("foo")
        for subj in (UNSUB, SUBCLOSE):
            r = await _unsub_raw(c.nc, subj, clientID="me", subject="nochan", inbox=sub.ack_inbox)
            assert r.error == "stan: unknown channel"
            r = await _unsub_raw(c.nc, subj, clientID="me", subject="foo", inbox="_INBOX.nope")
            assert r.error == "stan: invalid subscription"
            r = await _unsub_raw(c.nc, subj, clientID="me", subject="foo", inbox="")
            assert r.error == "stan: invalid subscription"
            # the sub exists, but not for this client
            r = await _unsub_raw(c.nc, subj, clientID="other", subject="foo", inbox=sub.ack_inbox)
            assert r.error == "stan: unknown clientID"
            r = await _unsub_raw(c.nc, subj, clientID="ghost", subject="foo", inbox=sub.ack_inbox)
            assert r.error == "stan: unknown clientID"
            r = await _unsub_raw(c.nc, subj, clientID="", subject="foo", inbox=sub.ack_inbox)
            assert r.error == "stan: unknown clientID"
        # after all that the sub is still alive
        await c.publish("foo", b"x")
        assert (await sub.next()).sequence == 1
        # a successful response is an empty SubscriptionResponse
        data = await request(
            c.nc,
            UNSUB,
            pb.UnsubscribeRequest(
                clientID="me", subject="foo", inbox=sub.ack_inbox
            ).SerializeToString(),
        )
        assert data == b""
    finally:
        await c.close()
        await other.close()


async def test_close_errors(nss):
    c = await StanClient.connect(nss.url, "me")
    nc = await raw_connect(nss.url)
    try:
        for cid in ("ghost", ""):
            r = pb.CloseResponse.FromString(
                await request(nc, CLOSE, pb.CloseRequest(clientID=cid).SerializeToString())
            )
            assert r.error == "stan: unknown clientID"
        data = await request(nc, CLOSE, pb.CloseRequest(clientID="me").SerializeToString())
        assert data == b""  # CloseResponse{} encodes to nothing
        r = pb.CloseResponse.FromString(
            await request(nc, CLOSE, pb.CloseRequest(clientID="me").SerializeToString())
        )
        assert r.error == "stan: unknown clientID"
        with pytest.raises(StanError, match="stan: unknown clientID"):
            await c.close()
    finally:
        await nc.close()


async def test_subscribe_after_close_is_unknown_client(nss):
    c = await StanClient.connect(nss.url, "me")
    nc = c.nc
    r = await request(nc, CLOSE, pb.CloseRequest(clientID="me").SerializeToString())
    assert r == b""
    c.nc = nc
    with pytest.raises(StanError) as ei:
        await c.subscribe("foo")
    assert str(ei.value) == "stan: unknown clientID"
    await nc.close()


async def test_unsubscribe_without_reply_is_processed(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        sub = await c.subscribe("foo")
        req = pb.UnsubscribeRequest(clientID="me", subject="foo", inbox=sub.ack_inbox)
        await c.nc.publish(UNSUB, req.SerializeToString())
        r = await _unsub_raw(c.nc, UNSUB, clientID="me", subject="foo", inbox=sub.ack_inbox)
        assert r.error == "stan: invalid subscription"
    finally:
        await c.close()


@pytest.mark.parametrize("how", ["subclose", "connclose"])
async def test_ack_then_close_loses_no_ack(nss, how):
    n = 300
    c = await StanClient.connect(nss.url, "me")
    d = await c.subscribe("foo", durable="dur", manual_acks=True, max_inflight=n + 1)
    futs = [c.publish_async("foo", b"%d" % i) for i in range(n)]
    await asyncio.gather(*futs)
    msgs = await d.take(n)
    # ack everything and close right away, without waiting
    payloads = [pb.Ack(subject="foo", sequence=m.sequence).SerializeToString() for m in msgs]
    for p in payloads:
        await c.nc.publish(d.ack_inbox, p)
    if how == "subclose":
        await d.close()
    else:
        await c.close()
        c = await StanClient.connect(nss.url, "me")
    d2 = await c.subscribe("foo", durable="dur", manual_acks=True)
    await d2.expect_nothing(0.5)
    await c.close()


async def test_ack_then_unsubscribe_of_queue_member_loses_no_ack(nss):
    """Acks that precede a queue member's close are not transferred to others."""
    c = await StanClient.connect(nss.url, "me")
    q1 = await c.subscribe("foo", queue="g", manual_acks=True, max_inflight=1000)
    q2 = await c.subscribe("foo", queue="g", manual_acks=True, max_inflight=1000)
    await asyncio.gather(*(c.publish_async("foo", b"x") for _ in range(100)))
    while len(q1.received) + len(q2.received) < 100:
        await asyncio.sleep(0.01)
    while not q2.queue.empty():
        q2.queue.get_nowait()
    for m in list(q1.received):
        await c.nc.publish(
            q1.ack_inbox, pb.Ack(subject="foo", sequence=m.sequence).SerializeToString()
        )
    await q1.close()
    await q2.expect_nothing(0.5)
    await c.close()

"""Server heartbeats, client PINGs and duplicate client IDs (protocol.md §11, §13)."""

from __future__ import annotations

import asyncio
import time

import nats.errors
import pytest
from rawproto import PINGS, eventually, expect_no_reply, publish_raw, raw_connect, request
from stanclient import StanClient, StanError, wait_for

from nss.pb import protocol_pb2 as pb

REPLACED = "client has been replaced or is no longer registered"
REGISTERED = "stan: clientID already registered"
FAST_HB = ("-hbi", "100ms", "-hbt", "100ms", "-hbf", "1")


async def test_ping_ok_is_empty_payload(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        data = await request(c.nc, PINGS, pb.Ping(connID=c.conn_id).SerializeToString())
        assert data == b""
        assert await c.ping() == ""
    finally:
        await c.close()


async def test_ping_unknown_conn_id(nss):
    nc = await raw_connect(nss.url)
    try:
        data = await request(nc, PINGS, pb.Ping(connID=b"nobody").SerializeToString())
        assert pb.PingResponse.FromString(data).error == REPLACED
        assert data == pb.PingResponse(error=REPLACED).SerializeToString()
    finally:
        await nc.close()


async def test_ping_after_close_is_replaced(nss):
    c = await StanClient.connect(nss.url, "me")
    nc = await raw_connect(nss.url)
    try:
        await c.close()
        data = await request(nc, PINGS, pb.Ping(connID=c.conn_id).SerializeToString())
        assert pb.PingResponse.FromString(data).error == REPLACED
    finally:
        await nc.close()


async def test_ping_empty_or_garbage_gets_no_reply(nss):
    nc = await raw_connect(nss.url)
    try:
        await expect_no_reply(nc, PINGS, b"", within=0.2)
        await expect_no_reply(nc, PINGS, b"\xff\xff\xff", within=0.2)
        # a Ping without a connID (but a non-empty payload) is an unknown client
        unknown = pb.Ping(connID=b"x").SerializeToString()
        data = await request(nc, PINGS, unknown)
        assert pb.PingResponse.FromString(data).error == REPLACED
    finally:
        await nc.close()


async def test_heartbeats_close_unresponsive_client(nss_factory):
    srv = nss_factory(*FAST_HB)
    c = await StanClient.connect(srv.url, "me")
    other = await StanClient.connect(srv.url, "other")
    try:
        plain = await c.subscribe("foo")
        durable = await c.subscribe("foo", durable="dur", manual_acks=True)
        await other.publish("foo", b"1")
        await plain.next()
        m = await durable.next()
        c.answer_heartbeats = False
        t0 = time.monotonic()

        async def gone() -> bool:
            return await c.ping() == REPLACED

        await eventually(gone, timeout=5)
        # (hbf + 1) * (hbi + hbt) = 0.4s in the worst case, plus scheduling
        assert time.monotonic() - t0 < 3
        # closed as if it had sent a CloseRequest: its connID no longer publishes
        pm = pb.PubMsg(clientID="me", guid="g", subject="foo", data=b"x", connID=c.conn_id)
        ack = await publish_raw(c.nc, "foo", pm)
        assert ack.error == "stan: invalid publish request"
        await other.publish("foo", b"2")
        await plain.expect_nothing(0.2)
        await c.nc.close()
        # the ID is free again, and the durable was kept offline with its pending
        c2 = await StanClient.connect(srv.url, "me")
        d2 = await c2.subscribe("foo", durable="dur", manual_acks=True)
        got = await d2.take(2)
        assert [(x.sequence, x.redelivered) for x in got] == [(m.sequence, True), (2, False)]
        await c2.close()
    finally:
        await other.close()


async def test_responsive_client_survives_heartbeats(nss_factory):
    srv = nss_factory(*FAST_HB)
    c = await StanClient.connect(srv.url, "me")
    try:
        await wait_for(lambda: c.heartbeats >= 6, timeout=5)
        assert await c.ping() == ""
        await c.publish("foo", b"x")
    finally:
        await c.close()


async def test_heartbeats_stop_after_close(nss_factory):
    srv = nss_factory("-hbi", "50ms", "-hbt", "100ms")
    c = await StanClient.connect(srv.url, "me")
    hb_inbox = c.hb_inbox
    await wait_for(lambda: c.heartbeats >= 2, timeout=5)
    await c.close()
    nc = await raw_connect(srv.url)
    try:
        sub = await nc.subscribe(hb_inbox)
        await nc.flush()
        with pytest.raises(nats.errors.TimeoutError):
            await sub.next_msg(timeout=0.3)
    finally:
        await nc.close()


async def test_duplicate_client_id_alive(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        with pytest.raises(StanError) as ei:
            await StanClient.connect(nss.url, "me")
        assert str(ei.value) == REGISTERED
        # the original is untouched
        assert await c.ping() == ""
        await c.publish("foo", b"x")
    finally:
        await c.close()


async def test_duplicate_client_id_old_gone(nss):
    old = await StanClient.connect(nss.url, "me")
    sub = await old.subscribe("foo")
    dur = await old.subscribe("foo", durable="dur")
    await old.publish("foo", b"1")
    await sub.next()
    await dur.next()
    old_conn_id = old.conn_id
    await old.drop()
    t0 = time.monotonic()
    new = await StanClient.connect(nss.url, "me")
    # no responders on the old heartbeat inbox: no need to wait 500ms
    assert time.monotonic() - t0 < 0.45
    try:
        pm = pb.PubMsg(clientID="me", guid="g", subject="foo", data=b"x", connID=old_conn_id)
        ack = await publish_raw(new.nc, "foo", pm)
        assert (ack.guid, ack.error) == ("g", "stan: invalid publish request")
        assert await new.ping(old_conn_id) == REPLACED
        assert await new.ping() == ""
        await new.publish("foo", b"2")
        # the old durable went offline and the new connection can resume it
        d2 = await new.subscribe("foo", durable="dur")
        assert (await d2.next()).sequence == 2
    finally:
        await new.close()


async def test_duplicate_client_id_old_not_answering(nss):
    """The old client's NATS connection is up but it ignores heartbeats: the
    500ms probe times out, then the new one replaces it. A connect arriving
    while the probe runs is refused at once."""
    old = await StanClient.connect(nss.url, "me")
    old.answer_heartbeats = False
    try:
        t0 = time.monotonic()
        first = asyncio.ensure_future(StanClient.connect(nss.url, "me", timeout=3))
        await asyncio.sleep(0.15)  # let the first probe start (setup, not a wait)
        t1 = time.monotonic()
        with pytest.raises(StanError) as ei:
            await StanClient.connect(nss.url, "me", timeout=3)
        assert str(ei.value) == REGISTERED
        assert time.monotonic() - t1 < 0.3  # refused without a probe of its own
        new = await first
        assert time.monotonic() - t0 >= 0.45  # the probe waited for its timeout
        assert await old.ping() == REPLACED
        assert await new.ping() == ""
        await new.close()
    finally:
        await old.nc.close()


SLOW_FAIL_HB = ("-hbi", "100ms", "-hbt", "100ms", "-hbf", "1000")


async def test_failed_heartbeats_suspend_redelivery(nss_factory):
    srv = nss_factory(*SLOW_FAIL_HB)
    c = await StanClient.connect(srv.url, "me")
    try:
        sub = await c.subscribe("foo", manual_acks=True, ack_wait=1)
        await c.publish("foo", b"x")
        await sub.next()
        c.answer_heartbeats = False
        # the client is flagged well before its AckWait runs out: no redelivery
        await sub.expect_nothing(1.6)
        c.answer_heartbeats = True
        r = await sub.next(3)
        assert (r.sequence, r.redelivered) == (1, True)
        await sub.ack(r)
    finally:
        await c.close()


async def test_failed_heartbeats_queue_member_avoided(nss_factory):
    srv = nss_factory(*SLOW_FAIL_HB)
    a = await StanClient.connect(srv.url, "a")
    b = await StanClient.connect(srv.url, "b")
    try:
        qa = await a.subscribe("foo", queue="g", manual_acks=True)
        qb = await b.subscribe("foo", queue="g", manual_acks=True)
        a.answer_heartbeats = False
        hb0 = a.heartbeats
        # two unanswered heartbeats: a has been flagged
        await wait_for(lambda: a.heartbeats >= hb0 + 2, timeout=5)
        for i in range(4):
            await b.publish("foo", b"%d" % i)
        # b gets them all although a has fewer pending
        assert [m.sequence for m in await qb.take(4)] == [1, 2, 3, 4]
        await qa.expect_nothing(0.1)
    finally:
        await a.close()
        await b.close()


async def test_ping_from_failing_client_triggers_prompt_heartbeat(nss_factory):
    srv = nss_factory("-hbi", "1s", "-hbt", "100ms", "-hbf", "1000")
    c = await StanClient.connect(srv.url, "me")
    try:
        c.answer_heartbeats = False
        await wait_for(lambda: c.heartbeats >= 1, timeout=5)
        # let that heartbeat time out (100ms): the client now has a failure
        t_fail = asyncio.get_running_loop().time()
        await asyncio.sleep(0.25)
        c.answer_heartbeats = True
        n = c.heartbeats
        assert await c.ping() == ""
        # the next heartbeat comes right away, not a whole interval later
        await wait_for(lambda: c.heartbeats > n, timeout=5)
        assert asyncio.get_running_loop().time() - t_fail < 0.8
    finally:
        await c.close()


async def test_client_closed_only_when_failures_exceed_fail_count(nss_factory):
    """-hbf 1 tolerates one missed heartbeat: the client is closed when the
    count becomes > hb_fail_count, and an answer resets the count."""
    srv = nss_factory("-hbi", "150ms", "-hbt", "150ms", "-hbf", "1")
    c = await StanClient.connect(srv.url, "me")
    try:
        for _ in range(3):
            c.answer_heartbeats = False
            n = c.heartbeats
            await wait_for(lambda n=n: c.heartbeats > n, timeout=5)  # one missed
            c.answer_heartbeats = True
            n = c.heartbeats
            await wait_for(lambda n=n: c.heartbeats > n, timeout=5)  # one answered
        assert await c.ping() == ""
        # two in a row: closed
        c.answer_heartbeats = False

        async def gone() -> bool:
            return await c.ping() == REPLACED

        await eventually(gone, timeout=5)
    finally:
        await c.nc.close()

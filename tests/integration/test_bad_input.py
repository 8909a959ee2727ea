"""Malformed and invalid requests (protocol.md §5-§9, §14, §16).

Every request subject gets garbage; each must answer with the exact error of
§16 (or stay silent where the protocol says so), and the server must keep
serving afterwards.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from pathlib import Path

import nats
import pytest
from rawproto import (
    CLOSE,
    DISCOVER,
    INVALID_CLIENT_ID,
    PINGS,
    PUB,
    SUB,
    SUBCLOSE,
    UNSUB,
    connect_raw,
    eventually,
    expect_no_reply,
    publish_raw,
    raw_connect,
    request,
    subscribe_raw,
)
from stanclient import StanClient

from nss.cli import find_nats_server_bin
from nss.pb import protocol_pb2 as pb

# payloads no protobuf decoder accepts: a varint that never ends, a length
# running past the end, a field number of 0, an "end group" without a start
GARBAGE = [b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", b"\x0a\x05ab", b"\x00\x01", b"\x0c"]


async def _still_serving(url: str) -> None:
    c = await StanClient.connect(url, "alive")
    try:
        await c.publish("health", b"ok")
        sub = await c.subscribe("health", start=pb.LastReceived)
        assert (await sub.next()).data == b"ok"
        assert await c.ping() == ""
    finally:
        await c.close()


@pytest.mark.parametrize("payload", GARBAGE)
async def test_malformed_on_every_request_subject(nss, payload):
    c = await StanClient.connect(nss.url, "me")
    nc = await raw_connect(nss.url)
    try:
        resp = pb.ConnectResponse.FromString(await request(nc, DISCOVER, payload))
        assert resp.error == "stan: invalid connection request"
        assert resp.pubPrefix == ""

        ack = pb.PubAck.FromString(await request(nc, f"{PUB}.foo", payload))
        assert (ack.guid, ack.error) == ("", "stan: invalid publish request")

        sresp = pb.SubscriptionResponse.FromString(await request(nc, SUB, payload))
        assert sresp.error == "stan: invalid subscription request"
        assert sresp.ackInbox == ""

        for subj in (UNSUB, SUBCLOSE):
            sresp = pb.SubscriptionResponse.FromString(await request(nc, subj, payload))
            assert sresp.error == "stan: invalid unsubscribe request"

        cresp = pb.CloseResponse.FromString(await request(nc, CLOSE, payload))
        assert cresp.error == "stan: invalid close request"

        await expect_no_reply(nc, PINGS, payload, within=0.2)

        # garbage on an ack inbox is ignored: the sub stays stalled until a real ack
        sub = await c.subscribe("foo", manual_acks=True, max_inflight=1)
        await c.publish("foo", b"1")
        await c.publish("foo", b"2")
        m1 = await sub.next()
        await nc.publish(sub.ack_inbox, payload)
        await sub.expect_nothing(0.2)
        await sub.ack(m1)
        assert (await sub.next()).sequence == 2

        # the client that was connected before is unaffected
        assert await c.ping() == ""
        await _still_serving(nss.url)
    finally:
        await nc.close()
        await c.close()


async def test_empty_payloads(nss):
    """A zero-length payload is a message with every field at its default."""
    nc = await raw_connect(nss.url)
    try:
        resp = pb.ConnectResponse.FromString(await request(nc, DISCOVER, b""))
        assert resp.error == "stan: invalid connection request"
        ack = pb.PubAck.FromString(await request(nc, f"{PUB}.foo", b""))
        assert (ack.guid, ack.error) == ("", "stan: invalid publish request")
        sresp = pb.SubscriptionResponse.FromString(await request(nc, SUB, b""))
        assert sresp.error == "stan: clientID missing"
        for subj in (UNSUB, SUBCLOSE):
            sresp = pb.SubscriptionResponse.FromString(await request(nc, subj, b""))
            assert sresp.error == "stan: unknown channel"
        cresp = pb.CloseResponse.FromString(await request(nc, CLOSE, b""))
        assert cresp.error == "stan: unknown clientID"
        await expect_no_reply(nc, PINGS, b"", within=0.2)
        await _still_serving(nss.url)
    finally:
        await nc.close()


async def test_requests_without_reply_subject(nss):
    """No reply subject: nothing to answer, and nothing breaks."""
    nc = await raw_connect(nss.url)
    try:
        for subj in (DISCOVER, f"{PUB}.foo", SUB, UNSUB, SUBCLOSE, CLOSE, PINGS):
            await nc.publish(subj, b"\xff\xff")
            await nc.publish(subj, b"")
        await nc.publish(
            DISCOVER,
            pb.ConnectRequest(clientID="noreply", heartbeatInbox="hb").SerializeToString(),
        )
        await nc.flush()
        await _still_serving(nss.url)
    finally:
        await nc.close()


async def test_connect_invalid_requests(nss):
    nc = await raw_connect(nss.url)
    try:
        resp = await connect_raw(nc, clientID="me", heartbeatInbox="")
        assert resp.error == "stan: invalid connection request"
        for cid in ("", "bad id", "a.b", "x*"):
            resp = await connect_raw(nc, clientID=cid, heartbeatInbox="hb")
            assert resp.error == INVALID_CLIENT_ID
        await _still_serving(nss.url)
    finally:
        await nc.close()


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"clientID": ""}, "stan: clientID missing"),
        ({"ackWaitInSecs": 0}, "stan: invalid ack wait time, should be >= 1s"),
        ({"ackWaitInSecs": -1}, "stan: invalid ack wait time, should be >= 1s"),
        ({"maxInFlight": 0}, "stan: invalid MaxInflight, should be >= 1"),
        ({"maxInFlight": -5}, "stan: invalid MaxInflight, should be >= 1"),
        ({"startPosition": 5}, "stan: invalid start position"),
        ({"startPosition": -1}, "stan: invalid start position"),
        ({"startPosition": 1000}, "stan: invalid start position"),
        ({"subject": ""}, "stan: invalid subject"),
        ({"subject": "a.*"}, "stan: invalid subject"),
        ({"clientID": "ghost"}, "stan: unknown clientID"),
        # validation order: clientID, ackWait, maxInFlight, start, subject, client
        ({"clientID": "", "ackWaitInSecs": 0, "maxInFlight": 0}, "stan: clientID missing"),
        (
            {"ackWaitInSecs": 0, "maxInFlight": 0, "startPosition": 9},
            "stan: invalid ack wait time, should be >= 1s",
        ),
        (
            {"maxInFlight": 0, "startPosition": 9, "subject": ""},
            "stan: invalid MaxInflight, should be >= 1",
        ),
        ({"startPosition": 9, "subject": ""}, "stan: invalid start position"),
        ({"subject": "", "clientID": "ghost"}, "stan: invalid subject"),
    ],
)
async def test_invalid_subscription_requests(nss, fields, error):
    c = await StanClient.connect(nss.url, "me")
    try:
        req = {"clientID": "me", "subject": "foo", "maxInFlight": 10, "ackWaitInSecs": 30}
        req.update(fields)
        resp = await subscribe_raw(c.nc, **req)
        assert resp.error == error
        assert resp.ackInbox == ""
        # nothing was created: a valid sub still gets everything from the start
        await c.publish("foo", b"x")
        sub = await c.subscribe("foo", start=pb.First)
        assert (await sub.next()).sequence == 1
    finally:
        await c.close()


async def test_publish_invalid_requests(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        cases = [
            pb.PubMsg(clientID="me", subject="foo", data=b"x", connID=c.conn_id),  # no guid
            pb.PubMsg(clientID="me", guid="g", subject="", data=b"x", connID=c.conn_id),
            pb.PubMsg(clientID="ghost", guid="g", subject="foo", data=b"x"),
            pb.PubMsg(guid="g", subject="foo", data=b"x"),  # no clientID, no connID
            pb.PubMsg(clientID="me", guid="g", subject="foo", data=b"x", connID=b"bad"),
        ]
        for pm in cases:
            ack = await publish_raw(c.nc, "foo", pm)
            assert (ack.guid, ack.error) == (pm.guid, "stan: invalid publish request")
        # none of them was stored
        await c.publish("foo", b"ok")
        sub = await c.subscribe("foo", start=pb.First)
        m = await sub.next()
        assert (m.sequence, m.data) == (1, b"ok")
    finally:
        await c.close()


# field 1 (a string or bytes in every request) sent as a varint; field 2 too,
# so that it is not a valid CtrlMsg either (CtrlMsg.ServerID is a string)
WRONG_WIRE_TYPE = b"\x08\x01\x10\x01"


async def test_wrong_wire_type_is_a_decode_failure(nss):
    """gogo-protobuf rejects a known field with the wrong wire type, where the
    Python decoder would keep it as an unknown field."""
    c = await StanClient.connect(nss.url, "me")
    nc = await raw_connect(nss.url)
    try:
        p = WRONG_WIRE_TYPE
        ack = pb.PubAck.FromString(await request(nc, f"{PUB}.foo", p))
        assert (ack.guid, ack.error) == ("", "stan: invalid publish request")
        resp = pb.ConnectResponse.FromString(await request(nc, DISCOVER, p))
        assert resp.error == "stan: invalid connection request"
        sresp = pb.SubscriptionResponse.FromString(await request(nc, SUB, p))
        assert sresp.error == "stan: invalid subscription request"
        for subj in (UNSUB, SUBCLOSE):
            sresp = pb.SubscriptionResponse.FromString(await request(nc, subj, p))
            assert sresp.error == "stan: invalid unsubscribe request"
        cresp = pb.CloseResponse.FromString(await request(nc, CLOSE, p))
        assert cresp.error == "stan: invalid close request"
        await expect_no_reply(nc, PINGS, p, within=0.2)
        # a valid request with a wrongly typed field is rejected as a whole
        good = pb.SubscriptionRequest(
            clientID="me", subject="foo", inbox=nc.new_inbox(), maxInFlight=1, ackWaitInSecs=1
        ).SerializeToString()
        sresp = pb.SubscriptionResponse.FromString(
            await request(nc, SUB, good + b"\x20\x01")  # inbox (4) as a varint
        )
        assert sresp.error == "stan: invalid subscription request"
        # unknown field numbers are fine, whatever their wire type
        sresp = pb.SubscriptionResponse.FromString(
            await request(nc, SUB, good + b"\x78\x01\x85\x01\x01\x02\x03\x04")
        )
        assert sresp.error == ""
        assert await c.ping() == ""
    finally:
        await nc.close()
        await c.close()


# ------------------------------------------------------------------ max payload


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


MAX_PAYLOAD = 2048


@pytest.fixture
def small_payload_nats(tmp_path: Path):
    """An external nats-server with max_payload 2048 (nss has no flag for it
    and does not read NATS configuration files yet; -ns points nss at it)."""
    binary = find_nats_server_bin()
    if binary is None:
        pytest.skip("no nats-server binary")
    port = _free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(f"listen: 127.0.0.1:{port}\nmax_payload: {MAX_PAYLOAD}\n")
    proc = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        assert time.monotonic() < deadline, "nats-server did not start"
        time.sleep(0.02)
    yield f"nats://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def _pubmsg_of_size(size: int, guid: str) -> pb.PubMsg:
    """A legacy (no connID) PubMsg whose encoding is exactly ``size`` bytes."""
    pm = pb.PubMsg(clientID="a", guid=guid, subject="big")
    n = size - pm.ByteSize() - 3
    pm.data = b"x" * n
    while pm.ByteSize() < size:
        pm.data += b"x"
    while pm.ByteSize() > size:
        pm.data = pm.data[:-1]
    assert pm.ByteSize() == size
    return pm


def _msgproto_size(pm: pb.PubMsg, seq: int) -> int:
    return pb.MsgProto(
        sequence=seq, subject=pm.subject, data=pm.data, timestamp=time.time_ns()
    ).ByteSize()


async def test_message_bigger_than_max_payload(nss_factory, small_payload_nats):
    nss_factory("-ns", small_payload_nats)
    nc = await nats.connect(small_payload_nats, allow_reconnect=False)
    try:
        assert nc.max_payload == MAX_PAYLOAD
        resp = await connect_raw(nc, clientID="a", heartbeatInbox=nc.new_inbox())
        assert resp.error == ""
        # a PubMsg that fits, whose MsgProto (sequence, timestamp) does not:
        # nss refuses it instead of storing a message it could never deliver
        pm = _pubmsg_of_size(MAX_PAYLOAD, "big")
        assert _msgproto_size(pm, 1) > MAX_PAYLOAD
        ack = await publish_raw(nc, "big", pm)
        assert (ack.guid, ack.error) == ("big", "nats: maximum payload exceeded")
        # the client library itself refuses a payload over the limit
        with pytest.raises(nats.errors.MaxPayloadError):
            await nc.publish(f"{PUB}.big", b"x" * (MAX_PAYLOAD + 1))
        # the channel goes on without a gap
        ok = pb.PubMsg(clientID="a", guid="ok", subject="big", data=b"small")
        assert (await publish_raw(nc, "big", ok)).error == ""
        inbox = nc.new_inbox()
        s = await nc.subscribe(inbox)
        sresp = await subscribe_raw(
            nc, clientID="a", subject="big", startPosition=pb.First, inbox=inbox
        )
        assert sresp.error == ""
        m = pb.MsgProto.FromString((await s.next_msg(timeout=2)).data)
        assert (m.sequence, m.data) == (1, b"small")
    finally:
        await nc.close()


async def test_redelivery_of_max_size_message(nss_factory, small_payload_nats):
    """A stored message that fits exactly cannot be redelivered (the redelivered
    flag and count make it bigger); the other pending messages still are."""
    nss_factory("-ns", small_payload_nats)
    c = await StanClient.connect(small_payload_nats, "a", protocol=0)
    try:
        sub = await c.subscribe("big", manual_acks=True, ack_wait=1)
        # find a PubMsg whose MsgProto is exactly MAX_PAYLOAD bytes
        size = MAX_PAYLOAD
        pm = _pubmsg_of_size(size, "big")
        while _msgproto_size(pm, 1) > MAX_PAYLOAD:
            size -= 1
            pm = _pubmsg_of_size(size, "big")
        assert _msgproto_size(pm, 1) == MAX_PAYLOAD
        assert (await publish_raw(c.nc, "big", pm)).error == ""
        await c.publish("big", b"small")
        m1, m2 = await sub.take(2)
        assert (m1.sequence, len(m1.data), m2.sequence) == (1, len(pm.data), 2)
        r = await sub.next(3)
        assert (r.sequence, r.redelivered) == (2, True)
        await sub.ack(r)
        # and the server keeps delivering and redelivering
        await c.publish("big", b"three")
        m3 = await sub.next()
        assert m3.sequence == 3
        r3 = await sub.next(3)
        assert (r3.sequence, r3.redelivered) == (3, True)
        await sub.ack(r3)
    finally:
        await c.close()


# ------------------------------------------------------------------ bad inboxes


@pytest.mark.parametrize("inbox", ["", "a b c", "a\tb", "x y"])
async def test_unusable_delivery_inbox_does_not_break_the_server(nss, inbox):
    """The Go server accepts any inbox; nats.go refuses to publish to an empty
    subject, so such a sub simply never gets anything. A subject with spaces
    must not corrupt the server's NATS connection either."""
    c = await StanClient.connect(nss.url, "me")
    try:
        await c.publish("foo", b"1")
        r = await subscribe_raw(
            c.nc, clientID="me", subject="foo", inbox=inbox, startPosition=pb.First
        )
        assert r.error == "" and r.ackInbox
        await c.publish("foo", b"2")
        r2 = await subscribe_raw(
            c.nc, clientID="me", subject="foo", qGroup="g", inbox=inbox, startPosition=pb.First
        )
        assert r2.error == ""
        await c.publish("foo", b"3")
        sub = await c.subscribe("foo", start=pb.First)
        assert [m.sequence for m in await sub.take(3)] == [1, 2, 3]
        await _still_serving(nss.url)
        assert not any("Disconnected from NATS" in line for line in nss.lines)
    finally:
        await c.close()


async def test_unusable_heartbeat_inbox_does_not_break_the_server(nss_factory):
    srv = nss_factory("-hbi", "100ms", "-hbt", "100ms", "-hbf", "1")
    nc = await raw_connect(srv.url)
    try:
        resp = await connect_raw(
            nc, clientID="spaces", heartbeatInbox="a b c", protocol=1, connID=b"spaces-conn"
        )
        assert resp.error == ""

        # nobody can answer its heartbeats: it is closed like a dead client
        async def gone() -> bool:
            data = await request(nc, PINGS, pb.Ping(connID=b"spaces-conn").SerializeToString())
            return pb.PingResponse.FromString(data).error != ""

        await eventually(gone, timeout=5)
        # the duplicate check on such an inbox is a failed probe, too
        resp = await connect_raw(nc, clientID="dup", heartbeatInbox="x y")
        assert resp.error == ""
        resp = await connect_raw(nc, clientID="dup", heartbeatInbox=nc.new_inbox())
        assert resp.error == ""
        await _still_serving(srv.url)
        assert not any("Disconnected from NATS" in line for line in srv.lines)
    finally:
        await nc.close()

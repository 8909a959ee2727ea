"""Channel names and creation (protocol.md §10.1, §10.2)."""

from __future__ import annotations

import pytest
from rawproto import PUB, publish_raw, subscribe_raw
from stanclient import StanClient, StanError

from nss.pb import protocol_pb2 as pb

INVALID_NAMES = [
    "",
    ".",
    ".foo",
    "foo.",
    "foo..bar",
    "..",
    "foo/bar",
    "/",
    "*",
    ">",
    "foo.*",
    "foo.>",
    "*.foo",
    "foo*",
    "fo>o",
    "foo.b*r",
]

# §10.1: only these rules; characters NATS itself would reject still pass
ODD_VALID_NAMES = ["foo bar", "caf\u00e9", "a-b_c", "a.b.c", "A:B", "x\ty", "1", "-", "foo$"]


def _conflict(new: str, existing: str) -> str:
    return (
        f'rejecting channel "{new}" because channel "{existing}" alreay exists '
        "(different cases not allowed)"
    )


@pytest.mark.parametrize("name", INVALID_NAMES)
async def test_publish_invalid_channel_name(nss, name):
    c = await StanClient.connect(nss.url, "me")
    try:
        pm = pb.PubMsg(clientID="me", guid="g", subject=name, data=b"x", connID=c.conn_id)
        # the NATS subject does not matter: the channel is PubMsg.subject
        ack = await publish_raw(c.nc, "", pm, subject=f"{PUB}.valid")
        assert (ack.guid, ack.error) == ("g", "stan: invalid publish request")
    finally:
        await c.close()


@pytest.mark.parametrize("name", INVALID_NAMES)
async def test_subscribe_invalid_channel_name(nss, name):
    c = await StanClient.connect(nss.url, "me")
    try:
        resp = await subscribe_raw(c.nc, clientID="me", subject=name)
        assert resp.error == "stan: invalid subject"
        assert resp.ackInbox == ""
    finally:
        await c.close()


async def test_odd_but_valid_channel_names(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        for name in ODD_VALID_NAMES:
            pm = pb.PubMsg(clientID="me", guid="g", subject=name, data=b"x", connID=c.conn_id)
            ack = await publish_raw(c.nc, "", pm, subject=f"{PUB}.whatever")
            assert ack.error == "", name
            resp = await subscribe_raw(c.nc, clientID="me", subject=name, startPosition=pb.First)
            assert resp.error == "", name
    finally:
        await c.close()


async def test_case_conflict_on_publish(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        await c.publish("Foo.Bar", b"1")
        for other in ("foo.bar", "FOO.BAR", "Foo.bar"):
            with pytest.raises(StanError) as ei:
                await c.publish(other, b"x")
            assert str(ei.value) == _conflict(other, "Foo.Bar")
            with pytest.raises(StanError) as ei:
                await c.subscribe(other)
            assert str(ei.value) == _conflict(other, "Foo.Bar")
        # the original is fine
        await c.publish("Foo.Bar", b"2")
        sub = await c.subscribe("Foo.Bar", start=pb.First)
        assert [m.sequence for m in await sub.take(2)] == [1, 2]
    finally:
        await c.close()


async def test_case_conflict_on_subscribe(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        await c.subscribe("bar")  # the subscription creates the channel
        with pytest.raises(StanError) as ei:
            await c.subscribe("BAR")
        assert str(ei.value) == _conflict("BAR", "bar")
        with pytest.raises(StanError) as ei:
            await c.publish("Bar", b"x")
        assert str(ei.value) == _conflict("Bar", "bar")
    finally:
        await c.close()


async def test_case_conflict_in_a_publish_batch(nss):
    """Only the conflicting message fails; its neighbours are stored."""
    c = await StanClient.connect(nss.url, "me")
    try:
        futs = [
            c.publish_async("abc", b"1"),
            c.publish_async("ABC", b"2"),
            c.publish_async("abc", b"3"),
        ]
        errs = [await f for f in futs]
        assert errs == ["", _conflict("ABC", "abc"), ""]
        sub = await c.subscribe("abc", start=pb.First)
        assert [(m.sequence, m.data) for m in await sub.take(2)] == [(1, b"1"), (2, b"3")]
    finally:
        await c.close()


async def test_channels_are_created_implicitly(nss):
    c = await StanClient.connect(nss.url, "me")
    try:
        # by a subscription: nothing in it yet
        sub = await c.subscribe("new.by.sub", start=pb.First)
        await sub.expect_nothing(0.1)
        await c.publish("new.by.sub", b"x")
        assert (await sub.next()).sequence == 1
        # by a publish
        await c.publish("new.by.pub", b"x")
        s2 = await c.subscribe("new.by.pub", start=pb.First)
        assert (await s2.next()).sequence == 1
    finally:
        await c.close()


async def test_case_conflict_quotes_names_like_go(nss):
    """The names are formatted with Go's %q: quotes, backslashes and control
    characters are escaped."""
    c = await StanClient.connect(nss.url, "me")
    try:
        for existing, new, quoted_new, quoted_existing in [
            ('Q"x', 'q"x', '"q\\"x"', '"Q\\"x"'),
            ("B\\s", "b\\s", '"b\\\\s"', '"B\\\\s"'),
            ("T\tab", "t\tab", '"t\\tab"', '"T\\tab"'),
            ("\u00c9t\u00e9", "\u00e9t\u00e9", '"\u00e9t\u00e9"', '"\u00c9t\u00e9"'),
        ]:
            pm = pb.PubMsg(clientID="me", guid="g", subject=existing, data=b"x", connID=c.conn_id)
            assert (await publish_raw(c.nc, "", pm, subject=f"{PUB}.x")).error == ""
            pm = pb.PubMsg(clientID="me", guid="g", subject=new, data=b"x", connID=c.conn_id)
            ack = await publish_raw(c.nc, "", pm, subject=f"{PUB}.x")
            assert ack.error == (
                f"rejecting channel {quoted_new} because channel {quoted_existing} "
                "alreay exists (different cases not allowed)"
            )
    finally:
        await c.close()

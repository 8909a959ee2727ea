"""Go-compatible decode checks and %q quoting used for protocol replies."""

from __future__ import annotations

import pytest

from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb
from nss.pb.wire import go_decodes
from nss.units import go_quote

PUB = pb.PubMsg.DESCRIPTOR
CTRL = spb.CtrlMsg.DESCRIPTOR


def test_valid_messages_decode():
    pm = pb.PubMsg(clientID="me", guid="g", subject="foo", data=b"x", connID=b"c", sha256=b"s")
    assert go_decodes(pm.SerializeToString(), PUB)
    assert go_decodes(b"", PUB)
    ctrl = spb.CtrlMsg(MsgType=spb.CtrlMsg.ConnClose, ServerID="x", Data=b"d", RefID="r")
    assert go_decodes(ctrl.SerializeToString(), CTRL)


@pytest.mark.parametrize(
    "extra",
    [
        b"\x78\x05",  # field 15 varint
        b"\x82\x01\x03abc",  # field 16 length-delimited
        b"\x7d\x01\x02\x03\x04",  # field 15 fixed32
        b"\x79" + b"\x00" * 8,  # field 15 fixed64
        b"\x7b\x08\x01\x7c",  # field 15 group containing a varint
    ],
)
def test_unknown_fields_are_skipped(extra):
    pm = pb.PubMsg(guid="g", subject="foo").SerializeToString()
    assert go_decodes(pm + extra, PUB)


@pytest.mark.parametrize(
    "data",
    [
        b"\x08\x01",  # clientID as a varint
        b"\x15\x00\x00\x00\x00",  # guid as fixed32
        b"\x0a\x05ab",  # length past the end
        b"\xff" * 11,  # varint overflow / truncated
        b"\x00\x01",  # field number 0
        b"\x0c",  # end group without a start
        b"\x7b\x08\x01",  # group never closed
        b"\x0f",  # wire type 7
    ],
)
def test_go_rejects(data):
    assert not go_decodes(data, PUB)


def test_ctrl_msg_is_not_a_pub_msg():
    ctrl = spb.CtrlMsg(MsgType=spb.CtrlMsg.FTHeartbeat, ServerID="x").SerializeToString()
    assert not go_decodes(ctrl, PUB)
    assert go_decodes(ctrl, CTRL)


@pytest.mark.parametrize(
    ("s", "quoted"),
    [
        ("foo", '"foo"'),
        ('a"b', '"a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("a\tb\n", '"a\\tb\\n"'),
        ("\x01\x7f", '"\\x01\\x7f"'),
        ("caf\u00e9", '"caf\u00e9"'),
        ("\u00a0", '"\\u00a0"'),
        ("\U000e0001", '"\\U000e0001"'),
        ("a b", '"a b"'),
    ],
)
def test_go_quote(s, quoted):
    assert go_quote(s) == quoted

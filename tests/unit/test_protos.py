"""The committed *_pb2 modules must match the .proto sources, and the field
numbers must be the ones the Go server and the clients use."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb

ROOT = Path(__file__).resolve().parents[2]


def test_generated_modules_match_sources(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the dev extra) regenerates protos")
    (tmp_path / "nss" / "pb").mkdir(parents=True)
    for name in ("protocol.proto", "spb.proto"):
        shutil.copy(ROOT / "nss" / "pb" / name, tmp_path / "nss" / "pb" / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            ".",
            "--python_out=.",
            "nss/pb/protocol.proto",
            "nss/pb/spb.proto",
        ],
        cwd=tmp_path,
        check=True,
    )
    for name in ("protocol_pb2.py", "spb_pb2.py"):
        fresh = (tmp_path / "nss" / "pb" / name).read_text()
        committed = (ROOT / "nss" / "pb" / name).read_text()
        assert fresh == committed, f"{name} drifted from its .proto: run scripts/gen-protos"


def fields(msg: type) -> dict[str, tuple[int, int]]:
    return {f.name: (f.number, f.type) for f in msg.DESCRIPTOR.fields}


T = pb.PubMsg.DESCRIPTOR.fields_by_name["clientID"]
STRING, BYTES, UINT64, INT64, INT32, UINT32, BOOL, ENUM, MSG = (
    T.TYPE_STRING,
    T.TYPE_BYTES,
    T.TYPE_UINT64,
    T.TYPE_INT64,
    T.TYPE_INT32,
    T.TYPE_UINT32,
    T.TYPE_BOOL,
    T.TYPE_ENUM,
    T.TYPE_MESSAGE,
)


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        (
            pb.PubMsg,
            {
                "clientID": (1, STRING),
                "guid": (2, STRING),
                "subject": (3, STRING),
                "reply": (4, STRING),
                "data": (5, BYTES),
                "connID": (6, BYTES),
                "sha256": (10, BYTES),
            },
        ),
        (pb.PubAck, {"guid": (1, STRING), "error": (2, STRING)}),
        (
            pb.MsgProto,
            {
                "sequence": (1, UINT64),
                "subject": (2, STRING),
                "reply": (3, STRING),
                "data": (4, BYTES),
                "timestamp": (5, INT64),
                "redelivered": (6, BOOL),
                "redeliveryCount": (7, UINT32),
                "CRC32": (10, UINT32),
            },
        ),
        (pb.Ack, {"subject": (1, STRING), "sequence": (2, UINT64)}),
        (
            pb.ConnectRequest,
            {
                "clientID": (1, STRING),
                "heartbeatInbox": (2, STRING),
                "protocol": (3, INT32),
                "connID": (4, BYTES),
                "pingInterval": (5, INT32),
                "pingMaxOut": (6, INT32),
            },
        ),
        (
            pb.ConnectResponse,
            {
                "pubPrefix": (1, STRING),
                "subRequests": (2, STRING),
                "unsubRequests": (3, STRING),
                "closeRequests": (4, STRING),
                "error": (5, STRING),
                "subCloseRequests": (6, STRING),
                "pingRequests": (7, STRING),
                "pingInterval": (8, INT32),
                "pingMaxOut": (9, INT32),
                "protocol": (10, INT32),
                "publicKey": (100, STRING),
            },
        ),
        (pb.Ping, {"connID": (1, BYTES)}),
        (pb.PingResponse, {"error": (1, STRING)}),
        (
            pb.SubscriptionRequest,
            {
                "clientID": (1, STRING),
                "subject": (2, STRING),
                "qGroup": (3, STRING),
                "inbox": (4, STRING),
                "maxInFlight": (5, INT32),
                "ackWaitInSecs": (6, INT32),
                "durableName": (7, STRING),
                "startPosition": (10, ENUM),
                "startSequence": (11, UINT64),
                "startTimeDelta": (12, INT64),
            },
        ),
        (pb.SubscriptionResponse, {"ackInbox": (2, STRING), "error": (3, STRING)}),
        (
            pb.UnsubscribeRequest,
            {
                "clientID": (1, STRING),
                "subject": (2, STRING),
                "inbox": (3, STRING),
                "durableName": (4, STRING),
            },
        ),
        (pb.CloseRequest, {"clientID": (1, STRING)}),
        (pb.CloseResponse, {"error": (1, STRING)}),
        (
            spb.SubState,
            {
                "ID": (1, UINT64),
                "clientID": (2, STRING),
                "qGroup": (3, STRING),
                "inbox": (4, STRING),
                "ackInbox": (5, STRING),
                "maxInFlight": (6, INT32),
                "ackWaitInSecs": (7, INT32),
                "durableName": (8, STRING),
                "lastSent": (9, UINT64),
                "isDurable": (10, BOOL),
                "isClosed": (11, BOOL),
            },
        ),
        (spb.SubStateDelete, {"ID": (1, UINT64)}),
        (spb.SubStateUpdate, {"ID": (1, UINT64), "seqno": (2, UINT64)}),
        (
            spb.ServerInfo,
            {
                "ClusterID": (1, STRING),
                "Discovery": (2, STRING),
                "Publish": (3, STRING),
                "Subscribe": (4, STRING),
                "Unsubscribe": (5, STRING),
                "Close": (6, STRING),
                "SubClose": (7, STRING),
                "AcksSubs": (8, STRING),
                "NodeID": (9, STRING),
            },
        ),
        (
            spb.ClientInfo,
            {
                "ID": (1, STRING),
                "HbInbox": (2, STRING),
                "ConnID": (3, BYTES),
                "Protocol": (4, INT32),
                "PingInterval": (5, INT32),
                "PingMaxOut": (6, INT32),
            },
        ),
        (spb.ClientDelete, {"ID": (1, STRING)}),
        (
            spb.CtrlMsg,
            {
                "MsgType": (1, ENUM),
                "ServerID": (2, STRING),
                "Data": (3, BYTES),
                "RefID": (4, STRING),
            },
        ),
    ],
    ids=lambda v: v.DESCRIPTOR.name if hasattr(v, "DESCRIPTOR") else "",
)
def test_field_numbers_and_types(msg: type, expected: dict[str, tuple[int, int]]) -> None:
    assert fields(msg) == expected


def test_enums() -> None:
    assert [(v.name, v.number) for v in pb.StartPosition.DESCRIPTOR.values] == [
        ("NewOnly", 0),
        ("LastReceived", 1),
        ("TimeDeltaStart", 2),
        ("SequenceStart", 3),
        ("First", 4),
    ]
    assert spb.CtrlMsg.FTHeartbeat == 3 and spb.CtrlMsg.Partitioning == 4


def test_empty_messages_encode_to_nothing() -> None:
    assert pb.PingResponse().SerializeToString() == b""
    assert pb.PubAck.FromString(b"") == pb.PubAck()

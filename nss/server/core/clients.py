"""Registered STAN clients, found by client ID or by connection ID.

Publishes and pings carry the connID (protocol 1), and a replaced client's
connID must stop working at once, so both indexes are kept in step here.
"""

from __future__ import annotations

import re

from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb
from nss.server.core.model import Client

# fullmatch: Go's "$" does not match before a trailing newline as Python's does
_CLIENT_ID_RE = re.compile(r"[a-zA-Z0-9_-]+")


def valid_client_id(client_id: str) -> bool:
    return _CLIENT_ID_RE.fullmatch(client_id) is not None


def client_info(req: pb.ConnectRequest) -> spb.ClientInfo:
    """The stored record of the client a ConnectRequest registers."""
    return spb.ClientInfo(
        ID=req.clientID,
        HbInbox=req.heartbeatInbox,
        ConnID=req.connID,
        Protocol=req.protocol,
        PingInterval=req.pingInterval,
        PingMaxOut=req.pingMaxOut,
    )


class ClientRegistry:
    def __init__(self) -> None:
        self.by_id: dict[str, Client] = {}
        self.by_conn: dict[bytes, Client] = {}
        # client IDs whose duplicate probe is in flight
        self.checking: set[str] = set()

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, client_id: str) -> Client | None:
        return self.by_id.get(client_id)

    def by_conn_id(self, conn_id: bytes) -> Client | None:
        return self.by_conn.get(conn_id)

    def add(self, client: Client) -> None:
        self.by_id[client.id] = client
        if client.conn_id:
            self.by_conn[client.conn_id] = client

    def remove(self, client_id: str) -> Client | None:
        c = self.by_id.pop(client_id, None)
        if c is not None:
            c.closed = True
            if c.conn_id and self.by_conn.get(c.conn_id) is c:
                del self.by_conn[c.conn_id]
            c.stop_heartbeats()
        return c

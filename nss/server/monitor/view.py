"""What monitoring reads of a server.

The endpoints and metrics are written against this view, not against
``StanServer``, so that they neither import the server (which imports the
HTTP glue) nor need one to be tested: a plain object with these attributes
serves."""

from __future__ import annotations

from typing import Any, Protocol

from nss.options import Options, StreamingOptions
from nss.pb import spb_pb2 as spb
from nss.server.core.channels import ChannelRegistry
from nss.server.core.clients import ClientRegistry
from nss.server.delivery import Deliverer
from nss.server.io import IOPath
from nss.stores.base import Store


class ServerView(Protocol):
    opts: Options
    sopts: StreamingOptions
    server_id: str
    start_time: float
    state: str
    info: spb.ServerInfo
    clients: ClientRegistry
    channels: ChannelRegistry
    store: Store
    natsd: Any
    conn: Any
    ft: Any
    ft_takeovers: int

    @property
    def deliverer(self) -> Deliverer | None: ...

    @property
    def io(self) -> IOPath | None: ...

    @property
    def in_msgs(self) -> int: ...

    @property
    def in_bytes(self) -> int: ...

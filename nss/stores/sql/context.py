"""What a channel's SQL stores (``msgs.py``, ``subs.py``) ask of the
``SQLStore`` they belong to: its statements, its journal, its health and
its reads. A protocol, so that the channel stores do not depend on the
store module (which makes them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from sqlalchemy.engine import Connection

from nss.stores.sql.journal import JournaledMsgs, JournaledSubs, Op
from nss.stores.sql.statements import Statements

T = TypeVar("T")


class StoreServices(Protocol):
    stmts: Statements
    no_caching: bool
    # the highest subscription ID ever handed out, for the whole store
    max_sub_id: int

    def check_writable(self) -> None:
        """StoreError while the database is unreachable or the store was
        fenced off: fail before changing anything."""

    def journal(self, op: Op) -> None: ...

    def mark_msgs(self, ms: JournaledMsgs) -> None: ...

    def mark_subs(self, ss: JournaledSubs) -> None: ...

    def discard_rows(self, ms: JournaledMsgs, first: int, last: int) -> None: ...

    def read(self, fn: Callable[[Connection], T]) -> T:
        """A short synchronous read (loop thread)."""

    async def aread(self, fn: Callable[[Connection], T]) -> T:
        """A read off the loop (prefetch)."""

    async def flush(self) -> None: ...

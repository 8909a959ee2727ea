"""StoreLock: one server at a time writes a store (stores.md §1.1).

A store hands out its lock (``Store.lock()``): a POSIX record lock on the
FILE store's ``.rootdir.lck``, a lease row with fenced writes for SQL, none
for MEMORY (FT on MEMORY is refused before a store is opened). The FT loop
of a standby calls ``acquire`` until it owns the store, the active calls
``check`` every heartbeat interval, and a standalone FILE server takes the
lock once so that no second server writes beside it. The calls block on
the disk or the database, so the server makes them from a thread.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable


class StoreLock(ABC):
    """The exclusive use of one store by this server."""

    # Called (from any thread) the first time the store finds, while
    # writing, that another server owns it: a store that fences its writes
    # (SQL) knows before the next ``check``, and the server stops at once.
    # ``lost_reason`` then says why, in the store's words.
    on_lost: Callable[[], None] | None = None
    lost_reason: str = ""
    # Can ``check`` tell two actives apart? True when the lock names one
    # owner and a deposed one finds out at its next check (SQL's lease
    # row). A POSIX lock that let two servers in is broken for both, so
    # FILE keeps Go's guard: the later activation steps down.
    names_one_owner: bool = False

    @abstractmethod
    def acquire(self) -> bool:
        """Try to become the store's only writer.

        True once owned (again True when already owned); False while another
        server holds it; StoreError when it cannot be tried (I/O error,
        read-only datastore, database unreachable). May block (SQL: up to
        ``lock_steal_after`` while it watches a live owner)."""

    @abstractmethod
    def check(self) -> bool:
        """Does this server still own the store?

        True: still the owner. False: another server can or did take it;
        stop serving at once. StoreError: could not tell; the FT machine
        keeps serving and reports it (``nss.server.ft.machine``)."""

    @abstractmethod
    def release(self) -> None:
        """Give the store up (closing); nothing to do when not owned."""

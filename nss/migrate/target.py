"""``--from``/``--to`` locations: which store a URL names, and opening it.

``file:///abs/path`` is a FILE store directory; ``postgresql://`` (or
``postgres://``) and ``mysql://`` URLs are SQL stores, handed to the SQL
store's own DSN handling unchanged.

Limits (``copy_limits``): both stores are opened with the message limits
of the server that serves them (``-c``), so that the destination drops, as
it is written, exactly what that server drops (MaxMsgs, MaxBytes, per
channel too; Go's FILE store leaves such messages on disk until their slice
goes) and an SQL store records the limits that server runs with. MaxAge is
left to that server: expired messages are copied, and it expires them when
it starts, keeping the channel's sequence even when nothing is left. No
channel or subscription is ever refused during a copy. Without ``-c``
nothing is dropped at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from nss import redact
from nss.options import FileOptions, SQLOptions, StoreLimits
from nss.stores.base import Store, StoreError


class TargetError(Exception):
    """A location that cannot be used (bad URL, store in use)."""


@dataclass(frozen=True)
class Target:
    kind: str  # "FILE" or "SQL"
    path: str = ""  # FILE
    driver: str = ""  # SQL
    source: str = ""  # SQL

    def describe(self) -> str:
        """For messages: never the password."""
        if self.kind == "FILE":
            return f"file://{self.path}"
        return redact.dsn(self.source)


def parse_target(url: str) -> Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise TargetError(f"{url!r}: a FILE store is file:///absolute/path")
        return Target("FILE", path=path.rstrip("/") or "/")
    if scheme in ("postgres", "postgresql"):
        return Target("SQL", driver="postgres", source=url)
    if scheme == "mysql":
        return Target("SQL", driver="mysql", source=url)
    raise TargetError(
        f"{redact.dsn(url)!r}: unsupported location "
        "(file:///path, postgresql://user@host:port/db or mysql://user@host:port/db)"
    )


def unlimited() -> StoreLimits:
    return StoreLimits(max_channels=0, max_msgs=0, max_bytes=0, max_age=0.0, max_subscriptions=0)


def copy_limits(server: StoreLimits) -> StoreLimits:
    """``server``'s limits with those a copy must not apply (MaxAge, and
    the counts that refuse channels or subscriptions) lifted."""
    out = server.clone()
    out.max_channels = 0
    for lim in [out, *out.per_channel.values()]:
        # globally 0 is unlimited; per channel 0 inherits (so unlimited too)
        lim.max_age = 0.0
        lim.max_subscriptions = 0
        lim.max_inactivity = 0.0
    return out


def open_store(t: Target, limits: StoreLimits | None = None) -> Store:
    """The store at ``t``, not yet recovered. A FILE store's lock is taken
    so that a server running on it (or another copy) is refused.
    ``limits``: None for no limits at all."""
    lim = unlimited() if limits is None else limits
    if t.kind == "FILE":
        from nss.stores.file import FileStore

        st: Store = FileStore(t.path, lim, FileOptions())
        lock = st.lock()
        try:
            owned = lock is None or lock.acquire()
        except StoreError as e:
            raise TargetError(f"{t.describe()}: cannot lock the store: {e}") from e
        if not owned:
            raise TargetError(f"{t.describe()}: the store is in use by a running server")
        return st
    from nss.stores.sql import SQLStore

    return SQLStore(lim, SQLOptions(driver=t.driver, source=t.source))

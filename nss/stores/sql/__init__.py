"""SQL store (stores.md §4): the Go server's tables and row shapes, one
module per job (see ``store.py``).

The main classes are re-exported lazily: ``nss -t`` checks a data source
with ``dsn`` alone, and should not pay for importing SQLAlchemy."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nss.stores.sql.dsn import parse_source
    from nss.stores.sql.lock import SQLLock
    from nss.stores.sql.msgs import SQLMsgStore
    from nss.stores.sql.store import SQLStore
    from nss.stores.sql.subs import SQLSubStore

__all__ = ["SQLLock", "SQLMsgStore", "SQLStore", "SQLSubStore", "parse_source"]

_WHERE = {
    "SQLLock": "lock",
    "SQLMsgStore": "msgs",
    "SQLStore": "store",
    "SQLSubStore": "subs",
    "parse_source": "dsn",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)

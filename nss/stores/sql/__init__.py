"""SQL store (stores.md §4): the Go server's tables and row shapes, one
module per job (see ``store.py``)."""

from nss.stores.sql.dsn import parse_source
from nss.stores.sql.lock import SQLLock
from nss.stores.sql.msgs import SQLMsgStore
from nss.stores.sql.store import SQLStore
from nss.stores.sql.subs import SQLSubStore

__all__ = ["SQLLock", "SQLMsgStore", "SQLStore", "SQLSubStore", "parse_source"]

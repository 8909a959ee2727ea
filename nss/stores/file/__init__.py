"""FILE store (stores.md §3): the Go server's on-disk layout, one module
per job (see ``store.py``)."""

from nss.stores.file.lock import FileLock
from nss.stores.file.store import FileStore, validate_file_options

__all__ = ["FileLock", "FileStore", "validate_file_options"]

"""Changing the encryption key of a stopped store (the Go server cannot).

Every encrypted payload is opened with the old key and sealed with the new
one (and the chosen cipher); payloads stored before encryption was turned
on stay as they are. A kill at any moment leaves either the old or the new
store whole:

* FILE: the new store is built beside the old one in ``<dir>.rekey-tmp``:
  message files re-encrypted (same record sizes, so the ``.idx`` files stay
  valid), every other file hard-linked (copied where links are refused),
  everything fsynced; then one ``renameat2(RENAME_EXCHANGE)`` swaps the two
  directories atomically, and the old one (now ``<dir>.rekey-tmp``) is
  deleted. A leftover ``.rekey-tmp`` is always disposable: before the swap
  it is an unfinished new store, after it the old one; the next run removes
  it. The store's lock is held throughout, so a running nss is refused.
* SQL: one transaction updates every encrypted row (PostgreSQL/MySQL roll
  an interrupted transaction back).

New nonces count from 2^63 (the server's count from ``last sequence + 1``),
so the re-encrypted messages never share a nonce with messages the server
encrypts later under the same key.

Command line (keys never as arguments: process listings are public)::

    NSS_REKEY_OLD_KEY=... NSS_REKEY_NEW_KEY=... nss-rekey --dir /data/stan --cipher AES
    nss-rekey --sql_driver postgres --sql_source "$DSN" \\
        --old-key-file /run/credentials/old --new-key-file /run/credentials/new
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import os
import shutil
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from nss.stores.base import StoreError
from nss.stores.crypto import (
    ChannelCipher,
    CryptoConfigError,
    DecryptError,
    StoreCrypto,
    cipher_code,
    is_sealed,
)

__all__ = ["RekeyError", "RekeyReport", "main", "rekey"]

OLD_KEY_ENV = "NSS_REKEY_OLD_KEY"
NEW_KEY_ENV = "NSS_REKEY_NEW_KEY"
TMP_SUFFIX = ".rekey-tmp"
# far above any sequence: see the module docstring
_NONCE_BASE = 1 << 63
_REC_HDR = struct.Struct("<II")
_VERSION_SIZE = 4

Progress = Callable[[str], None]


class RekeyError(Exception):
    """The store was left as it was; the message says why."""


@dataclass
class RekeyReport:
    channels: int = 0
    messages: int = 0  # re-encrypted
    plaintext: int = 0  # empty, or stored before encryption: left as they are


class _Recipher:
    """Per channel: open with the old key, seal with the new one."""

    def __init__(self, old: StoreCrypto, new: StoreCrypto, report: RekeyReport) -> None:
        self._old, self._new, self._report = old, new, report

    def channel(self, name: str) -> Callable[[bytes], bytes]:
        opener = self._old.channel(name, 0)
        sealer: ChannelCipher = self._new.channel(name, _NONCE_BASE)
        report = self._report

        def recipher(msg: bytes) -> bytes:
            if not is_sealed(msg):
                report.plaintext += 1
                return msg
            out = sealer.seal_msg(opener.open_msg(msg))
            report.messages += 1
            return out

        return recipher


def rekey(
    store: str,
    old_key: bytes | str,
    new_key: bytes | str,
    cipher: str = "",
    *,
    sql_driver: str = "",
    progress: Progress | None = None,
) -> RekeyReport:
    """Re-encrypt the stopped store ``store`` (a FILE directory, or with
    ``sql_driver`` an SQL data source) from ``old_key`` to ``new_key`` with
    ``cipher`` (AES, CHACHA, "" for the platform's choice, as the server).
    RekeyError leaves the store untouched."""
    try:
        code = cipher_code(cipher)
    except CryptoConfigError as e:
        raise RekeyError(str(e)) from None
    ok = old_key.encode() if isinstance(old_key, str) else old_key
    nk = new_key.encode() if isinstance(new_key, str) else new_key
    if not ok or not nk:
        raise RekeyError("both the old and the new key are required")
    # the old store's cipher code does not matter: data says which it used
    old = StoreCrypto(code, ok)
    new = StoreCrypto(code, nk)
    report = RekeyReport()
    say = progress or (lambda _line: None)
    if sql_driver:
        _rekey_sql(sql_driver, store, _Recipher(old, new, report), report, say)
    else:
        _rekey_file(store, _Recipher(old, new, report), report, say)
    return report


# ---------------------------------------------------------------- FILE


def _rekey_file(root: str, rc: _Recipher, report: RekeyReport, say: Progress) -> None:
    from nss.stores.file.lock import LOCK_FILE, FileLock

    root = os.path.abspath(root.rstrip("/") or "/")
    if not os.path.isfile(os.path.join(root, "server.dat")):
        raise RekeyError(f'"{root}" is not a FILE datastore (no server.dat)')
    lock = FileLock(root)
    try:
        if not lock.acquire():
            raise RekeyError(f'datastore "{root}" is in use by a running server: stop it first')
    except StoreError as e:
        raise RekeyError(str(e)) from None
    tmp = root + TMP_SUFFIX
    try:
        if os.path.lexists(tmp):
            say(f"removing {tmp} left by an interrupted run")
            shutil.rmtree(tmp)
        os.mkdir(tmp)
        shutil.copystat(root, tmp)
        names = sorted(os.listdir(root))
        chans = [n for n in names if os.path.isdir(os.path.join(root, n))]
        for n in names:
            if n not in chans and n != LOCK_FILE:
                _link_or_copy(os.path.join(root, n), os.path.join(tmp, n))
        for i, name in enumerate(chans, 1):
            _rekey_channel_dir(os.path.join(root, name), os.path.join(tmp, name), rc.channel(name))
            report.channels += 1
            say(f"re-encrypted channel {i}/{len(chans)}: {name}")
        _fsync_dir(tmp)
        _exchange(root, tmp)
        _fsync_dir(os.path.dirname(root))
        say("swapped: the datastore now holds the new encryption")
    except DecryptError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RekeyError(f"the old key does not decrypt the store: {e}") from None
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RekeyError(f"unable to re-encrypt {root}: {e}") from None
    finally:
        lock.release()
    shutil.rmtree(tmp, ignore_errors=True)  # the old store
    _fsync_dir(os.path.dirname(root))


def _rekey_channel_dir(src: str, dst: str, recipher: Callable[[bytes], bytes]) -> None:
    os.mkdir(dst)
    shutil.copystat(src, dst)
    for n in sorted(os.listdir(src)):
        s, d = os.path.join(src, n), os.path.join(dst, n)
        if n.startswith("msgs.") and n.endswith(".dat"):
            _rekey_dat(s, d, recipher)
        elif os.path.isdir(s):
            shutil.copytree(s, d, copy_function=_link_or_copy)
        else:
            _link_or_copy(s, d)
    _fsync_dir(dst)


def _rekey_dat(src: str, dst: str, recipher: Callable[[bytes], bytes]) -> None:
    """One message file, record by record (header: size, CRC-32 IEEE). A
    record cut short (an interrupted write) ends the walk: the rest is
    copied as it is, for the server's recovery to judge as before. A whole
    record that fails its CRC stops the run: it could not be re-encrypted."""
    import zlib

    with open(src, "rb") as f:
        buf = f.read()
    out = bytearray(buf[:_VERSION_SIZE])
    i, n = _VERSION_SIZE, len(buf)
    while i + _REC_HDR.size <= n:
        size, crc = _REC_HDR.unpack_from(buf, i)
        start = i + _REC_HDR.size
        rec = buf[start : start + size]
        if size == 0 or len(rec) < size:
            break
        if zlib.crc32(rec) != crc:
            raise OSError(
                errno.EIO,
                f'corrupted record in "{src}" at offset {i} (CRC mismatch; '
                "stores with a non-default file_crc_poly are not supported)",
            )
        try:
            new = recipher(rec)
        except DecryptError as e:
            raise DecryptError(f'{e} (record in "{src}" at offset {i})') from None
        if len(new) != size:  # the .idx files keep offsets and sizes
            raise OSError(errno.EINVAL, f'record size changed in "{src}" at offset {i}')
        out += _REC_HDR.pack(size, zlib.crc32(new))
        out += new
        i = start + size
    out += buf[i:]
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, os.stat(src).st_mode & 0o777)
    try:
        os.write(fd, out)
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_or_copy(src: str, dst: str) -> str:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
        with open(dst, "rb") as f:
            os.fsync(f.fileno())
    return dst


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(a: str, b: str) -> None:
    """Swap two directories in one step (Linux ``renameat2``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available (Linux with glibc 2.28+)")
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, a.encode(), at_fdcwd, b.encode(), rename_exchange) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"atomic exchange of {a} and {b}: {os.strerror(e)}")


# ---------------------------------------------------------------- SQL


def _rekey_sql(
    driver: str, source: str, rc: _Recipher, report: RekeyReport, say: Progress
) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    from nss.stores.sql.db import err_text, make_engines
    from nss.stores.sql.dsn import parse_source

    try:
        engine, reader = make_engines(parse_source(driver, source), 2)
    except StoreError as e:
        raise RekeyError(str(e)) from None
    reader.dispose()
    select = text(
        "SELECT seq, data FROM Messages WHERE id=:id AND seq>:seq ORDER BY seq LIMIT 1000"
    )
    update = text("UPDATE Messages SET data=:data WHERE id=:id AND seq=:seq")
    try:
        with engine.begin() as c:
            chans = c.execute(text("SELECT id, name FROM Channels ORDER BY id")).all()
            for i, (cid, name) in enumerate(chans, 1):
                recipher = rc.channel(name)
                last = 0
                while True:
                    rows = c.execute(select, {"id": cid, "seq": last}).all()
                    if not rows:
                        break
                    changes = []
                    for seq, data in rows:
                        raw = bytes(data) if data is not None else b""
                        try:
                            new = recipher(raw)
                        except DecryptError as e:
                            raise DecryptError(
                                f'{e} (channel "{name}", row Messages(id={cid}, seq={seq}))'
                            ) from None
                        if new is not raw:
                            changes.append({"data": new, "id": cid, "seq": seq})
                    if changes:
                        c.execute(update, changes)
                    last = int(rows[-1][0])
                report.channels += 1
                say(f"re-encrypted channel {i}/{len(chans)}: {name}")
            say("committing")
    except DecryptError as e:
        raise RekeyError(f"the old key does not decrypt the store: {e}") from None
    except SQLAlchemyError as e:
        raise RekeyError(f"sql: unable to re-encrypt: {err_text(e)}") from None
    finally:
        engine.dispose()
    say("committed: the database now holds the new encryption")


# ---------------------------------------------------------------- command line


def _key(what: str, file: str | None, env: str) -> str:
    if file:
        with open(file, encoding="utf-8") as f:
            v = f.read()
        return v[:-1] if v.endswith("\n") else v
    v = os.environ.get(env, "")
    if not v:
        raise RekeyError(f"the {what} key is required: set {env} or --{what}-key-file")
    return v


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="nss-rekey",
        description="Re-encrypt a stopped nss / nats-streaming-server store with a new key. "
        f"Keys come from {OLD_KEY_ENV} / {NEW_KEY_ENV} or from files (one line), "
        "never from arguments.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--dir", help="FILE store directory")
    where.add_argument("--sql_source", help="SQL data source (with --sql_driver)")
    p.add_argument("--sql_driver", default="", help="postgres or mysql")
    p.add_argument("--cipher", default="", help="AES or CHACHA for the new encryption")
    p.add_argument("--old-key-file", help=f"file holding the old key (else ${OLD_KEY_ENV})")
    p.add_argument("--new-key-file", help=f"file holding the new key (else ${NEW_KEY_ENV})")
    a = p.parse_args(argv)
    if a.sql_source and not a.sql_driver:
        p.error("--sql_source needs --sql_driver")
    try:
        old = _key("old", a.old_key_file, OLD_KEY_ENV)
        new = _key("new", a.new_key_file, NEW_KEY_ENV)
        r = rekey(
            a.dir or a.sql_source,
            old,
            new,
            a.cipher,
            sql_driver=a.sql_driver if a.sql_source else "",
            progress=lambda line: print(line, flush=True),
        )
    except (RekeyError, OSError) as e:
        print(f"nss-rekey: {e}", file=sys.stderr)
        return 1
    print(
        f"done: {r.channels} channel(s), {r.messages} message(s) re-encrypted, "
        f"{r.plaintext} stored unencrypted left as they were",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

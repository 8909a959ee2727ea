"""nss-rekey: re-encrypting a stopped store with a new key, crash-safe.

Stores are written by nss's own FILE and SQL stores (and the Go server's
encrypted fixtures), re-keyed by the real command, and read back with the
new key; a SIGKILL in the middle of a run must leave the old store or the
new one whole, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from procs import ROOT, NssServer
from stanclient import StanClient

from nss.options import FileOptions, SQLOptions, StoreLimits
from nss.pb import protocol_pb2 as pb
from nss.server.startup import server_subjects
from nss.stores.base import Store, StoreError
from nss.stores.crypto import CODE_AES, CODE_CHACHA, StoreCrypto
from nss.stores.file import FileStore
from nss.stores.rekey import TMP_SUFFIX, RekeyError, rekey

pytest_plugins = ["pg"]

ENCRYPTED = Path(__file__).resolve().parents[1] / "fixtures" / "go-v0.25.6" / "encrypted"
Contents = dict[str, list[bytes]]


def _payload(ch: int, seq: int) -> bytes:
    if seq % 50 == 3:
        return b""
    return b"%d-%d-" % (ch, seq) + bytes(seq % 251 for _ in range(60))


def _open(kind: str, where: str, crypto: StoreCrypto | None) -> Store:
    st: Store
    if kind == "file":
        st = FileStore(where, StoreLimits(), FileOptions(do_sync=False))
    else:
        from nss.stores.sql import SQLStore

        st = SQLStore(StoreLimits(), SQLOptions("postgres", where))
    st.crypto = crypto
    return st


async def _fill(kind: str, where: str, key: bytes, channels: int, n: int) -> Contents:
    """A store nss encrypted with ``key`` (AES); the first message of each
    channel is stored before encryption was turned on."""
    out: Contents = {}
    plain = _open(kind, where, None)
    assert plain.recover() is None
    plain.init(server_subjects("rekey", "_STAN.discover"))
    for c in range(channels):
        ms = plain.create_channel(f"ch.{c}").msgs
        m = pb.MsgProto(sequence=1, subject=f"ch.{c}", data=b"before")
        ms.store(1, 1, m.SerializeToString())
        await ms.flush()
        out[f"ch.{c}"] = [b"before"]
    await plain.close()
    st = _open(kind, where, StoreCrypto(CODE_AES, key))
    rs = st.recover()
    assert rs is not None
    for name, rc in rs.channels.items():
        ms = rc.channel.msgs
        c = int(name.split(".")[1])
        for seq in range(2, n + 1):
            d = _payload(c, seq)
            ms.store(seq, seq, pb.MsgProto(sequence=seq, subject=name, data=d).SerializeToString())
            out[name].append(d)
        await ms.flush()
    await st.close()
    return out


async def _contents(kind: str, where: str, crypto: StoreCrypto) -> Contents | None:
    """Everything the store holds, read with ``crypto``; None when the key
    does not open it (the start would stop)."""
    st = _open(kind, where, crypto)
    try:
        rs = st.recover()
    except StoreError as e:
        assert "the encryption key does not decrypt" in str(e)
        await st.close()
        return None
    assert rs is not None
    out: Contents = {}
    for name, rc in sorted(rs.channels.items()):
        ms = rc.channel.msgs
        raws = [ms.lookup(s) for s in range(ms.first_sequence(), ms.last_sequence() + 1)]
        assert all(r is not None for r in raws), name
        out[name] = [pb.MsgProto.FromString(r).data for r in raws if r is not None]
    await st.close()
    return out


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != ".rootdir.lck":
            h.update(str(p.relative_to(root)).encode() + p.read_bytes())
    return h.hexdigest()


def _run_rekey(*args: str, old: str, new: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NSS_REKEY_OLD_KEY": old, "NSS_REKEY_NEW_KEY": new}
    return subprocess.Popen(
        [sys.executable, "-m", "nss.stores.rekey", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=str(ROOT),
    )


@pytest.fixture
def pg_where(pg_server: Any) -> Callable[[str], str]:
    def make(name: str) -> str:
        return pg_server.create_db(name)

    return make


async def test_file_rekey_to_a_new_key_and_cipher(tmp_path: Path) -> None:
    d = str(tmp_path / "store")
    want = await _fill("file", d, b"old-key", 3, 120)
    p = _run_rekey("--dir", d, "--cipher", "CHACHA", old="old-key", new="new-key")
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0, out
    assert "done: 3 channel(s), 348 message(s) re-encrypted, 12 stored unencrypted" in out
    assert await _contents("file", d, StoreCrypto(CODE_CHACHA, b"new-key")) == want
    assert await _contents("file", d, StoreCrypto(CODE_AES, b"old-key")) is None
    assert not os.path.exists(d + TMP_SUFFIX)


async def test_nss_migrate_rekey_re_encrypts_in_place(tmp_path: Path) -> None:
    """The same through ``nss-migrate --rekey --from file:///...`` (keys from files)."""
    d = str(tmp_path / "store")
    want = await _fill("file", d, b"old-key", 2, 50)
    (tmp_path / "old").write_text("old-key\n")
    (tmp_path / "new").write_text("new-key\n")
    out = subprocess.run(
        [sys.executable, "-m", "nss.migrate", "--rekey", "--from", f"file://{d}",
         "--cipher", "AES", "--old-key-file", str(tmp_path / "old"),
         "--new-key-file", str(tmp_path / "new")],
        capture_output=True, text=True, timeout=60, cwd=str(ROOT),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "re-encrypted" in out.stdout
    assert await _contents("file", d, StoreCrypto(CODE_AES, b"new-key")) == want
    assert await _contents("file", d, StoreCrypto(CODE_AES, b"old-key")) is None


async def test_rekey_with_the_wrong_old_key_changes_nothing(tmp_path: Path) -> None:
    d = tmp_path / "store"
    await _fill("file", str(d), b"old-key", 2, 20)
    before = _tree_digest(d)
    with pytest.raises(RekeyError, match="the old key does not decrypt the store"):
        rekey(str(d), "not-the-key", "new", "AES")
    assert _tree_digest(d) == before
    assert not os.path.exists(str(d) + TMP_SUFFIX)


async def test_rekey_is_refused_while_a_server_uses_the_datastore(
    tmp_path: Path, nss_factory: type[NssServer]
) -> None:
    d = str(tmp_path / "store")
    await _fill("file", d, b"old-key", 1, 5)
    nss_factory("-store", "file", "-dir", d, "-encryption_key", "old-key", cluster_id="rekey")
    p = _run_rekey("--dir", d, old="old-key", new="new-key")
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 1
    assert "is in use by a running server: stop it first" in out


async def test_go_encrypted_datastore_rekeyed_is_served_with_the_new_key(
    tmp_path: Path, nss_factory: type[NssServer]
) -> None:
    src = ENCRYPTED / "filestore-chacha"
    d = tmp_path / "datastore"
    shutil.copytree(src / "datastore", d)
    old = (src / "KEY").read_text().strip()
    assert rekey(str(d), old, "brand-new", "AES").messages > 0
    manifest = json.loads((src / "manifest.json").read_text())
    srv = nss_factory(
        "-store", "file", "-dir", str(d), "-encryption_key", "brand-new",
        "-sc", str(ENCRYPTED.parent / "limits.conf"), cluster_id="fixture",
    )
    c = await StanClient.connect(srv.url, "reader", cluster_id="fixture")
    for name, ch in manifest["channels"].items():
        sub = await c.subscribe(name, start=pb.First, max_inflight=10000)
        msgs = await sub.take(ch["last"] - ch["first"] + 1)
        assert [hashlib.sha256(m.data).hexdigest() for m in msgs] == ch["sha256"], name
    await c.close()


async def test_sql_rekey(pg_where: Callable[[str], str]) -> None:
    dsn = pg_where("nss_rekey_sql")
    want = await _fill("sql", dsn, b"old-key", 2, 300)
    p = _run_rekey(
        "--sql_driver", "postgres", "--sql_source", dsn, old="old-key", new="new-key"
    )
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0, out
    assert await _contents("sql", dsn, StoreCrypto(CODE_AES, b"new-key")) == want
    assert await _contents("sql", dsn, StoreCrypto(CODE_AES, b"old-key")) is None


@pytest.mark.parametrize("kill_at", ["re-encrypted channel 1/", "swapped"])
async def test_sigkill_mid_rekey_leaves_one_whole_store_file(tmp_path: Path, kill_at: str) -> None:
    """Killed while building the new store, or right after the swap: the
    datastore opens whole with exactly one of the two keys, and the next
    run (or a rekey back) finishes cleanly."""
    d = str(tmp_path / "store")
    want = await _fill("file", d, b"old-key", 4, 15000)
    p = _run_rekey("--dir", d, old="old-key", new="new-key")
    assert p.stdout is not None
    for line in p.stdout:
        if kill_at in line:
            p.send_signal(signal.SIGKILL)
            break
    p.wait(30)
    assert p.returncode == -signal.SIGKILL
    old = await _contents("file", d, StoreCrypto(CODE_AES, b"old-key"))
    new = await _contents("file", d, StoreCrypto(CODE_AES, b"new-key"))
    assert (old is None) != (new is None)
    assert (old or new) == want
    if kill_at == "swapped":
        assert new == want
    print(f"killed at {kill_at!r}: the {'old' if old else 'new'} store is whole, leftover "
          f"{TMP_SUFFIX}: {os.path.exists(d + TMP_SUFFIX)}")
    # the next run removes what the killed one left and completes
    keys = ("old-key", "new-key") if old is not None else ("new-key", "newer-key")
    p = _run_rekey("--dir", d, old=keys[0], new=keys[1])
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0, out
    assert not os.path.exists(d + TMP_SUFFIX)
    assert await _contents("file", d, StoreCrypto(CODE_AES, keys[1].encode())) == want


async def test_sigkill_mid_rekey_leaves_one_whole_store_sql(
    pg_where: Callable[[str], str],
) -> None:
    dsn = pg_where("nss_rekey_kill")
    want = await _fill("sql", dsn, b"old-key", 4, 3000)
    p = _run_rekey("--sql_driver", "postgres", "--sql_source", dsn, old="old-key", new="new-key")
    assert p.stdout is not None
    for line in p.stdout:
        if "re-encrypted channel 1/" in line:
            p.send_signal(signal.SIGKILL)
            break
    p.wait(30)
    assert p.returncode == -signal.SIGKILL
    old = await _contents("sql", dsn, StoreCrypto(CODE_AES, b"old-key"))
    new = await _contents("sql", dsn, StoreCrypto(CODE_AES, b"new-key"))
    assert (old is None) != (new is None)
    assert (old or new) == want

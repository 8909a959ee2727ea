"""Encryption at rest in the Go server's format, without processes.

The format is checked both ways against an independent few-line reading of
Go's ``stores/cryptostore.go`` written here with ``cryptography`` directly
(``go_open``): it opens the FILE datastores the Go server v0.25.6 encrypted
(tests/fixtures/go-v0.25.6/encrypted), and it opens what nss writes. The
server-level tests (Go fixtures served, the Go binary reading nss's stores)
are in tests/integration/test_encryption.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from nss import log
from nss.options import FileOptions, StoreLimits, StreamingOptions
from nss.pb import protocol_pb2 as pb
from nss.pb import spb_pb2 as spb
from nss.stores.base import StoreError
from nss.stores.crypto import (
    CODE_AES,
    CODE_CHACHA,
    ENV_KEY,
    ChannelCipher,
    CryptoConfigError,
    DecryptError,
    StoreCrypto,
    adopt_env_key,
    channel_key,
    cipher_code,
    resolve_key,
)
from nss.stores.file import FileStore

pytest_plugins = ["pg"]

ENCRYPTED = Path(__file__).resolve().parent.parent / "fixtures" / "go-v0.25.6" / "encrypted"


# ------------------------------------------------------------ independent reader
def go_open(key: bytes, channel: str, data: bytes) -> bytes:
    """Go's Decrypt, from the documented format (stores.md §6)."""
    if not data or data[0] not in (1, 2):
        return data
    mkh = hashlib.sha256(key).digest()
    k = hashlib.sha256(bytes(len(mkh) + 1 + len(channel)) + mkh + b"." + channel.encode()).digest()
    aead = AESGCM(k) if data[0] == 1 else ChaCha20Poly1305(k)
    return aead.decrypt(data[1:13], data[13:], None)


def dat_records(path: Path) -> Iterator[pb.MsgProto]:
    """The MsgProto records of a FILE store ``msgs.N.dat`` (4-byte version,
    then ``[size u32][crc u32][record]``)."""
    b = path.read_bytes()
    i = 4
    while i + 8 <= len(b):
        size, _crc = struct.unpack_from("<II", b, i)
        yield pb.MsgProto.FromString(b[i + 8 : i + 8 + size])
        i += 8 + size


def channel_records(d: Path) -> list[pb.MsgProto]:
    files = sorted(d.glob("msgs.*.dat"), key=lambda p: int(p.name.split(".")[1]))
    return [m for f in files for m in dat_records(f)]


@pytest.mark.parametrize("fixture", ["filestore-aes", "filestore-chacha"])
def test_independent_reader_opens_go_datastore(fixture: str) -> None:
    """The reader above is right: it opens what the Go server encrypted."""
    root = ENCRYPTED / fixture
    key = (root / "KEY").read_text().strip().encode()
    manifest = json.loads((root / "manifest.json").read_text())
    code = CODE_AES if fixture.endswith("aes") else CODE_CHACHA
    for name, ch in manifest["channels"].items():
        recs = [m for m in channel_records(root / "datastore" / name) if m.sequence >= ch["first"]]
        assert [m.sequence for m in recs] == list(range(ch["first"], ch["last"] + 1))
        assert {m.data[0] for m in recs if m.data} == {code}
        got = [hashlib.sha256(go_open(key, name, m.data)).hexdigest() for m in recs]
        assert got == ch["sha256"], name


@pytest.mark.parametrize(("cipher", "code"), [("AES", CODE_AES), ("chacha", CODE_CHACHA)])
async def test_nss_records_open_with_independent_reader(
    tmp_path: Path, cipher: str, code: int
) -> None:
    """The other direction, for CI without the Go binary: what nss writes is
    Go's format (cipher code, nonce = random || last seq + 1 counting up)."""
    st = _file_store(tmp_path, StoreCrypto(cipher_code(cipher), b"k-e-y"))
    assert st.recover() is None
    st.init(spb.ServerInfo(ClusterID="c"))
    ms = st.create_channel("a.b").msgs
    payloads = [b"first", b"", b"x" * 300, "é".encode()]
    for seq, p in enumerate(payloads, 1):
        ms.store(seq, seq, pb.MsgProto(sequence=seq, subject="a.b", data=p).SerializeToString())
    await ms.flush()
    await st.close()
    recs = channel_records(tmp_path / "store" / "a.b")
    assert [go_open(b"k-e-y", "a.b", m.data) for m in recs] == payloads
    sealed = [m.data for m in recs if m.data]
    assert all(d[0] == code and len(d) > 29 for d in sealed)
    assert b"first" not in b"".join(sealed)
    counters = [int.from_bytes(d[5:13], "big") for d in sealed]
    assert counters == [1, 2, 3] and len({d[1:5] for d in sealed}) == 1


# ------------------------------------------------------------ stores
def _file_store(tmp_path: Path, crypto: StoreCrypto | None, name: str = "store") -> FileStore:
    st = FileStore(str(tmp_path / name), StoreLimits(), FileOptions(do_sync=False))
    st.crypto = crypto
    return st


@pytest.fixture
def go_aes(tmp_path: Path) -> tuple[Path, bytes, dict]:
    src = ENCRYPTED / "filestore-aes"
    d = tmp_path / "store"
    shutil.copytree(src / "datastore", d)
    return d, (src / "KEY").read_text().strip().encode(), json.loads(
        (src / "manifest.json").read_text()
    )


def test_file_store_reads_go_datastore(tmp_path: Path, go_aes: tuple[Path, bytes, dict]) -> None:
    _, key, manifest = go_aes
    st = _file_store(tmp_path, StoreCrypto(CODE_CHACHA, key))  # decrypts by the stored code
    rs = st.recover()
    assert rs is not None
    for name, ch in manifest["channels"].items():
        ms = rs.channels[name].channel.msgs
        seqs = range(ch["first"], ch["last"] + 1)
        datas = [pb.MsgProto.FromString(ms.lookup(s)).data for s in seqs]
        assert [hashlib.sha256(d).hexdigest() for d in datas] == ch["sha256"]


def test_wrong_key_stops_the_start_naming_the_channel(
    tmp_path: Path, go_aes: tuple[Path, bytes, dict]
) -> None:
    st = _file_store(tmp_path, StoreCrypto(CODE_AES, b"not-the-key"))
    with pytest.raises(StoreError) as e:
        st.recover()
    msg = str(e.value)
    assert msg.startswith('channel "events.a": the encryption key does not decrypt its messages')
    assert "NATS_STREAMING_ENCRYPTION_KEY" in msg and "nss-rekey" in msg


async def _three_messages_then_close(st: Any) -> None:
    """Messages 1-3 ("p1".."p3") on channel "ch" of a store just recovered."""
    st.init(spb.ServerInfo(ClusterID="c"))
    ms = st.create_channel("ch").msgs
    for seq in (1, 2, 3):
        m = pb.MsgProto(sequence=seq, subject="ch", data=b"p%d" % seq)
        ms.store(seq, seq, m.SerializeToString())
    await ms.flush()
    await st.close()


async def test_damaged_ciphertext_is_reported_with_file_and_offset_never_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ciphertext whose record CRC still matches (the damage happened
    before it was written, or CRC checks are off) fails authentication: the
    lookup logs the file and offset like a CRC error and serves nothing."""
    st = _file_store(tmp_path, StoreCrypto(CODE_AES, b"key!"))
    assert st.recover() is None
    await _three_messages_then_close(st)
    dat = tmp_path / "store" / "ch" / "msgs.1.dat"
    b = bytearray(dat.read_bytes())
    offsets = []
    i = 4
    while i < len(b):
        size = struct.unpack_from("<I", b, i)[0]
        offsets.append(i)
        i += 8 + size
    off = offsets[1]
    size = struct.unpack_from("<I", b, off)[0]
    b[off + 8 + size - 1] ^= 0xFF  # last byte of the tag
    struct.pack_into("<I", b, off + 4, zlib.crc32(bytes(b[off + 8 : off + 8 + size])))
    dat.write_bytes(bytes(b))

    out = io.StringIO()
    monkeypatch.setattr(log._SINK, "stream", out)
    st = _file_store(tmp_path, StoreCrypto(CODE_AES, b"key!"))
    rs = st.recover()  # the newest message (3) opens: the key is right
    assert rs is not None
    ms = rs.channels["ch"].channel.msgs
    assert ms.lookup(2) is None
    assert pb.MsgProto.FromString(ms.lookup(3)).data == b"p3"
    assert pb.MsgProto.FromString(ms.lookup(1)).data == b"p1"
    assert ms.lookup(2) is None
    await st.close()
    assert (
        f'Error looking up message 2 on channel "ch": unable to decrypt record for sequence 2 '
        f'in "{dat}" at offset {off}: message authentication failed'
    ) in out.getvalue()


# ------------------------------------------------------------ pieces
def test_channel_key_has_gos_leading_zero_bytes() -> None:
    mkh = hashlib.sha256(b"k").digest()
    assert channel_key(mkh, "foo") == hashlib.sha256(bytes(36) + mkh + b".foo").digest()


def test_seal_open_round_trip_and_passthrough() -> None:
    c = ChannelCipher(CODE_AES, bytes(32), last_seq=41)
    msg = pb.MsgProto(sequence=42, subject="s", reply="r", data=b"hello", timestamp=7)
    raw = msg.SerializeToString()
    sealed = c.seal_msg(raw)
    assert len(sealed) == ChannelCipher.sealed_size(raw)
    assert pb.MsgProto.FromString(sealed).data[5:13] == (42).to_bytes(8, "big")
    assert c.open_msg(sealed) == raw
    empty = pb.MsgProto(sequence=1, subject="s").SerializeToString()
    assert c.seal_msg(empty) == empty == c.open_msg(empty)
    plain = pb.MsgProto(sequence=1, subject="s", data=b"stored before").SerializeToString()
    assert c.open_msg(plain) == plain  # written before encryption was on
    big = pb.MsgProto(sequence=1, data=b"z" * 120).SerializeToString()  # varint grows
    assert len(c.seal_msg(big)) == ChannelCipher.sealed_size(big)
    other = ChannelCipher(CODE_CHACHA, bytes(32), last_seq=0)
    assert other.open_msg(sealed) == raw  # the code byte picks the algorithm
    with pytest.raises(DecryptError):
        ChannelCipher(CODE_AES, b"\x01" * 32, 0).open_msg(sealed)


def test_cipher_names_and_key_sources() -> None:
    assert cipher_code("aes") == CODE_AES and cipher_code("ChaCha") == CODE_CHACHA
    assert cipher_code("") in (CODE_AES, CODE_CHACHA)
    with pytest.raises(CryptoConfigError, match="^encryption cipher not supported: 'DES'"):
        cipher_code("DES")
    assert resolve_key("opt", {ENV_KEY: "env"}) == b"env"
    assert resolve_key("opt", {}) == b"opt"
    with pytest.raises(CryptoConfigError, match=f"^encryption key required: set the {ENV_KEY}"):
        resolve_key("", {})
    assert StoreCrypto.from_options(StreamingOptions(), {ENV_KEY: "x"}) is None
    assert repr(StoreCrypto(CODE_AES, b"secret")) == "StoreCrypto(code=1)"


def test_env_key_is_adopted_and_leaves_the_environment() -> None:
    """The child processes (nats-server, archive scripts) must not inherit
    it; a standby that opens the store later still has it."""
    st = StreamingOptions(encrypt=True, encryption_key="from-flag")
    env = {ENV_KEY: "from-env", "OTHER": "1"}
    adopt_env_key(st, env)
    assert st.encryption_key == "from-env" and env == {"OTHER": "1"}
    off = StreamingOptions()
    env = {ENV_KEY: "unused"}
    adopt_env_key(off, env)
    assert off.encryption_key == "" and not off.encrypt and env == {}


def test_systemd_credential_stands_in_for_the_env_key(tmp_path: Path) -> None:
    (tmp_path / "nats-streaming-encryption-key").write_text("from-credential\n")
    st = StreamingOptions(encrypt=True)
    adopt_env_key(st, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert st.encryption_key == "from-credential"
    st = StreamingOptions(encrypt=True)
    adopt_env_key(st, {"CREDENTIALS_DIRECTORY": str(tmp_path), ENV_KEY: "env-wins"})
    assert st.encryption_key == "env-wins"
    st = StreamingOptions()  # encryption off: the credential is not read
    adopt_env_key(st, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert st.encryption_key == "" and not st.encrypt


def test_data_field_fast_path_agrees_with_the_general_walk() -> None:
    """find_data reads the usual MsgProto layout straight (it runs for every
    message stored encrypted); every shape must give the walk's answer."""
    from nss.stores.crypto import _walk_data, find_data

    r = random.Random(12)
    for _ in range(3000):
        m = pb.MsgProto(
            sequence=r.choice([0, 1, 127, 128, 2**40]),
            subject="s" * r.choice([0, 1, 127, 128, 300]),
            reply="r" * r.choice([0, 5, 200]),
            data=bytes(r.choice([0, 1, 127, 128, 20000])),
            timestamp=r.choice([0, 5, 2**60]),
            redelivered=r.random() < 0.5,
        ).SerializeToString()
        assert find_data(m) == _walk_data(m)


async def test_damaged_ciphertext_row_is_reported_never_served(
    pg_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nss.options import SQLOptions
    from nss.stores.sql import SQLStore

    dsn = pg_server.create_db("nss_crypto_damaged")

    def open_store() -> SQLStore:
        st = SQLStore(StoreLimits(), SQLOptions("postgres", dsn))
        st.crypto = StoreCrypto(CODE_CHACHA, b"key!")
        return st

    st = open_store()
    assert st.recover() is None
    await _three_messages_then_close(st)
    pg_server.admin(  # flip the last byte of the tag of message 2
        "UPDATE Messages SET data = set_byte(data, length(data) - 1, "
        "get_byte(data, length(data) - 1) # 255) WHERE seq = 2",
        "nss_crypto_damaged",
    )
    out = io.StringIO()
    monkeypatch.setattr(log._SINK, "stream", out)
    st = open_store()
    rs = st.recover()
    assert rs is not None
    ms = rs.channels["ch"].channel.msgs
    assert ms.lookup(2) is None
    assert pb.MsgProto.FromString(ms.lookup(3)).data == b"p3"
    await st.close()
    assert (
        'Error looking up message 2 on channel "ch": unable to decrypt row '
        "Messages(id=1, seq=2): message authentication failed"
    ) in out.getvalue()

"""Encryption at rest, in the Go server's format (``stores/cryptostore.go``).

Only the ``data`` field of stored messages is encrypted; subjects,
sequences, timestamps, subscriptions, clients and the server record stay
readable, as in Go. The format, which both servers must read and write:

* master key hash ``MKH = SHA-256(key)``; the key comes from
  ``NATS_STREAMING_ENCRYPTION_KEY`` when set, else ``encryption_key``;
* per-channel key ``SHA-256(Z || MKH || "." || channel)`` where ``Z`` is
  ``len(MKH)+1+len(channel)`` zero bytes (a quirk of the Go code that every
  existing store depends on);
* stored data ``[code][12-byte nonce][ciphertext || 16-byte tag]``, code 1
  AES-256-GCM, 2 ChaCha20-Poly1305, no associated data. Decryption picks the
  algorithm from the code, so switching ciphers keeps old data readable; any
  other first byte (or an empty payload) is data stored before encryption
  was on and is returned as it is;
* the nonce of a channel starts as 12 random bytes whose last 8 are
  ``last sequence + 1`` (big-endian) and counts up (96-bit big-endian) after
  each message, so a nonce is never reused under one key.

The stores keep plaintext in their in-memory caches, so delivery never pays
a decryption: FILE and SQL message stores seal what goes to disk or to the
database (``ChannelCipher.seal_msg``) and open what they read back
(``open_msg``). MEMORY keeps nothing at rest: it stores plaintext but
counts the encrypted size (``sealed_size``), as the Go server does, which
encrypts in memory too.
"""

from __future__ import annotations

import hashlib
import os
import platform
import secrets
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from nss.pb.wire import decode_varint, encode_varint
from nss.stores.base import StoreError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

    from nss.options import StreamingOptions
    from nss.stores.base import ChannelStore, StoreCipher

__all__ = [
    "CODE_AES",
    "CODE_CHACHA",
    "ENV_KEY",
    "ERR_CIPHER_NOT_SUPPORTED",
    "ERR_KEY_REQUIRED",
    "ChannelCipher",
    "CryptoConfigError",
    "DecryptError",
    "StoreCrypto",
    "adopt_env_key",
    "attach",
    "channel_key",
    "cipher_code",
    "resolve_key",
]

ENV_KEY = "NATS_STREAMING_ENCRYPTION_KEY"
CREDENTIAL = "nats-streaming-encryption-key"  # systemd LoadCredential= name
ERR_KEY_REQUIRED = "encryption key required"
ERR_CIPHER_NOT_SUPPORTED = "encryption cipher not supported"

CODE_AES = 1
CODE_CHACHA = 2
NONCE_SIZE = 12
TAG_SIZE = 16
OVERHEAD = 1 + NONCE_SIZE + TAG_SIZE
_NONCE_MASK = (1 << (8 * NONCE_SIZE)) - 1
_DATA_TAG = 0x22  # MsgProto field 4 (data), wire type 2


class CryptoConfigError(ValueError):
    """Encryption options that cannot work: no key, unknown cipher."""


class DecryptError(StoreError):
    """Data that does not decrypt: damaged, or written with another key."""


# ---------------------------------------------------------------- keys


def cipher_code(name: str) -> int:
    """The code of cipher ``name`` (case-insensitive); "" picks AES on x86
    (hardware support) and ChaCha elsewhere, as Go does."""
    n = name.upper()
    if n == "AES":
        return CODE_AES
    if n == "CHACHA":
        return CODE_CHACHA
    if n == "":
        machine = platform.machine().lower()
        return CODE_AES if machine in ("x86_64", "amd64", "i386", "i686", "x86") else CODE_CHACHA
    raise CryptoConfigError(
        f"{ERR_CIPHER_NOT_SUPPORTED}: {name!r} (--encryption_cipher takes AES or CHACHA)"
    )


def resolve_key(option_key: str, env: Mapping[str, str] | None = None) -> bytes:
    """The key in force: the environment variable wins over the option."""
    env = os.environ if env is None else env
    key = env.get(ENV_KEY, "") or option_key
    if not key:
        raise CryptoConfigError(
            f"{ERR_KEY_REQUIRED}: set the {ENV_KEY} environment variable "
            "(or --encryption_key / encryption_key)"
        )
    return key.encode()


def adopt_env_key(st: StreamingOptions, env: dict[str, str] | None = None) -> None:
    """Take the key out of the environment: with encryption on it replaces
    the option (it takes precedence, as in Go), so a standby that opens the
    store later still has it; either way it leaves the environment, so no
    child process (nats-server, archive scripts) inherits it.

    Without the variable, a systemd credential named ``CREDENTIAL`` (unit
    ``LoadCredential=``) stands in for it: the key then lives in a root-only
    file systemd hands to the service, never in the environment."""
    env = os.environ if env is None else env  # type: ignore[assignment]
    key = env.pop(ENV_KEY, "")
    if not (st.encrypt or st.encryption_key):
        return
    if not key and env.get("CREDENTIALS_DIRECTORY"):
        try:
            with open(os.path.join(env["CREDENTIALS_DIRECTORY"], CREDENTIAL), "rb") as f:
                key = f.read().decode().removesuffix("\n")
        except FileNotFoundError:
            pass
    if key:
        st.encryption_key = key
        st.encrypt = True


def master_key_hash(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def channel_key(mkh: bytes, channel: str) -> bytes:
    """The per-channel key, with Go's leading zero bytes (module docstring)."""
    name = channel.encode()
    return hashlib.sha256(bytes(len(mkh) + 1 + len(name)) + mkh + b"." + name).digest()


# ---------------------------------------------------------------- MsgProto


def find_data(msg: bytes) -> tuple[int, int, int] | None:
    """(tag offset, value offset, end) of the ``data`` field of an encoded
    MsgProto, or None when it has none (empty payload). IndexError/
    ValueError on bytes that are not a MsgProto.

    Runs for every message stored encrypted, so the usual layout (sequence,
    subject, reply, data in field order, as nss and Go encode them, short
    subjects) is read straight; anything else takes the general walk."""
    try:
        if msg[0] == 0x08:
            i = 1
            while msg[i] > 0x7F:
                i += 1
            i += 1
            k = msg[i]
            if k == 0x12 and msg[i + 1] < 0x80:
                i += 2 + msg[i + 1]
                k = msg[i]
            if k == 0x1A and msg[i + 1] < 0x80:
                i += 2 + msg[i + 1]
                k = msg[i]
            if k == _DATA_TAG:
                j = i + 2
                ln = msg[i + 1]
                if ln > 0x7F:
                    ln, j = decode_varint(msg, i + 1)
                if j + ln <= len(msg):
                    return i, j, j + ln
    except (IndexError, ValueError):
        pass
    return _walk_data(msg)


def _walk_data(msg: bytes) -> tuple[int, int, int] | None:
    i, n = 0, len(msg)
    while i < n:
        start = i
        key = msg[i]
        i += 1
        if key >= 0x80:
            i -= 1
            key, i = decode_varint(msg, i)
        wire = key & 7
        if wire == 2:
            ln = msg[i]
            i += 1
            if ln >= 0x80:
                ln, i = decode_varint(msg, i - 1)
            if key == _DATA_TAG:
                if i + ln > n:
                    raise ValueError("truncated data field")
                return start, i, i + ln
            i += ln
        elif wire == 0:
            while msg[i] >= 0x80:
                i += 1
            i += 1
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return None


def is_sealed(msg: bytes) -> bool:
    """Whether an encoded MsgProto carries an encrypted payload."""
    loc = find_data(msg)
    return loc is not None and loc[2] > loc[1] and msg[loc[1]] in (CODE_AES, CODE_CHACHA)


# ---------------------------------------------------------------- ciphers


class ChannelCipher:
    """Encryption of one channel's messages (one nonce sequence)."""

    __slots__ = ("code", "_aes", "_chacha", "_seal", "_prefix", "_nonce")

    def __init__(self, code: int, key: bytes, last_seq: int) -> None:
        # imported here: a server without encryption does not load the
        # library (7 MB of resident memory)
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

        self.code = code
        self._aes = AESGCM(key)
        self._chacha = ChaCha20Poly1305(key)
        self._seal = (self._aes if code == CODE_AES else self._chacha).encrypt
        self._prefix = bytes((code,))
        head = int.from_bytes(secrets.token_bytes(NONCE_SIZE - 8), "big")
        self._nonce = (head << 64) | ((last_seq + 1) & 0xFFFFFFFFFFFFFFFF)

    def encrypt(self, data: bytes) -> bytes:
        nonce = self._nonce.to_bytes(NONCE_SIZE, "big")
        self._nonce = (self._nonce + 1) & _NONCE_MASK
        return self._prefix + nonce + self._seal(nonce, data, None)

    def decrypt(self, data: bytes) -> bytes:
        """Plaintext of ``data``; data stored unencrypted passes through.
        DecryptError when it does not authenticate."""
        if not data:
            return data
        code = data[0]
        if code == CODE_AES:
            aead: AESGCM | ChaCha20Poly1305 = self._aes
        elif code == CODE_CHACHA:
            aead = self._chacha
        else:
            return data
        if len(data) <= 1 + NONCE_SIZE:
            raise DecryptError(f"trying to decrypt data that is not (len={len(data)})")
        from cryptography.exceptions import InvalidTag

        try:
            return aead.decrypt(data[1 : 1 + NONCE_SIZE], data[1 + NONCE_SIZE :], None)
        except InvalidTag:
            raise DecryptError("message authentication failed") from None

    # -- whole encoded MsgProto ------------------------------------------------

    def seal_msg(self, msg: bytes) -> bytes:
        """``msg`` (an encoded MsgProto) with its payload encrypted. Runs
        for every message stored: ``encrypt`` is inlined."""
        loc = find_data(msg)
        if loc is None:
            return msg
        tag, val, end = loc
        nonce = self._nonce.to_bytes(NONCE_SIZE, "big")
        self._nonce = (self._nonce + 1) & _NONCE_MASK
        ct = self._seal(nonce, msg[val:end], None)
        ln = len(ct) + 1 + NONCE_SIZE
        head = b"\x22" + (bytes((ln,)) if ln < 0x80 else encode_varint(ln)) + self._prefix + nonce
        return b"".join((msg[:tag], head, ct, msg[end:]))

    def open_msg(self, msg: bytes) -> bytes:
        """``msg`` as stored, with its payload decrypted (DecryptError)."""
        try:
            loc = find_data(msg)
        except (IndexError, ValueError) as e:
            raise DecryptError(f"not a message record: {e}") from None
        if loc is None:
            return msg
        tag, val, end = loc
        code = msg[val]
        if code != CODE_AES and code != CODE_CHACHA:
            return msg
        data = self.decrypt(msg[val:end])
        return b"".join((msg[:tag], b"\x22", encode_varint(len(data)), data, msg[end:]))

    @staticmethod
    def sealed_size(msg: bytes) -> int:
        """Size of ``seal_msg(msg)`` without encrypting (byte accounting is
        on the stored size, as in Go)."""
        loc = find_data(msg)
        if loc is None:
            return len(msg)
        tag, val, end = loc
        n = end - val
        return len(msg) - (end - tag) + 1 + len(encode_varint(n + OVERHEAD)) + n + OVERHEAD


class StoreCrypto:
    """The store-wide part: cipher choice and master key hash."""

    __slots__ = ("code", "_mkh")

    def __init__(self, code: int, key: bytes) -> None:
        self.code = code
        self._mkh = master_key_hash(key)

    @classmethod
    def from_options(
        cls, st: StreamingOptions, env: Mapping[str, str] | None = None
    ) -> StoreCrypto | None:
        """None when encryption is off (neither ``encrypt`` nor a key);
        CryptoConfigError for a missing key or an unknown cipher."""
        if not (st.encrypt or st.encryption_key):
            return None
        code = cipher_code(st.encryption_cipher)
        return cls(code, resolve_key(st.encryption_key, env))

    def channel(self, name: str, last_seq: int) -> ChannelCipher:
        return ChannelCipher(self.code, channel_key(self._mkh, name), last_seq)

    def attach(self, channels: Iterable[ChannelStore]) -> None:
        """Give each channel's message store its cipher, after checking
        that the key opens what the channel already holds: a wrong key
        stops the start here, naming the channel, rather than failing
        every delivery."""
        for cs in channels:
            ms = cs.msgs
            cipher = self.channel(cs.name, ms.last_sequence())
            _verify(cipher, cs.name, ms)
            ms.cipher = cipher

    def __repr__(self) -> str:  # never the key
        return f"StoreCrypto(code={self.code})"


def attach(crypto: StoreCipher | None, channels: Iterable[ChannelStore]) -> None:
    """``crypto.attach(channels)`` when encryption is on (recovery)."""
    if crypto is not None:
        crypto.attach(channels)


def _verify(cipher: ChannelCipher, name: str, ms: object) -> None:
    """Open the newest message (or the oldest) that is encrypted."""
    raw_message = getattr(ms, "raw_message", None)
    if raw_message is None:
        return
    first, last = ms.first_sequence(), ms.last_sequence()  # type: ignore[attr-defined]
    if last == 0 or first > last:
        return
    for seq in dict.fromkeys((last, first)):
        try:
            raw = raw_message(seq)
            if raw is None or not is_sealed(raw):
                continue  # no payload, or stored before encryption was on
        except (OSError, StoreError, IndexError, ValueError):
            continue  # unreadable for another reason: reported when read
        try:
            cipher.open_msg(raw)
            return
        except DecryptError as e:
            raise StoreError(
                f'channel "{name}": the encryption key does not decrypt its messages '
                f"(sequence {seq}: {e}); start with the key the data was written with "
                f"({ENV_KEY} or encryption_key), or change the key offline with nss-rekey"
            ) from None

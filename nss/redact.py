"""Keeping credentials out of everything nss prints or serves.

nss is handed secrets in many shapes: NATS URLs (``-ns
nats://user:pass@host``, ``nats://token@host``, route and cluster URLs),
SQL data sources (libpq ``password=...``, ``postgresql://u:pw@host``,
go-sql-driver ``user:pw@tcp(host)/db``), ``--pass``/``--auth`` values and
the encryption key. They are needed to connect and must never reach a log
line, an HTTP answer or an error message. nats-server shows such values as
``[REDACTED]``; nss does the same, in two layers:

* call sites that print a URL or data source pass it through :func:`url`,
  :func:`url_list` or :func:`text`, so the line stays useful
  (``Connected to NATS at nats://alice:[REDACTED]@127.0.0.1:4222``);
* the log sink runs every line through :func:`text` as a safety net, which
  also replaces the configured secret values (:func:`register`) wherever
  they appear, e.g. in a third-party error message.

:func:`text` is idempotent, so the two layers compose. Stdlib only: the log
module imports this at start-up.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from nss.options import Options

__all__ = [
    "REDACTED",
    "dsn",
    "has_credentials",
    "register",
    "register_options",
    "registered",
    "text",
    "unregister_all",
    "url",
    "url_credentials",
    "url_list",
]

REDACTED = "[REDACTED]"

# A user name alone is a token in these schemes (``nats://s3cr3t@host``);
# elsewhere (``postgresql://nss@db``) it is just a user name.
_TOKEN_SCHEMES = frozenset({"nats", "tls", "ws", "wss"})

# Shorter configured values are not replaced in free text: "pw" would maim
# every line. Structural redaction (URLs, password=) still covers them.
MIN_KNOWN_LENGTH = 4

# scheme://userinfo@ - the userinfo runs to the last "@" of the URL, and may
# not swallow the next URL of a comma list (tempered by "://").
_URL_RE = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<info>(?:(?!://)\S)*)@")
# libpq key=value and URL query forms: password=x, password='a b', ?password=x&
_KV_RE = re.compile(r"(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&]*)")
# go-sql-driver: user:password@tcp(host:3306)/db, user:password@/db
_MYSQL_RE = re.compile(r"(?<![\w/:@\[])(?P<user>[^\s:@/]+):(?P<pw>\S*)@(?=[a-z0-9]*\(|/)")

_known: set[str] = set()
_known_sorted: list[str] = []


def _redact_userinfo(scheme: str, info: str) -> str:
    user, sep, _ = info.partition(":")
    if sep:
        return f"{user}:{REDACTED}"
    if scheme.lower() in _TOKEN_SCHEMES:
        return REDACTED
    return user


def _url_sub(m: re.Match[str]) -> str:
    scheme = m.group("scheme")
    return f"{scheme}://{_redact_userinfo(scheme, m.group('info'))}@"


def url(value: str) -> str:
    """One URL with its password (or NATS token) replaced by ``[REDACTED]``;
    the user name and the address stay, so the line still says where."""
    return text(value)


def url_list(value: str) -> str:
    """A comma-separated URL list (``-ns``, ``--routes``), each redacted."""
    return ",".join(url(u) for u in value.split(","))


def text(value: str) -> str:
    """Free text with every credential nss knows how to spot replaced:
    URL userinfo, ``password=`` settings, MySQL DSN passwords and the
    registered secret values."""
    if "@" in value:
        value = _URL_RE.sub(_url_sub, value)
        value = _MYSQL_RE.sub(lambda m: f"{m.group('user')}:{REDACTED}@", value)
    if "=" in value:
        value = _KV_RE.sub(lambda m: m.group(1) + REDACTED, value)
    for secret in _known_sorted:
        if secret in value:
            value = value.replace(secret, REDACTED)
    return value


def _is_kv_source(source: str) -> bool:
    return re.match(r"\s*[A-Za-z_]+\s*=", source) is not None


def _mysql_userinfo(source: str) -> tuple[int, str, str] | None:
    """Where go-sql-driver finds the credentials of ``user:pw@net(addr)/db``:
    before the last ``@`` that precedes the last ``/``. ``(at, user, pw)``."""
    slash = source.rfind("/")
    at = source.rfind("@", 0, slash if slash >= 0 else len(source))
    if at < 0:
        return None
    user, _, password = source[:at].partition(":")
    return at, user, password


def dsn(source: str) -> str:
    """An SQL data source in any of its forms (libpq ``key=value``, URL,
    go-sql-driver), even a malformed one, with its password redacted."""
    if "://" in source or _is_kv_source(source):
        return text(source)
    found = _mysql_userinfo(source)
    if found is not None:
        at, user, password = found
        source = f"{user}:{REDACTED}{source[at:]}" if password else source
    return text(source)


def has_credentials(value: str) -> bool:
    """True when a URL (or any URL of a comma list) carries userinfo."""
    return any(_URL_RE.search(u) is not None for u in value.split(","))


def url_credentials(value: str) -> tuple[str, str]:
    """``(user, password)`` of one URL, percent-decoded ("" when absent)."""
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return "", ""
    return unquote(parts.username or ""), unquote(parts.password or "")


# ---------------------------------------------------------------------------
# Known secret values


def register(*secrets: str) -> None:
    """Values :func:`text` replaces wherever they appear (longest first)."""
    global _known_sorted
    for s in secrets:
        if s and len(s) >= MIN_KNOWN_LENGTH and s != REDACTED:
            _known.add(s)
    _known_sorted = sorted(_known, key=len, reverse=True)


def registered() -> frozenset[str]:
    return frozenset(_known)


def unregister_all() -> None:
    """Forget the registered values (tests)."""
    global _known_sorted
    _known.clear()
    _known_sorted = []


def _url_secrets(urls: str) -> Iterable[str]:
    for u in urls.split(","):
        m = _URL_RE.search(u)
        if m is None:
            continue
        user, password = url_credentials(u)
        raw_user, sep, raw_pw = m.group("info").partition(":")
        if sep:
            yield from (password, raw_pw)
        elif m.group("scheme").lower() in _TOKEN_SCHEMES:
            yield from (user, raw_user)


def _source_secrets(source: str) -> Iterable[str]:
    """The password of an SQL data source in any of its three forms."""
    if "://" in source:
        yield from _url_secrets(source)
    elif _is_kv_source(source):
        for m in _KV_RE.finditer(source):
            v = m.group(2)
            if v.startswith("'"):
                v = re.sub(r"\\(.)", r"\1", v[1:-1] if v.endswith("'") else v[1:])
            yield v
    elif (found := _mysql_userinfo(source)) is not None:
        yield found[2]


def register_options(opts: Options) -> None:
    """Register every secret the options carry (call once they are final)."""
    s, n = opts.streaming, opts.nats
    register(n.password, n.auth_token, s.password, s.token, s.encryption_key)
    register(*_url_secrets(s.nats_server_url))
    register(*_url_secrets(n.routes), *_url_secrets(n.cluster_listen))
    register(*_source_secrets(s.sql_options.source))

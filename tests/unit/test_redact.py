"""nss.redact: the one helper that keeps credentials out of logs, endpoints
and errors."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from nss import log, redact
from nss.cli import parse_args
from nss.redact import REDACTED


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    redact.unregister_all()
    yield
    redact.unregister_all()


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("nats://alice:S3CRET@127.0.0.1:4222", f"nats://alice:{REDACTED}@127.0.0.1:4222"),
        # a lone user name is a token in a NATS URL
        ("nats://T0KEN@h:4222", f"nats://{REDACTED}@h:4222"),
        ("tls://T0KEN@h:4222", f"tls://{REDACTED}@h:4222"),
        # ... but only a user name in an SQL URL
        ("postgresql://nss@db:5432/nss", "postgresql://nss@db:5432/nss"),
        (
            "postgresql://nss:pw@db/nss?sslmode=disable",
            f"postgresql://nss:{REDACTED}@db/nss?sslmode=disable",
        ),
        (
            "postgres://u@db/n?password=pw&sslmode=disable",
            f"postgres://u@db/n?password={REDACTED}&sslmode=disable",
        ),
        # unescaped "@", "," and "/" in a password do not leak its tail
        ("nats://u:p@ss@host:1", f"nats://u:{REDACTED}@host:1"),
        ("nats://u:p,w@host:1", f"nats://u:{REDACTED}@host:1"),
        ("nats://host:4222", "nats://host:4222"),
        ("", ""),
    ],
)
def test_url(raw: str, shown: str) -> None:
    assert redact.url(raw) == shown
    assert redact.url(shown) == shown  # idempotent: the log sink redacts again


def test_url_list_keeps_every_address() -> None:
    assert redact.url_list("nats://a:b@h1:1,nats://h2:2,nats://tok@h3:3") == (
        f"nats://a:{REDACTED}@h1:1,nats://h2:2,nats://{REDACTED}@h3:3"
    )


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (
            "host=db user=nss password=pw dbname=nss",
            f"host=db user=nss password={REDACTED} dbname=nss",
        ),
        ("host=db password='a b\\' c' dbname=nss", f"host=db password={REDACTED} dbname=nss"),
        ("host=db PASSWORD = pw", f"host=db PASSWORD = {REDACTED}"),
        ("postgresql://nss:pw@db/nss", f"postgresql://nss:{REDACTED}@db/nss"),
        ("nss:pw@tcp(db:3306)/nss?timeout=5s", f"nss:{REDACTED}@tcp(db:3306)/nss?timeout=5s"),
        ("nss:p/w@unix(/run/m.sock)/nss", f"nss:{REDACTED}@unix(/run/m.sock)/nss"),
        ("nss:pw@/nss", f"nss:{REDACTED}@/nss"),
        # malformed: still no password
        ("nss:pw@bogus", f"nss:{REDACTED}@bogus"),
        ("nss@tcp(db)/nss", "nss@tcp(db)/nss"),
    ],
)
def test_dsn(raw: str, shown: str) -> None:
    assert redact.dsn(raw) == shown


def test_text_finds_credentials_in_a_sentence() -> None:
    line = (
        "could not connect to NATS at nats://a:pw1@h:1, nats://tok@h:2: refused; "
        "sql source host=db password=pw2 and nss:pw3@tcp(db:3306)/nss"
    )
    out = redact.text(line)
    for secret in ("pw1", "tok", "pw2", "pw3"):
        assert secret not in out
    assert "nats://a:[REDACTED]@h:1" in out and "host=db" in out
    # ordinary lines pass untouched
    plain = "[Client:me] Started new subscription, subject=foo@bar inbox=_INBOX.x"
    assert redact.text(plain) == plain


def test_registered_values_are_replaced_anywhere() -> None:
    redact.register("t0psecret-token", "pw")  # "pw" is too short to hunt for
    assert redact.text("auth failed for t0psecret-token!") == f"auth failed for {REDACTED}!"
    assert redact.text("a pwd field") == "a pwd field"


def test_register_options_collects_every_secret() -> None:
    opts = parse_args(
        [
            "--pass",
            "natspass1",
            "--auth",
            "natstoken1",
            "-ns",
            "nats://u:nsurlpass@h:1,nats://nstoken99@h:2",
            "--cluster",
            "nats://cu:clusterpw@h:6222",
            "--routes",
            "nats://ru:routepw1@h:6223",
            "--sql_source",
            "host=db password='sql pass' dbname=x",
            "--user",
            "visible-user",
        ]
    ).options
    opts.streaming.password = "stanpass1"
    opts.streaming.token = "stantoken1"
    redact.register_options(opts)
    assert redact.registered() == {
        "natspass1",
        "natstoken1",
        "nsurlpass",
        "nstoken99",
        "clusterpw",
        "routepw1",
        "sql pass",
        "stanpass1",
        "stantoken1",
    }


@pytest.mark.parametrize(
    "source",
    ["postgresql://u:sqlpass1@h/d", "u:sqlpass1@tcp(h:3306)/d", "u:sqlpass1@bogus"],
)
def test_register_options_sql_forms(source: str) -> None:
    opts = parse_args(["--sql_source", source]).options
    redact.register_options(opts)
    assert "sqlpass1" in redact.registered()


def test_log_sink_redacts_every_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The safety net: whatever a call site forgets, the line is redacted."""
    out = io.StringIO()
    monkeypatch.setattr(log._SINK, "stream", out)
    redact.register("t0psecret-token")
    logger = log.get_logger()
    logger.error("connect to nats://alice:hunter22@h:4222 with t0psecret-token failed")
    text = out.getvalue()
    assert "hunter22" not in text and "t0psecret-token" not in text
    assert f"nats://alice:{REDACTED}@h:4222" in text

"""The monitoring port's HTTP/1.1 (nss/server/monitor/wire.py), without sockets.

Requests are fed to a StreamReader as a client would send them; answers
from the NATS child are parsed from bytes as Go's net/http writes them.
"""

from __future__ import annotations

import asyncio

import pytest

from nss.server.monitor import wire


def reader_of(data: bytes, limit: int = wire.MAX_HEAD) -> asyncio.StreamReader:
    r = asyncio.StreamReader(limit=limit)
    r.feed_data(data)
    r.feed_eof()
    return r


async def requests_of(data: bytes) -> list[wire.Request]:
    r = reader_of(data)
    out = []
    while (req := await wire.read_request(r)) is not None:
        out.append(req)
    return out


async def test_request_line_headers_path_and_query() -> None:
    [req] = await requests_of(
        b"GET /streaming/channelsz%2F?channel=foo&subs=1&subs=0&empty= HTTP/1.1\r\n"
        b"Host: x\r\nAccept:  text/plain \r\n\r\n"
    )
    assert (req.method, req.version) == ("GET", "HTTP/1.1")
    assert req.target == "/streaming/channelsz%2F?channel=foo&subs=1&subs=0&empty="
    assert req.path == "/streaming/channelsz/"
    # the first value of a repeated parameter, as Go's Query().Get
    assert req.query == {"channel": "foo", "subs": "1", "empty": ""}
    assert req.header("accept") == "text/plain"
    assert req.header("Missing") is None
    assert req.body == b""


async def test_keep_alive_rules_and_pipelined_requests() -> None:
    reqs = await requests_of(
        b"\r\nGET /a HTTP/1.1\r\n\r\n"  # an empty line before a request is skipped
        b"GET /b HTTP/1.1\r\nConnection: close\r\n\r\n"
        b"GET /c HTTP/1.0\r\n\r\n"
        b"GET /d HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
    )
    assert [(r.path, r.keep_alive) for r in reqs] == [
        ("/a", True),
        ("/b", False),
        ("/c", False),
        ("/d", True),
    ]


async def test_bodies_by_length_and_chunked() -> None:
    reqs = await requests_of(
        b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
        b"POST /y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: t\r\n\r\n"
        b"GET /z HTTP/1.1\r\n\r\n"
    )
    assert [(r.path, r.body) for r in reqs] == [("/x", b"hello"), ("/y", b"abcde"), ("/z", b"")]


async def test_absolute_form_target_is_routed_on_its_path() -> None:
    [req] = await requests_of(b"GET http://h:8222/varz?x=1 HTTP/1.1\r\n\r\n")
    assert (req.target, req.path, req.query) == ("/varz?x=1", "/varz", {"x": "1"})


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET  /x HTTP/1.1\r\n\r\n", 400),
        (b"GET x HTTP/1.1\r\n\r\n", 400),
        (b"GET /x HTTP/2.0\r\n\r\n", 505),
        (b"GET /x HTTP/1.1\r\nNo colon here\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
        (b"GET /x HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
        (b"GET /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET /x HTTP/1.1\r\nExpect: something\r\n\r\n", 417),
        (b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (b"GET /x HTTP/1.1\r\n" + b"A: " + b"b" * wire.MAX_HEAD + b"\r\n\r\n", 431),
        (b"GET /x HTTP/1.1\r\n" + b"A: b\r\n" * (wire.MAX_HEAD // 6 + 1) + b"\r\n", 431),
    ],
)
async def test_malformed_requests_get_goes_statuses(data: bytes, status: int) -> None:
    with pytest.raises(wire.HTTPError) as e:
        await wire.read_request(reader_of(data))
    assert e.value.status == status
    out = wire.error_response(e.value)
    assert out.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"\r\nConnection: close\r\n" in out


async def test_a_request_cut_short_is_no_request() -> None:
    for data in (b"GET /x HTTP/1.1\r\nHost: a", b"GET /x HTTP/1.1\r\n", b"POST / HTTP/1.1\r\n"
                 b"Content-Length: 9\r\n\r\nabc"):  # fmt: skip
        with pytest.raises(asyncio.IncompleteReadError):
            await wire.read_request(reader_of(data))
    assert await wire.read_request(reader_of(b"")) is None


def test_render_sets_length_date_and_close() -> None:
    out = wire.render(200, [("Content-Type", "application/json")], b"{}", close=True)
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 200 OK"
    assert "Content-Type: application/json" in lines
    assert "Content-Length: 2" in lines and "Connection: close" in lines
    assert any(x.startswith("Date: ") and x.endswith(" GMT") for x in lines)
    assert body == b"{}"


def test_render_head_204_and_a_header_that_would_split_the_answer() -> None:
    head = wire.render(200, [], b"abc", head=True)
    assert head.endswith(b"Content-Length: 3\r\n\r\n")
    no_content = wire.render(204, [], b"")
    assert b"Content-Length" not in no_content and no_content.endswith(b"\r\n\r\n")
    evil = wire.render(200, [("X", "a\r\nSet-Cookie: b")], b"")
    assert b"Set-Cookie" not in evil
    assert wire.render(299, [], b"").startswith(b"HTTP/1.1 299 status code 299\r\n")


def test_http_date_is_rfc_7231() -> None:
    assert wire.http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert wire.http_date(1_795_000_000) == "Wed, 18 Nov 2026 11:06:40 GMT"


def test_answers_of_the_nats_child() -> None:
    plain = wire.parse_answer(
        b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    assert (plain.status, plain.body) == (200, b"{}")
    assert ("Content-Type", "application/json") in plain.headers
    to_eof = wire.parse_answer(b"HTTP/1.0 301 Moved Permanently\r\nLocation: /x/\r\n\r\nbody")
    assert (to_eof.status, to_eof.body) == (301, b"body")
    chunked = wire.parse_answer(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n1\r\ne\r\n0\r\n\r\n"
    )
    assert chunked.body == b"abcde"
    truncated = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nabc"
    for bad in (b"", b"garbage", b"SMTP 200\r\n\r\n", b"HTTP/1.1 2x0 OK\r\n\r\n", truncated):
        with pytest.raises(ValueError):
            wire.parse_answer(bad)


class _Writer:
    def __init__(self) -> None:
        self.out = b""

    def write(self, data: bytes) -> None:
        self.out += data


async def test_expect_100_continue_is_answered_before_the_body_is_read() -> None:
    w = _Writer()
    r = asyncio.StreamReader()
    r.feed_data(b"POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    task = asyncio.ensure_future(wire.read_request(r, w))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    # the client holds its body back until told to go on
    assert w.out == b"HTTP/1.1 100 Continue\r\n\r\n" and not task.done()
    r.feed_data(b"abc")
    req = await asyncio.wait_for(task, 5)
    assert req is not None and req.body == b"abc"
    # nothing to continue: no body, or too large a one (refused at once)
    w2 = _Writer()
    no_body = b"GET /x HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"
    assert await wire.read_request(reader_of(no_body), w2) is not None  # type: ignore[arg-type]
    big = b"POST /x HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 9999999\r\n\r\n"
    with pytest.raises(wire.HTTPError) as e:
        await wire.read_request(reader_of(big), w2)  # type: ignore[arg-type]
    assert e.value.status == 413 and w2.out == b""


class _Broken:
    """A server view whose channels cannot be read (a bug in an endpoint)."""

    def __init__(self, opts: object) -> None:
        self.opts = opts
        self.natsd = None

    @property
    def channels(self) -> object:
        raise RuntimeError("boom")


async def test_an_endpoint_failing_answers_500_and_the_connection_goes_on() -> None:
    from nss.options import Options
    from nss.server.monitor.http import MonitorHTTP

    opts = Options()
    opts.nats.host, opts.nats.http_port = "127.0.0.1", -1  # -1: a free port
    mon = MonitorHTTP.bind(_Broken(opts))  # type: ignore[arg-type]
    assert mon is not None
    await mon.start()
    mon.set_ready()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", mon.port)
        writer.write(
            b"GET /streaming/channelsz HTTP/1.1\r\n\r\n"
            b"GET /streaming HTTP/1.1\r\nConnection: close\r\n\r\n"
        )
        out = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    finally:
        await mon.close()
    first, _, second = out.partition(b"\r\n\r\nInternal Server Error\n")
    assert first.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), out
    assert second.startswith(b"HTTP/1.1 200 OK\r\n"), out


async def test_hostile_bytes_give_a_request_an_http_error_or_an_end() -> None:
    """Mangled requests (seeded): every outcome is one the listener handles."""
    import random

    rng = random.Random(11)
    seeds = [
        b"GET /streaming/serverz?subs=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /varz HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc",
        b"PUT /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ]
    alphabet = b"\r\n :;0123456789aAfF-\x00\xff\t%?/"
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(len(data) + 1)
            op = rng.random()
            if op < 0.4:
                data[i:i] = bytes([rng.choice(alphabet)])
            elif op < 0.7 and i < len(data):
                del data[i]
            elif i < len(data):
                data[i] = rng.choice(alphabet)
        try:
            req = await wire.read_request(reader_of(bytes(data)))
        except (wire.HTTPError, asyncio.IncompleteReadError):
            continue
        if req is not None:
            assert req.path.startswith("/") or req.path == "*"
            _ = (req.query, req.keep_alive)

"""HTTP/1.1 for the monitoring port, on asyncio streams.

The monitor answers a few GETs with small documents and passes every other
path to the NATS child. A general HTTP stack (aiohttp and its client) cost
12 MB of resident memory and 0.12 s of start-up for that, while the Go
server serves the same port from the process it already is. This is the
part of HTTP/1.1 those exchanges use:

* towards the user: one request at a time per connection, kept alive as
  HTTP/1.1 and HTTP/1.0 define, a body by Content-Length or chunked, and
  the limits and error statuses of Go's ``net/http`` for what is malformed;
* towards the child: one exchange per request over a fresh loopback
  connection, asked as HTTP/1.0 so that Go answers with a plain body up to
  the end of the stream (a chunked answer is decoded all the same).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote, urlsplit

# Request line plus headers; Go allows 1 MB, but nothing a monitoring
# client sends comes near this, and it bounds what a hostile one can park.
MAX_HEAD = 64 * 1024
# The endpoints take no body; the child's take none either.
MAX_BODY = 1 << 20

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class HTTPError(Exception):
    """A request that cannot be served: answered with ``status`` and the
    connection closed, as Go's server does for a malformed request."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


@dataclass
class Request:
    method: str
    target: str  # as sent: the raw path and query string
    version: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def path(self) -> str:
        """The decoded path, which Go's ServeMux routes on."""
        return unquote(self.target.partition("?")[0])

    @property
    def query(self) -> dict[str, str]:
        """First value of each query parameter (Go's ``URL.Query().Get``)."""
        out: dict[str, str] = {}
        for k, v in parse_qsl(self.target.partition("?")[2], keep_blank_values=True):
            out.setdefault(k, v)
        return out

    def header(self, name: str) -> str | None:
        return header(self.headers, name)

    @property
    def keep_alive(self) -> bool:
        conn = (self.header("Connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    """The first value of header ``name`` (any case), or None."""
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def _parse_headers(lines: list[bytes]) -> list[tuple[str, str]]:
    out = []
    for raw in lines:
        if raw[:1] in (b" ", b"\t"):
            raise HTTPError(400, "malformed MIME header: continuation line")
        name, sep, value = raw.partition(b":")
        if not sep or not name or name != name.strip():
            raise HTTPError(400, "malformed MIME header line")
        out.append((name.decode("latin-1"), value.strip().decode("latin-1")))
    return out


async def _read_head(reader: asyncio.StreamReader) -> list[bytes] | None:
    """The lines up to the empty one, without their line ends; None at a
    clean end of stream before a request began."""
    lines: list[bytes] = []
    size = 0
    while True:
        try:
            line = await reader.readline()
        except ValueError:  # a line over the reader's limit
            raise HTTPError(431, "Request Header Fields Too Large") from None
        size += len(line)
        if size > MAX_HEAD:
            raise HTTPError(431, "Request Header Fields Too Large")
        if not line:
            if lines:
                raise asyncio.IncompleteReadError(b"", None)
            return None
        if not line.endswith(b"\n"):
            raise asyncio.IncompleteReadError(line, None)
        line = line.rstrip(b"\r\n")
        if not line:
            if not lines:
                continue  # empty lines before a request line are skipped
            return lines
        lines.append(line)


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    body = bytearray()
    while True:
        size_line = (await reader.readline()).strip()
        try:
            size = int(size_line.split(b";", 1)[0], 16)
        except ValueError:
            raise HTTPError(400, "malformed chunked encoding") from None
        if size < 0 or len(body) + size > limit:
            raise HTTPError(413, "Request Entity Too Large")
        if size == 0:
            while (await reader.readline()).strip():  # trailers
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


def _is_decimal(s: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes "²", which int() refuses."""
    return s.isascii() and s.isdigit()


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    values = {v for k, v in headers if k.lower() == "content-length"}
    if not values:
        return None
    if len(values) > 1 or not _is_decimal(next(iter(values))):
        raise HTTPError(400, "bad Content-Length")
    return int(next(iter(values)))


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None = None
) -> Request | None:
    """The next request on a connection, None when the client closed it.

    A client that asks ``Expect: 100-continue`` (curl does for a large
    body) is told to go on through ``writer`` before its body is read,
    rather than left to wait out its own timeout. Raises
    :class:`HTTPError` for a malformed request and
    ``asyncio.IncompleteReadError`` when the stream ends inside one."""
    lines = await _read_head(reader)
    if lines is None:
        return None
    parts = lines[0].decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise HTTPError(400, "malformed HTTP request")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HTTPError(505, "HTTP Version Not Supported")
    if not target.startswith("/"):
        split = urlsplit(target)
        if target != "*" and not (split.scheme and split.netloc):
            raise HTTPError(400, "malformed HTTP request")
        if target != "*":
            target = (split.path or "/") + ("?" + split.query if split.query else "")
    req = Request(method, target, version, _parse_headers(lines[1:]))
    expect = req.header("Expect")
    if expect is not None and expect.lower() != "100-continue":
        raise HTTPError(417, "Expectation Failed")
    te = req.header("Transfer-Encoding")
    n = _content_length(req.headers) if te is None else None
    if te is not None and te.lower() != "chunked":
        raise HTTPError(501, "Not Implemented")
    if n is not None and n > MAX_BODY:
        raise HTTPError(413, "Request Entity Too Large")
    if (te is not None or n) and expect is not None and writer is not None:
        if version == "HTTP/1.1":
            writer.write(CONTINUE)
    if te is not None:
        req.body = await _read_chunked(reader, MAX_BODY)
    elif n:
        req.body = await reader.readexactly(n)
    return req


def http_date(now: float | None = None) -> str:
    """RFC 7231 date (not locale-dependent, unlike ``strftime``'s names)."""
    t = time.gmtime(now)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "status code " + str(status)


def render(
    status: int,
    headers: list[tuple[str, str]] | tuple[tuple[str, str], ...],
    body: bytes,
    *,
    head: bool = False,
    close: bool = False,
) -> bytes:
    """One response, head and body. ``head``: the answer to a HEAD, whose
    Content-Length is the GET's but which carries no body."""
    lines = [f"HTTP/1.1 {status} {reason(status)}"]
    for k, v in headers:
        if "\r" in v or "\n" in v or "\r" in k or "\n" in k:
            continue  # never let a value split the response
        lines.append(f"{k}: {v}")
    lines.append("Date: " + http_date())
    bodiless = status < 200 or status in (204, 304)
    if not bodiless:
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if head or bodiless:
        return out
    return out + body


def error_response(err: HTTPError) -> bytes:
    """Go's answer to a malformed request: status, the text, and close."""
    body = f"{err.status} {err.text}".encode()
    headers = [("Content-Type", "text/plain; charset=utf-8")]
    return render(err.status, headers, body, close=True)


# ------------------------------------------------------------ the upstream


@dataclass
class Answer:
    """A response, from the child or to the user."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


async def fetch(
    base_url: str,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
) -> Answer:
    """One exchange with the child's monitoring (``http://host:port``).

    Raises OSError (connection refused or reset) or ValueError (an answer
    that is no HTTP); the caller bounds the time."""
    url = urlsplit(base_url)
    if url.scheme == "https":
        import ssl

        tls: ssl.SSLContext | None = ssl.create_default_context()
        tls.check_hostname = False  # our own child, on loopback
        tls.verify_mode = ssl.CERT_NONE
    else:
        tls = None
    reader, writer = await asyncio.open_connection(url.hostname, url.port, ssl=tls)
    try:
        lines = [f"{method} {target} HTTP/1.0", f"Host: {url.netloc}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        chunks = []
        try:
            while chunk := await reader.read(1 << 16):
                chunks.append(chunk)
        except ConnectionResetError:
            # Go answers a body it has no use for and closes without reading
            # it, which resets the connection after the answer: the answer
            # counts if it came whole (parse_answer checks)
            if not chunks:
                raise
    finally:
        writer.close()
    return parse_answer(b"".join(chunks))


def parse_answer(data: bytes) -> Answer:
    """A whole response as read to the end of the stream."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("malformed HTTP response")
    lines = head.split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/"):
        raise ValueError("malformed HTTP response")
    try:
        status = int(status_line[1])
        headers = _parse_headers(lines[1:])
    except (ValueError, HTTPError):
        raise ValueError("malformed HTTP response") from None
    te = header(headers, "Transfer-Encoding")
    if te is not None and te.lower() == "chunked":
        rest = _dechunk(rest)
    else:
        n = header(headers, "Content-Length")
        if n is not None and _is_decimal(n):
            if len(rest) < int(n):
                raise ValueError("truncated HTTP response")
            rest = rest[: int(n)]
    return Answer(status, headers, rest)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    while True:
        j = data.find(b"\r\n", i)
        if j < 0:
            raise ValueError("malformed chunked HTTP response")
        size = int(data[i:j].split(b";", 1)[0], 16)
        if size == 0:
            return bytes(out)
        out += data[j + 2 : j + 2 + size]
        i = j + 2 + size + 2

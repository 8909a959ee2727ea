"""The monitoring HTTP(S) listener: nss's endpoints plus NATS's, on one port.

The Go server registers its ``/streaming/*`` handlers on the embedded NATS
server's HTTP mux, so users find ``/varz``, ``/connz``, ``/subsz``... and
``/streaming/serverz`` on the same ``-m`` port. nss's NATS server is a child
process, so nss owns the user's port instead: it serves its own endpoints
(``endpoints.py``, plus ``/metrics`` and ``/healthz``) and reverse-proxies
every other path to the child, whose monitoring runs on an internal
loopback port (``EmbeddedNATS(monitor_address=...)``). With an external
NATS (``-ns``) there is nothing to proxy: other paths are 404s.

Start-up is ordered for speed and for client test-suites, which poll NATS's
``/subsz`` on this port until it shows the streaming subscriptions:

* :meth:`MonitorHTTP.bind` runs first in ``StanServer.start``. It binds and
  listens with a plain socket (so a taken port fails start-up at once, as
  the Go server's monitor listener does, before anything else starts), and
  connections made from then on wait in the backlog instead of being
  refused. HTTP itself is ``wire.py``: the part of HTTP/1.1 these
  exchanges use, with nothing to import at start-up (aiohttp, used before,
  took 0.12 s to import and 12 MB of resident memory).
* :meth:`MonitorHTTP.start` serves once the NATS child is up.
* Until :meth:`MonitorHTTP.set_ready` (the streaming server is ready),
  proxied requests are held (up to ``READY_GATE`` seconds): nats-server
  v2.10+ counts ~60 internal subscriptions in ``/subsz`` before nss has made
  any, so answering early would let such a suite connect too soon. nss's
  own endpoints answer at once (``/healthz`` says "server is starting").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
from typing import TYPE_CHECKING, Any

from nss.log import get_logger
from nss.server.monitor import endpoints as monitor
from nss.server.monitor import wire

if TYPE_CHECKING:
    import ssl

    from nss.server.monitor.view import ServerView

# How long a proxied request waits for the streaming server to be ready.
READY_GATE = 3.0
# Upper bound for one proxied request (e.g. a large /connz).
PROXY_TIMEOUT = 30.0
# A kept-alive connection with no request for this long is closed (Go's
# monitor has no limit; this bounds what idle clients hold), and a request
# must arrive whole within it once begun.
IDLE_TIMEOUT = 120.0

# Response headers not copied from the child's reply: hop-by-hop ones and
# those the serving side sets itself.
_SKIP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "date",
        "server",
    }
)


_VARZ_LINE = re.compile(rb'(?m)^  "(http_host|http_port|https_port|config_digest)": (.*?)(,?)\n')


class MonitorError(Exception):
    """Monitoring cannot start; the message is what the Go server says."""


def join_host_port(host: str, port: int) -> str:
    """Go's ``net.JoinHostPort`` (IPv6 literals get brackets)."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket as Go's ``net.Listen("tcp", host:port)`` makes.

    A wildcard host listens dual-stack where the system allows it, so
    ``curl localhost:8222`` works whether localhost is 127.0.0.1 or ::1.
    Port -1 (nats-server's "random") and 0 both pick a free port.
    """
    port = max(port, 0)
    if host in ("", "0.0.0.0", "::", "[::]"):
        if socket.has_dualstack_ipv6():
            return socket.create_server(
                ("::", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=128
            )
        return socket.create_server(("0.0.0.0", port), backlog=128)
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, addr = infos[0]
    return socket.create_server(addr[:2], family=family, backlog=128)


def _server_tls(cert: str, key: str) -> ssl.SSLContext:
    import ssl

    # nats-server serves HTTPS monitoring without asking for client certs
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


class MonitorHTTP:
    """nss's monitoring listener; see the module docstring for its life."""

    def __init__(
        self,
        server: ServerView,
        sock: socket.socket,
        scheme: str,
        host: str,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.server = server
        self.scheme = scheme
        self.host = host
        self.port: int = sock.getsockname()[1]
        self._sock: socket.socket | None = sock
        self._tls = tls
        self._ready = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._upstream = ""  # the child's monitoring; "" with an external NATS
        self._registry: Any = None
        self._metrics_mod: Any = None
        self.log = get_logger()

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def bind(cls, server: ServerView) -> MonitorHTTP | None:
        """Bind the ``-m``/``-ms`` port (None when monitoring is off).

        Raises :class:`MonitorError` with nats-server's wording for the
        failures the Go server reports from its embedded monitor.
        """
        n = server.opts.nats
        if not n.http_port and not n.https_port:
            return None
        if n.http_port and n.https_port:
            raise MonitorError(
                f"Can't start monitoring: can't specify both HTTP ({n.http_port}) "
                f"and HTTPs ({n.https_port}) ports"
            )
        tls = None
        if n.https_port:
            if not (n.tls_cert and n.tls_key):
                raise MonitorError("Can't start monitoring: TLS cert and key required for HTTPS")
            try:
                tls = _server_tls(n.tls_cert, n.tls_key)
            except OSError as e:  # ssl.SSLError is an OSError
                raise MonitorError(f"Can't start monitoring: {e}") from e
        port = n.https_port or n.http_port
        hostport = join_host_port(n.host, max(port, 0))
        try:
            sock = listen(n.host, port)
        except socket.gaierror as e:
            raise MonitorError(
                "Can't start monitoring: can't listen to the monitor port: listen tcp "
                f"{hostport}: lookup {n.host}: {e.strerror}"
            ) from e
        except OSError as e:
            # Go prints the bare syscall error ("address already in use")
            reason = (os.strerror(e.errno) if e.errno else str(e)).lower()
            raise MonitorError(
                "Can't start monitoring: can't listen to the monitor port: listen tcp "
                f"{hostport}: bind: {reason}"
            ) from e
        return cls(server, sock, "https" if tls else "http", n.host, tls)

    @property
    def address(self) -> str:
        """``scheme://host:port`` as the user addresses it (for the log)."""
        return f"{self.scheme}://{join_host_port(self.host, self.port)}"

    async def start(self) -> None:
        """Serve on the bound socket (call once the NATS child is up, so
        proxying has a target)."""
        natsd = self.server.natsd
        self._upstream = (natsd.monitor_url if natsd is not None else None) or ""
        if not self._upstream:
            # Go logs nothing here (its stand-in NATS server has no logger)
            hostport = join_host_port(self.host, self.port)
            self.log.debug(f"Starting {self.scheme} monitor on {hostport}")
        sock, self._sock = self._sock, None
        assert sock is not None
        self._server = await asyncio.start_server(
            self._serve, sock=sock, ssl=self._tls, limit=wire.MAX_HEAD
        )

    def set_ready(self) -> None:
        """The streaming server is up (or, with FT, in standby): release
        held proxy requests and let /healthz judge by the server's state."""
        self._ready.set()

    async def close(self) -> None:
        """Stop serving; safe at any stage of start-up."""
        self._ready.set()
        if self._server is not None:
            self._server.close()
            for w in list(self._conns):
                w.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # ------------------------------------------------------------ serving

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One client connection: requests answered in turn until it closes,
        asks to close, goes idle or sends something malformed."""
        self._conns.add(writer)
        try:
            while True:
                try:
                    req = await asyncio.wait_for(wire.read_request(reader, writer), IDLE_TIMEOUT)
                except wire.HTTPError as e:
                    writer.write(wire.error_response(e))
                    await writer.drain()
                    return
                if req is None:
                    return
                try:
                    a = await self._dispatch(req)
                except Exception:  # a bug must not take the connection's answer
                    self.log.exception(f"Monitoring error serving {req.method} {req.target}")
                    a = self._response(monitor.text_error("Internal Server Error", 500))
                keep = req.keep_alive
                head = req.method == "HEAD"
                writer.write(wire.render(a.status, a.headers, a.body, head=head, close=not keep))
                await writer.drain()
                if not keep:
                    return
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            return  # the client went away, or idled out
        except Exception:  # a bug: this connection ends, the listener serves on
            self.log.exception("Monitoring connection error")
        finally:
            self._conns.discard(writer)
            writer.close()

    async def _dispatch(self, req: wire.Request) -> wire.Answer:
        path = req.path
        if path == monitor.METRICS_PATH:
            return await self._metrics(req)
        reply = monitor.handle(self.server, path, req.query, ready=self._ready.is_set())
        if reply is None:
            if not self._upstream:
                reply = monitor.not_found()
            else:
                return await self._proxy(req)
        return self._response(reply)

    def _response(self, reply: monitor.Reply) -> wire.Answer:
        headers = []
        if reply.content_type is not None:
            headers.append(("Content-Type", reply.content_type))
        headers.extend(reply.headers)
        return wire.Answer(reply.status, headers, reply.body)

    async def _proxy(self, req: wire.Request) -> wire.Answer:
        """Pass a request to the child's monitoring and its answer back:
        method, path and raw query string in; status, headers (but
        hop-by-hop ones) and body out. Redirects (Go's ServeMux path
        cleaning) are passed on, not followed."""
        if not self._ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), READY_GATE)
        headers = []
        content_type = req.header("Content-Type")
        if content_type is not None:
            headers.append(("Content-Type", content_type))
        # read each time: a restarted child has a new internal port
        natsd = self.server.natsd
        upstream = (natsd.monitor_url if natsd is not None else None) or self._upstream
        try:
            # a HEAD is asked as a GET: the answer's length is then that of
            # the body the user would get, /varz's rewritten one included
            method = "GET" if req.method == "HEAD" else req.method
            answer = await asyncio.wait_for(
                wire.fetch(upstream, method, req.target, headers, req.body), PROXY_TIMEOUT
            )
        except (OSError, ValueError, TimeoutError) as e:
            self.log.debug(f"Monitoring proxy error for {req.target}: {e!r}")
            return self._response(
                monitor.text_error(f"NATS monitoring endpoint unavailable: {e}", 502)
            )
        body = answer.body
        if answer.status == 200 and req.path == "/varz":
            body = self._fix_varz(body)
        out = [(k, v) for k, v in answer.headers if k.lower() not in _SKIP_HEADERS]
        return wire.Answer(answer.status, out, body)

    def _fix_varz(self, body: bytes) -> bytes:
        """Make /varz describe the monitoring listener the user sees.

        The child reports its internal loopback port; a Go user expects the
        ``-m``/``-ms`` address there. Top-level lines are edited in place
        (2-space indent, as nats-server's MarshalIndent writes them) so the
        rest of the document keeps nats-server's exact formatting. The
        digest is dropped too: it is the digest of nss's private copy of the
        configuration (credentials included), never of the user's file.
        """
        secure = self.scheme == "https"
        values = {
            b"http_host": json.dumps(self.host).encode(),
            b"http_port": b"0" if secure else str(self.port).encode(),
            b"https_port": str(self.port).encode() if secure else b"0",
        }

        def sub(m: re.Match[bytes]) -> bytes:
            key = m.group(1)
            if key == b"config_digest":
                # only a line with a comma: dropping the last would leave one
                return b"" if m.group(3) else m.group(0)
            return b'  "' + key + b'": ' + values[key] + m.group(3) + b"\n"

        return _VARZ_LINE.sub(sub, body)

    async def _metrics(self, req: wire.Request) -> wire.Answer:
        if self._registry is None:
            # prometheus_client is imported on first use, off the loop
            import importlib

            mod = await asyncio.to_thread(importlib.import_module, "nss.server.monitor.metrics")
            if self._registry is None:
                self._metrics_mod = mod
                self._registry = mod.make_registry(self.server)
        body, content_type = self._metrics_mod.render(self._registry, req.header("Accept"))
        return wire.Answer(200, [("Content-Type", content_type)], body)

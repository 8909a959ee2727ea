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
  refused. It then imports aiohttp (~0.12 s, only with ``-m``/``-ms``). On
  the event loop's thread, not a worker: the NATS child boots in ~20 ms,
  too little to hide the import behind, and an importing thread holding the
  GIL delays every wake-up of the loop (measured: 0.2 s instead of 0.14 s).
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

if TYPE_CHECKING:
    import ssl

    from nss.server.monitor.view import ServerView

# How long a proxied request waits for the streaming server to be ready.
READY_GATE = 3.0
# Upper bound for one proxied request (e.g. a large /connz).
PROXY_TIMEOUT = 30.0

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


def _import_aiohttp() -> tuple[Any, Any]:
    """Import aiohttp, only when monitoring is on (see the module docstring)."""
    import aiohttp
    import aiohttp.web
    import yarl

    return aiohttp, yarl.URL


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
        modules: tuple[Any, Any],
    ) -> None:
        self.server = server
        self.scheme = scheme
        self.host = host
        self.port: int = sock.getsockname()[1]
        self._sock: socket.socket | None = sock
        self._tls = tls
        self._ready = asyncio.Event()
        self._aiohttp, self._url = modules
        self._runner: Any = None
        self._session: Any = None
        self._upstream = ""
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
        # Bound first: from here on connections queue instead of failing.
        try:
            modules = _import_aiohttp()
        except ImportError as e:
            sock.close()
            raise MonitorError(f"Can't start monitoring: {e} (pip install aiohttp)") from e
        return cls(server, sock, "https" if tls else "http", n.host, tls, modules)

    @property
    def address(self) -> str:
        """``scheme://host:port`` as the user addresses it (for the log)."""
        return f"{self.scheme}://{join_host_port(self.host, self.port)}"

    async def start(self) -> None:
        """Serve on the bound socket (call once the NATS child is up, so
        proxying has a target)."""
        aiohttp = self._aiohttp
        web = aiohttp.web
        natsd = self.server.natsd
        if natsd is not None and natsd.monitor_url:
            self._upstream = natsd.monitor_url
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=PROXY_TIMEOUT),
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
            )
        else:
            # Go logs nothing here (its stand-in NATS server has no logger)
            hostport = join_host_port(self.host, self.port)
            self.log.debug(f"Starting {self.scheme} monitor on {hostport}")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        sock, self._sock = self._sock, None
        assert sock is not None
        await web.SockSite(self._runner, sock, ssl_context=self._tls).start()

    def set_ready(self) -> None:
        """The streaming server is up (or, with FT, in standby): release
        held proxy requests and let /healthz judge by the server's state."""
        self._ready.set()

    async def close(self) -> None:
        """Stop serving; safe at any stage of start-up."""
        self._ready.set()
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------ handlers

    async def _dispatch(self, request: Any) -> Any:
        path = request.path
        if path == monitor.METRICS_PATH:
            return await self._metrics(request)
        reply = monitor.handle(self.server, path, request.query, ready=self._ready.is_set())
        if reply is None:
            if self._session is None:
                reply = monitor.not_found()
            else:
                return await self._proxy(request)
        return self._response(reply)

    def _response(self, reply: monitor.Reply) -> Any:
        web = self._aiohttp.web
        resp = web.Response(status=reply.status, body=reply.body or None)
        if reply.content_type is not None:
            resp.headers["Content-Type"] = reply.content_type
        for k, v in reply.headers:
            resp.headers[k] = v
        return resp

    async def _proxy(self, request: Any) -> Any:
        """Pass a request to the child's monitoring and its answer back:
        method, path and raw query string in; status, headers (but
        hop-by-hop ones) and body out. Redirects (Go's ServeMux path
        cleaning) are passed on, not followed."""
        aiohttp = self._aiohttp
        if not self._ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), READY_GATE)
        data = await request.read()
        headers = {}
        if "Content-Type" in request.headers:
            headers["Content-Type"] = request.headers["Content-Type"]
        # read each time: a restarted child has a new internal port
        natsd = self.server.natsd
        upstream = (natsd.monitor_url if natsd is not None else None) or self._upstream
        url = self._url(upstream + request.raw_path, encoded=True)
        try:
            async with self._session.request(
                request.method, url, data=data or None, headers=headers, allow_redirects=False
            ) as r:
                body = await r.read()
                status = r.status
                out = [(k, v) for k, v in r.headers.items() if k.lower() not in _SKIP_HEADERS]
        except (aiohttp.ClientError, TimeoutError) as e:
            self.log.debug(f"Monitoring proxy error for {request.raw_path}: {e!r}")
            return self._response(
                monitor.text_error(f"NATS monitoring endpoint unavailable: {e}", 502)
            )
        if status == 200 and request.path == "/varz":
            body = self._fix_varz(body)
        resp = self._aiohttp.web.Response(status=status, body=body or None)
        for k, v in out:
            resp.headers.add(k, v)
        return resp

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

    async def _metrics(self, request: Any) -> Any:
        if self._registry is None:
            # prometheus_client is imported on first use, off the loop
            import importlib

            mod = await asyncio.to_thread(importlib.import_module, "nss.server.monitor.metrics")
            if self._registry is None:
                self._metrics_mod = mod
                self._registry = mod.make_registry(self.server)
        body, content_type = self._metrics_mod.render(self._registry, request.headers.get("Accept"))
        resp = self._aiohttp.web.Response(status=200, body=body)
        resp.headers["Content-Type"] = content_type
        return resp

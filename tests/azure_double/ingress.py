"""The per-app HTTPS ingress: one TLS listener on 127.0.0.1 per container app (its `fqdn`), that
forwards each request to a ready replica of the revision taking traffic, streaming both bodies
(a server-sent-event response passes through chunk by chunk).

Which replica serves is the app's decision (`Route`): it may wait for a cold start, or refuse
with the status ACA's edge answers (404 for a stopped app or one with no active revision, 503
when no replica can serve).
"""

from __future__ import annotations

import contextlib
import http.client
import ssl
from collections.abc import Callable, Iterator
from typing import Any

from tests.azure_double.replicas import LOOPBACK
from tests.azure_double.tls_server import TlsHandler, TlsServer

# Hop-by-hop headers (RFC 9110 7.6.1) are the proxy's own business on each side.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
COPY_CHUNK = 64 * 1024
UPSTREAM_TIMEOUT_S = 240.0  # ACA's ingress idle timeout


class Unavailable(Exception):
    """No replica can take the request: answer `status` with ACA's plain-text page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# A context manager that yields the port of a ready replica for the duration of one request.
Route = Callable[[], contextlib.AbstractContextManager[int]]


class _BodyReader:
    """The client's request body as a file for http.client: Content-Length bytes, or the
    de-chunked stream (then forwarded chunked)."""

    def __init__(self, rfile: Any, length: int | None) -> None:
        self._rfile = rfile
        self._left = length

    def chunks(self) -> Iterator[bytes]:
        if self._left is not None:
            while self._left > 0:
                data = self._rfile.read(min(COPY_CHUNK, self._left))
                if not data:
                    return
                self._left -= len(data)
                yield data
            return
        while True:
            size = int(self._rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self._rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            yield self._rfile.read(size)
            self._rfile.readline()


class _ProxyHandler(TlsHandler):
    server: TlsServer[Route]
    timeout = UPSTREAM_TIMEOUT_S

    def _proxy(self) -> None:
        chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        length = None if chunked else int(self.headers.get("content-length") or 0)
        body = _BodyReader(self.rfile, length)
        try:
            with self.server.app() as port:
                self._forward(port, body, chunked, length)
        except Unavailable as refused:
            for _ in body.chunks():
                pass  # drain, so the connection stays usable
            self.plain(refused.status, refused.message)

    def _forward(self, port: int, body: _BodyReader, chunked: bool, length: int | None) -> None:
        upstream = http.client.HTTPConnection(LOOPBACK, port, timeout=UPSTREAM_TIMEOUT_S)
        try:
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    upstream.putheader(name, value)
            upstream.putheader("X-Forwarded-Proto", "https")
            upstream.putheader("X-Forwarded-For", self.client_address[0])
            if chunked:
                upstream.putheader("Transfer-Encoding", "chunked")
            elif length:
                upstream.putheader("Content-Length", str(length))
            upstream.endheaders()
            for data in body.chunks():
                upstream.send(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            if chunked:
                upstream.send(b"0\r\n\r\n")
            response = upstream.getresponse()
        except OSError:
            # What ACA's Envoy edge answers when the replica resets or refuses the connection.
            upstream.close()
            raise Unavailable(
                503, "upstream connect error or disconnect/reset before headers"
            ) from None
        try:
            self._relay(response)
        except (OSError, http.client.HTTPException):
            # The replica went away mid-response (or the client did): nothing more can be said
            # on this connection, as on ACA where the client sees the stream cut.
            self.close_connection = True
        finally:
            upstream.close()

    def _relay(self, response: http.client.HTTPResponse) -> None:
        self.send_response_only(response.status, response.reason)
        length = response.getheader("content-length")
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        stream = length is None and self.command != "HEAD" and response.status not in (204, 304)
        if stream:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while True:
            data = response.read1(COPY_CHUNK)
            if not data:
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if stream else data)
            self.wfile.flush()
        if stream:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        # The replica closing its connection (an HTTP/1.0 server) says nothing about the
        # client's: the client's response is framed by length or chunks, so it stays open.

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _proxy


class IngressProxy:
    """A started HTTPS listener on 127.0.0.1 (a free port) that serves one app."""

    def __init__(self, name: str, route: Route, context: ssl.SSLContext) -> None:
        self.name = name
        self._server = TlsServer(name, _ProxyHandler, context, route)

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def fqdn(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def stop(self) -> None:
        self._server.stop()

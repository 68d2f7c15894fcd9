"""One TLS HTTP/1.1 listener on 127.0.0.1: parses requests into `Request`, lets the application
decide (including dropping the connection before or while reading the body), writes `Response`."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote

from tests.azure_double.http import DropConnection, Request, Response, arm_error

LOOPBACK = "127.0.0.1"

# Reads the request body: all of it (None) or at most n bytes.
BodyReader = Callable[[int | None], bytes]
Application = Callable[[Request, BodyReader], Response]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, name: str, app: Application, context: ssl.SSLContext, port: int) -> None:
        self.listener_name = name
        self.app = app
        self.context = context
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__((LOOPBACK, port), _Handler)

    def get_request(self) -> tuple[Any, Any]:
        raw, address = self.socket.accept()
        # Headers and body go out as separate writes: without this, Nagle's algorithm holds the
        # second one until the client's delayed ACK (about 40 ms per ARM or Files response).
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The handshake runs in the connection's own thread (see _Handler.handle).
        wrapped = self.context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        with self.connections_lock:
            self.connections.add(wrapped)
        return wrapped, address

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self.connections_lock:
            open_now = list(self.connections)
        for connection in open_now:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 120

    def handle(self) -> None:
        try:
            self.connection.do_handshake()
        except (ssl.SSLError, OSError):
            return
        with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is the double's `requests`."""

    def _serve(self) -> None:
        raw_path, _, raw_query = self.path.partition("?")
        request = Request(
            method=self.command,
            path=unquote(raw_path),
            raw_path=raw_path,
            query={k.lower(): v for k, v in parse_qsl(raw_query, keep_blank_values=True)},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=b"",
            listener=self.server.listener_name,
        )
        consumed = {"done": False}

        def read_body(limit: int | None) -> bytes:
            consumed["done"] = limit is None
            return self._read_body(request.headers, limit)

        try:
            response = self.server.app(request, read_body)
        except DropConnection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        except Exception as error:
            # A bug in the double: answer as a failing service would, and show where it is.
            traceback.print_exc()
            response = arm_error(500, "InternalServerError", f"The double failed: {error!r}")
        if not consumed["done"]:
            self._read_body(request.headers, None)  # keep the connection usable
        self._write(response)

    def _read_body(self, headers: dict[str, str], limit: int | None) -> bytes:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            body = b"".join(chunks)
            return body if limit is None else body[:limit]
        length = int(headers.get("content-length") or 0)
        return self.rfile.read(length if limit is None else min(limit, length))

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        names = {name.lower() for name in response.headers}
        for name, value in response.headers.items():
            self.send_header(name, value)
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve


class Listener:
    """A started TLS listener on 127.0.0.1 (port 0: a free port)."""

    def __init__(self, name: str, app: Application, context: ssl.SSLContext, port: int = 0) -> None:
        self.name = name
        self._server = _Server(name, app, context, port)
        # A short poll interval keeps stop() quick (shutdown waits for the next poll).
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"double-{name}", daemon=True
        )
        self._thread.start()

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._thread.join(timeout=10)

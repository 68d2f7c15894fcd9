"""The double's HTTPS servers (the ARM/Files listeners, each app's ingress, the log stream): a
threaded TLS HTTP/1.1 server on 127.0.0.1 that serves in its own thread and, when stopped, also
closes the connections still open (a keep-alive client or a streaming response would otherwise
hold a handler thread)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, TypeVar

from tests.azure_double.replicas import LOOPBACK

AppT = TypeVar("AppT")


class TlsServer(ThreadingHTTPServer, Generic[AppT]):
    """Started on construction on 127.0.0.1 (`port` 0: a free port); `app` is whatever its
    handler class needs (the ARM/Files application, the ingress route, the log stream)."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        name: str,
        handler: type[BaseHTTPRequestHandler],
        context: ssl.SSLContext,
        app: AppT,
        port: int = 0,
    ) -> None:
        self.name = name
        self.app = app
        self.context = context
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__((LOOPBACK, port), handler)
        # A short poll interval keeps stop() quick (shutdown waits for the next poll).
        self._thread = threading.Thread(
            target=self.serve_forever, args=(0.05,), name=f"double-{name}", daemon=True
        )
        self._thread.start()

    @property
    def host(self) -> str:
        return str(self.server_address[0])

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def get_request(self) -> tuple[Any, Any]:
        raw, address = self.socket.accept()
        # Headers and body go out as separate writes: without this, Nagle's algorithm holds the
        # second one until the client's delayed ACK (about 40 ms per response).
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The handshake runs in the connection's own thread (see TlsHandler.handle).
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

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.close_connections()
        self._thread.join(timeout=10)


class TlsHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 over the server's TLS context, handshake in the connection's own thread."""

    protocol_version = "HTTP/1.1"
    server: TlsServer[Any]

    def handle(self) -> None:
        try:
            self.connection.do_handshake()
        except (ssl.SSLError, OSError):
            return
        with contextlib.suppress(ConnectionError, ssl.SSLError, TimeoutError):
            super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: replicas keep their own console, the double its request log."""

    def plain(self, status: int, message: str) -> None:
        data = (message + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

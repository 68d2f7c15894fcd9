"""One TLS HTTP/1.1 listener on 127.0.0.1: parses requests into `Request`, lets the application
decide (including dropping the connection before or while reading the body), writes `Response`."""

from __future__ import annotations

import contextlib
import socket
import ssl
import traceback
from collections.abc import Callable
from urllib.parse import parse_qsl, unquote

from tests.azure_double.http import DropConnection, Request, Response, arm_error
from tests.azure_double.tls_server import TlsHandler, TlsServer

# Reads the request body: all of it (None) or at most n bytes.
BodyReader = Callable[[int | None], bytes]
Application = Callable[[Request, BodyReader], Response]


class _Handler(TlsHandler):
    server: TlsServer[Application]
    timeout = 120

    def _serve(self) -> None:
        raw_path, _, raw_query = self.path.partition("?")
        request = Request(
            method=self.command,
            path=unquote(raw_path),
            raw_path=raw_path,
            query={k.lower(): v for k, v in parse_qsl(raw_query, keep_blank_values=True)},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=b"",
            listener=self.server.name,
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
        self._server = TlsServer(name, _Handler, context, app, port)

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.port

    def stop(self) -> None:
        self._server.stop()

"""Another server on the machine (another copy of the demo, an unrelated service): it answers
200 to every request and records the headers it was sent, so a test can tell whether a command
trusted it or sent it a key."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class ForeignServer:
    port: int
    requests: list[dict[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def saw_a_key(self) -> bool:
        names = {name.lower() for headers in self.requests for name in headers}
        return bool(names & {"authorization", "api-key"})


@contextlib.contextmanager
def foreign_server(port: int = 0) -> Iterator[ForeignServer]:
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append(dict(self.headers))
            self.rfile.read(int(self.headers.get("content-length") or 0))
            body = b'{"status": "ok", "ready": true}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = _answer
        do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ForeignServer(port=int(server.server_address[1]), requests=seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

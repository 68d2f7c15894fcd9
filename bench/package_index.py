"""A package index on loopback that serves a folder of wheels (the PEP 503 "simple" layout) and
counts the bytes it sends: the stand-in for PyPI in tests and benchmarks."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class IndexStats:
    bytes_sent: int = 0
    files_sent: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, name: str, size: int) -> None:
        with self.lock:
            self.bytes_sent += size
            self.files_sent.append(name)


@dataclass(frozen=True)
class PackageIndex:
    url: str  # the index URL pip takes (ends in /simple/)
    stats: IndexStats


def _project_of(wheel: Path) -> str:
    return normalize(wheel.name.split("-")[0])


@contextmanager
def serve_index(folder: Path) -> Iterator[PackageIndex]:
    """Serve every wheel in `folder` until the block ends."""
    stats = IndexStats()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            wheels = sorted(folder.glob("*.whl"))
            if len(parts) == 2 and parts[0] == "simple":
                project = normalize(parts[1])
                links = "".join(
                    f'<a href="/files/{html.escape(w.name)}">{html.escape(w.name)}</a>\n'
                    for w in wheels
                    if _project_of(w) == project
                )
                if not links:
                    self.send_error(404)
                    return
                self._send(f"<html><body>\n{links}</body></html>".encode(), "text/html")
            elif len(parts) == 2 and parts[0] == "files" and (folder / parts[1]).is_file():
                body = (folder / parts[1]).read_bytes()
                stats.record(parts[1], len(body))
                self._send(body, "application/octet-stream")
            else:
                self.send_error(404)

        def _send(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="package-index", daemon=True)
    thread.start()
    try:
        yield PackageIndex(f"http://127.0.0.1:{server.server_address[1]}/simple/", stats)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

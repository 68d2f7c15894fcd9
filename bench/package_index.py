"""A package index on loopback that serves folders of wheels (the PEP 503 "simple" layout) and
counts the bytes it sends, and tiny pure-Python wheels to put in it: the stand-in for PyPI in
tests and benchmarks."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import threading
import zipfile
from collections.abc import Iterator, Sequence
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
def serve_index(*folders: Path) -> Iterator[PackageIndex]:
    """Serve every wheel in `folders` until the block ends."""
    stats = IndexStats()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            wheels = {w.name: w for f in folders for w in sorted(f.glob("*.whl"))}
            if len(parts) == 2 and parts[0] == "simple":
                project = normalize(parts[1])
                links = "".join(
                    f'<a href="/files/{html.escape(w.name)}">{html.escape(w.name)}</a>\n'
                    for w in wheels.values()
                    if _project_of(w) == project
                )
                if not links:
                    self.send_error(404)
                    return
                self._send(f"<html><body>\n{links}</body></html>".encode(), "text/html")
            elif len(parts) == 2 and parts[0] == "files" and parts[1] in wheels:
                body = wheels[parts[1]].read_bytes()
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


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def make_wheel(
    folder: Path,
    name: str,
    version: str = "1.0",
    requires: Sequence[str] = (),
    padding: int = 0,
) -> Path:
    """`<name>-<version>-py3-none-any.whl` with a module `<name>` whose VERSION is `version`;
    `padding` bytes of data make it as large as a test needs."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    metadata = "\n".join(
        ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
        + [f"Requires-Dist: {r}" for r in requires]
    )
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{module}/padding.bin": bytes(padding),
        f"{dist_info}/METADATA": (metadata + "\n").encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    record = [_record_line(path, data) for path, data in files.items()]
    record.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel

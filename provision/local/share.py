"""A local folder playing the part of the Azure Files share."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from provision.fsutil import write_bytes_atomic
from provision.processes import pid_alive
from provision.share import STALE_UPLOAD_SECONDS, UploadSource

HASH_BLOCK = 1 << 20
# `.<name>.<pid of the writer>-<mkstemp's random part>.part`
TEMPORARY = re.compile(r"^\..+\.(\d+)-[^.]+\.part$")


class LocalUpload:
    """A temporary file beside the target, written with `pwrite` (safe from several threads).
    Its name carries the writer's pid, so a later run can tell a dead upload's leftover."""

    def __init__(self, target: Path, size: int) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        self.target = target
        prefix = f".{target.name}.{os.getpid()}-"
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=".part")
        self.fd, self.temporary = fd, Path(name)
        os.ftruncate(fd, size)

    def stored(self, offset: int, length: int) -> bool:
        return False  # a local copy is fast: an interrupted one starts over

    def write_range(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self.fd, view, offset)
            view, offset = view[written:], offset + written

    def commit(self) -> None:
        os.fsync(self.fd)
        os.close(self.fd)
        os.chmod(self.temporary, 0o644)
        os.replace(self.temporary, self.target)

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.temporary.unlink(missing_ok=True)


class LocalShare:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._created: dict[str, bytes] = {}  # what create_exclusive wrote, by path

    def _path(self, path: str) -> Path:
        resolved = (self.root / path).resolve()
        if not resolved.is_relative_to(self.root.resolve()):
            raise ValueError(f"path {path!r} leaves the share")
        return resolved

    def exists(self, path: str) -> bool:
        return self._path(path).exists()

    def read_bytes(self, path: str) -> bytes:
        return self._path(path).read_bytes()

    def write_bytes(self, path: str, data: bytes) -> None:
        write_bytes_atomic(self._path(path), data)

    def write_in_place(self, path: str, data: bytes) -> None:
        self.write_bytes(path, data)  # atomic costs nothing more on a local disk

    def create_exclusive(self, path: str, data: bytes) -> bool:
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        self._created[path] = data
        return True

    def release_exclusive(self, path: str) -> None:
        data = self._created.pop(path, None)
        try:
            if data is not None and self.read_bytes(path) == data:
                self.delete(path)
        except FileNotFoundError:
            pass

    def delete(self, path: str) -> None:
        self._path(path).unlink(missing_ok=True)

    def list_files(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return
        root = self.root.resolve()
        for file in sorted(base.rglob("*")):
            if file.is_file():
                yield file.relative_to(root).as_posix()

    def describe(self) -> str:
        return str(self.root)

    def holds(self, path: str, size: int, sha256: str) -> bool:
        target = self._path(path)
        if not target.is_file() or target.stat().st_size != size:
            return False
        digest = hashlib.sha256()
        with target.open("rb") as handle:
            while block := handle.read(HASH_BLOCK):
                digest.update(block)
        return digest.hexdigest() == sha256

    def open_upload(self, path: str, source: UploadSource) -> LocalUpload:
        return LocalUpload(self._path(path), source.size)

    def discard_stale_uploads(self, folder: str) -> int:
        """Remove the temporaries of uploads whose process is gone (the local target's uploads
        run on this machine), or that nothing wrote to for STALE_UPLOAD_SECONDS."""
        base = self._path(folder)
        removed = 0
        for entry in base.iterdir() if base.is_dir() else ():
            match = TEMPORARY.match(entry.name)
            if match is None or not entry.is_file():
                continue
            idle = time.time() - entry.stat().st_mtime
            if not pid_alive(int(match.group(1))) or idle > STALE_UPLOAD_SECONDS:
                entry.unlink(missing_ok=True)
                removed += 1
        return removed

"""A local folder playing the part of the Azure Files share."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from provision.fsutil import write_bytes_atomic


class LocalShare:
    def __init__(self, root: Path) -> None:
        self.root = root

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

    def create_exclusive(self, path: str, data: bytes) -> bool:
        target = self._path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return True

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

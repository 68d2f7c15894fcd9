"""Releases as manifests: share path -> content hash. File bodies live once, content-addressed.

The release id is derived from the manifest, so deploying the same tree twice names the same
release and uploads nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

APP_DIR = "app"
RELEASES_DIR = f"{APP_DIR}/releases"
OBJECTS_DIR = f"{APP_DIR}/objects"
CURRENT = f"{APP_DIR}/current"
PREVIOUS = f"{APP_DIR}/previous"
LOCK = f"{APP_DIR}/deploy.lock"
BOOTSTRAP = f"{APP_DIR}/bootstrap.py"

_SKIPPED_DIRS = {"__pycache__"}
_SKIPPED_SUFFIXES = {".pyc", ".pyo"}


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    files: Mapping[str, FileEntry]

    @property
    def release_id(self) -> str:
        return "r-" + hashlib.sha256(self.to_json()).hexdigest()[:12]

    def to_json(self) -> bytes:
        body = {
            path: {"sha256": e.sha256, "size": e.size} for path, e in sorted(self.files.items())
        }
        return json.dumps({"files": body}, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        files = json.loads(data)["files"]
        return cls({p: FileEntry(e["sha256"], int(e["size"])) for p, e in files.items()})


def object_path(sha256: str) -> str:
    return f"{OBJECTS_DIR}/{sha256[:2]}/{sha256}"


def release_path(release_id: str) -> str:
    return f"{RELEASES_DIR}/{release_id}.json"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _is_shipped(relative: Path) -> bool:
    if any(part in _SKIPPED_DIRS or part.startswith(".") for part in relative.parts):
        return False
    return relative.suffix not in _SKIPPED_SUFFIXES


def scan_tree(source: Path, package: str) -> tuple[Manifest, dict[str, Path]]:
    """Manifest of `source` as it will appear in the release under `package/`, and where each
    file's body is on local disk."""
    files: dict[str, FileEntry] = {}
    bodies: dict[str, Path] = {}
    for file in sorted(source.rglob("*")):
        relative = file.relative_to(source)
        if not file.is_file() or not _is_shipped(relative):
            continue
        data = file.read_bytes()
        release_relative = f"{package}/{relative.as_posix()}"
        files[release_relative] = FileEntry(sha256_bytes(data), len(data))
        bodies[release_relative] = file
    return Manifest(files), bodies

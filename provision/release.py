"""Releases as manifests: share path -> content hash. File bodies live once, content-addressed.

The release id is derived from the manifest, so deploying the same tree twice names the same
release and uploads nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pathspec

APP_DIR = "app"
RELEASES_DIR = f"{APP_DIR}/releases"
OBJECTS_DIR = f"{APP_DIR}/objects"
LOCK = f"{APP_DIR}/deploy.lock"
BOOTSTRAP = f"{APP_DIR}/bootstrap.py"

HISTORY_DIR = f"{APP_DIR}/history"
KEEP_RELEASES = 5
IGNORE_FILE = ".acainferignore"

_SKIPPED_DIRS = {"__pycache__", "node_modules"}
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


def _ignore_rules(source: Path) -> pathspec.PathSpec:
    ignore_file = source / IGNORE_FILE
    lines = ignore_file.read_text(encoding="utf-8").splitlines() if ignore_file.is_file() else []
    return pathspec.GitIgnoreSpec.from_lines(lines)


def _is_virtualenv(folder: Path) -> bool:
    # Every virtual environment (venv, virtualenv, uv, conda's pythons) has this marker file.
    return (folder / "pyvenv.cfg").is_file() or (folder / "conda-meta").is_dir()


def shipped_files(source: Path) -> Iterator[Path]:
    """The files of `source` that a release ships: never `__pycache__`, compiled files,
    dot-files and dot-folders, virtual environments, nor what `.acainferignore` (gitignore
    syntax) names."""
    rules = _ignore_rules(source)
    for folder, subfolders, names in os.walk(source):
        base = Path(folder)
        relative_base = base.relative_to(source)
        subfolders[:] = sorted(
            name
            for name in subfolders
            if not name.startswith(".")
            and name not in _SKIPPED_DIRS
            and not _is_virtualenv(base / name)
            and not rules.match_file(f"{(relative_base / name).as_posix()}/")
        )
        for name in sorted(names):
            relative = relative_base / name
            if name.startswith(".") or relative.suffix in _SKIPPED_SUFFIXES:
                continue
            if rules.match_file(relative.as_posix()) or not (base / name).is_file():
                continue
            yield base / name


def scan_tree(source: Path, package: str) -> tuple[Manifest, dict[str, Path]]:
    """Manifest of `source` as it will appear in the release under `package/`, and where each
    file's body is on local disk."""
    files: dict[str, FileEntry] = {}
    bodies: dict[str, Path] = {}
    for file in shipped_files(source):
        relative = file.relative_to(source)
        data = file.read_bytes()
        release_relative = f"{package}/{relative.as_posix()}"
        files[release_relative] = FileEntry(sha256_bytes(data), len(data))
        bodies[release_relative] = file
    return Manifest(files), bodies

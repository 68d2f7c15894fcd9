"""Release manifests and runtime records this project has deployed, kept on local disk.

Both are content-addressed (a release id is the hash of its manifest, a body's name the hash of
its content), so a copy is checked against its name and is right for any share: a deploy that
finds the live release's manifest here reads nothing for it, and pruning reads only the manifests
of releases deployed from elsewhere (each a request on a remote share).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from provision.fsutil import write_bytes_atomic
from provision.release import Manifest, object_path, release_path, sha256_bytes
from provision.share import Share, read_bytes_or_none

# Only small bodies (runtime records) are kept; code and wheels are read from the share.
MAX_BODY_BYTES = 64 << 10


def load_manifest(share: Share, release: str) -> Manifest | None:
    """The release's manifest, None when it is missing or not whole (a manifest is written in
    place, and its id is the hash of its content: a cut one does not match its name)."""
    data = read_bytes_or_none(share, release_path(release))
    if data is None:
        return None
    try:
        manifest = Manifest.from_json(data)
    except (ValueError, KeyError, TypeError):
        return None
    return manifest if manifest.release_id == release else None


class ManifestCache:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def _read(self, name: str) -> bytes | None:
        if self.folder is None:
            return None
        try:
            return (self.folder / name).read_bytes()
        except OSError:
            return None

    def _keep(self, name: str, data: bytes) -> None:
        if self.folder is not None:
            with contextlib.suppress(OSError):  # a cache that cannot be written only costs reads
                write_bytes_atomic(self.folder / name, data)

    def store(self, manifest: Manifest) -> None:
        self._keep(f"{manifest.release_id}.json", manifest.to_json())

    def store_body(self, data: bytes) -> None:
        if len(data) <= MAX_BODY_BYTES:
            self._keep(sha256_bytes(data), data)

    def manifest(self, share: Share, release: str) -> Manifest | None:
        """The release's manifest from here when kept, else from the share (then kept)."""
        data = self._read(f"{release}.json")
        if data is not None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                manifest = Manifest.from_json(data)
                if manifest.release_id == release:
                    return manifest
        found = load_manifest(share, release)
        if found is not None:
            self.store(found)
        return found

    def body(self, share: Share, sha256: str) -> bytes:
        """A small body by its hash (a release's runtime record)."""
        data = self._read(sha256)
        if data is not None and sha256_bytes(data) == sha256:
            return data
        data = share.read_bytes(object_path(sha256))
        if sha256_bytes(data) == sha256:
            self.store_body(data)
        return data

"""The file tree a target offers: an Azure Files share or a local folder.

Paths are POSIX-style and relative to the share root. Writes are atomic per file (write to a
temporary name, then rename), so a reader never sees a half-written file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class Share(Protocol):
    def exists(self, path: str) -> bool: ...

    def read_bytes(self, path: str) -> bytes: ...

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write atomically, creating parent folders."""

    def create_exclusive(self, path: str, data: bytes) -> bool:
        """Create `path` only if it does not exist; False when it already did."""

    def delete(self, path: str) -> None:
        """Delete a file; deleting a missing file is not an error."""

    def list_files(self, prefix: str) -> Iterator[str]:
        """Every file below `prefix`, as share-relative paths."""

    def describe(self) -> str:
        """Where the share is, for messages."""


def read_text_or_none(share: Share, path: str) -> str | None:
    return share.read_bytes(path).decode().strip() if share.exists(path) else None

"""The file tree a target offers: an Azure Files share or a local folder.

Paths are POSIX-style and relative to the share root. Writes are atomic per file (write to a
temporary name, then rename), so a reader never sees a half-written file.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol


class RangedUpload(Protocol):
    """One file being written in ranges, possibly from several threads at once; invisible under
    its name until `commit` (Azure: created at its full size under a temporary name, ranges
    uploaded with Put Range, then renamed; local: `pwrite` into a temporary file, then
    `os.replace`)."""

    def write_range(self, offset: int, data: bytes) -> None: ...

    def commit(self) -> None:
        """Make the file appear under its name, whole, replacing an older one."""

    def abort(self) -> None:
        """Drop what was written; the name keeps its previous content."""


class Share(Protocol):
    def exists(self, path: str) -> bool: ...

    def read_bytes(self, path: str) -> bytes: ...

    def write_bytes(self, path: str, data: bytes) -> None:
        """Write atomically, creating parent folders."""

    def write_in_place(self, path: str, data: bytes) -> None:
        """Write without the temporary name and rename of `write_bytes` (a remote share saves a
        request), creating parent folders: only for files a reader can tell whole from cut (a
        release manifest is named by the hash of its content; an empty marker file cannot be
        cut)."""

    def create_exclusive(self, path: str, data: bytes) -> bool:
        """Create `path` only if it does not exist; False when it already did."""

    def release_exclusive(self, path: str) -> None:
        """Delete the file this client made with `create_exclusive`, unless another client has
        replaced it since (a stale lock taken over): then it is left alone."""

    def delete(self, path: str) -> None:
        """Delete a file; deleting a missing file is not an error."""

    def list_files(self, prefix: str) -> Iterator[str]:
        """Every file below `prefix`, as share-relative paths."""

    def describe(self) -> str:
        """Where the share is, for messages."""

    def size(self, path: str) -> int | None:
        """The file's size in bytes; None when it does not exist."""

    def sha256(self, path: str) -> str:
        """The SHA-256 of the file's content as stored, read as a stream (never whole). A target
        may answer from a hash it stored beside the file when it committed it (e.g. Azure file
        metadata), as long as no other writer can change the content without it."""

    def open_upload(self, path: str, size: int) -> RangedUpload:
        """Start writing a file of `size` bytes in ranges (large files: model weights)."""


def read_bytes_or_none(share: Share, path: str) -> bytes | None:
    """The file's content, None when it does not exist: one request on a remote share, where
    asking `exists` first would make two."""
    try:
        return share.read_bytes(path)
    except FileNotFoundError:
        return None


def read_text_or_none(share: Share, path: str) -> str | None:
    data = read_bytes_or_none(share, path)
    return None if data is None else data.decode().strip()

"""The file tree a target offers: an Azure Files share or a local folder.

Paths are POSIX-style and relative to the share root. Writes are atomic per file (write to a
temporary name, then rename), so a reader never sees a half-written file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

# A temporary of an upload that has not been written to for this long is left over by a process
# that died on another machine (one on this machine is known dead by its pid): longer than the
# SDK's retries of one range take, so a live upload is never taken for dead.
STALE_UPLOAD_SECONDS = 15 * 60


@dataclass(frozen=True)
class UploadSource:
    """The local file an `open_upload` copies, as it was found before it was hashed."""

    local: Path
    size: int
    sha256: str
    modified: float  # its st_mtime, taken before hashing it
    hashed_at: float  # time.time() when reading it for its hash began


class RangedUpload(Protocol):
    """One file being written in ranges, possibly from several threads at once; invisible under
    its name until `commit` (Azure: created at its full size under a temporary name, ranges
    uploaded with Put Range, then renamed; local: `pwrite` into a temporary file, then
    `os.replace`)."""

    def stored(self, offset: int, length: int) -> bool:
        """True when these bytes are already stored: an upload that resumes what an interrupted
        upload of the same content (same SHA-256) left behind."""

    def write_range(self, offset: int, data: bytes) -> None: ...

    def commit(self) -> None:
        """Make the file appear under its name, whole, replacing an older one."""

    def abort(self) -> None:
        """Stop; the name keeps its previous content. What was written is dropped, or kept where
        the target resumes uploads (a later `open_upload` of the same content picks it up, and
        `discard_stale_uploads` removes it otherwise)."""


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

    def holds(self, path: str, size: int, sha256: str) -> bool:
        """Whether the file holds exactly this content: its size first (a missing file, or one
        of another size, is answered without reading it), then the SHA-256 of its content as
        stored, read as a stream (never whole). A target may answer the hash from one it stored
        beside the file when it committed it (e.g. Azure file metadata), as long as no other
        writer can change the content without it."""

    def open_upload(self, path: str, source: UploadSource) -> RangedUpload:
        """Start writing a copy of `source` in ranges (large files: model weights). A target may
        resume the temporary an interrupted upload of the same source file left, provided the
        file has not changed since that upload began hashing it (so every range it stored came
        from these very bytes), and keep the hash with the file so that `holds` need not read
        it back."""

    def discard_stale_uploads(self, folder: str) -> int:
        """Delete the temporaries that interrupted uploads (`open_upload`) left in `folder`,
        but none that a running upload is writing; returns how many."""


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

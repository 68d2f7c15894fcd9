"""What Azure Files keeps beside file bodies: properties, metadata, leases and etags.

Bodies and folders are real files under the share folder (replicas read them as their mount);
everything else lives here, in memory, keyed case-insensitively as the service names are.
A record made by the API notes the body's (mtime, size, inode); when a body changed behind the
service's back (a replica wrote it, a test replaced it), the record takes a new etag.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

# Names the service refuses in a path segment (besides control characters).
INVALID_NAME_CHARACTERS = set('"\\/:|<>*?')
MAX_NAME_LENGTH = 255
MAX_PATH_LENGTH = 2048
# The service's default security descriptor key; the double keeps one descriptor per share.
PERMISSION_KEY = "13873132604614208574*10563939812567442346"


class EtagClock:
    """Strictly increasing etags shaped like the service's ("0x8DC...")."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def next(self) -> str:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns() // 100 + 0x8D000000000000)
            return f'"0x{self._last:X}"'


@dataclass
class Lease:
    """A file lease: infinite, as every file lease is. A broken lease no longer guards writes."""

    lease_id: str
    broken: bool = False

    @property
    def active(self) -> bool:
        return not self.broken


class WrittenRanges:
    """The byte ranges of a file that hold data (Get Ranges lists them): put range adds, clear
    range and shrinking remove. Inclusive (start, end) pairs, sorted and merged."""

    def __init__(self, ranges: list[tuple[int, int]] | None = None) -> None:
        self.ranges: list[tuple[int, int]] = list(ranges or [])

    @classmethod
    def whole(cls, size: int) -> WrittenRanges:
        return cls([(0, size - 1)] if size > 0 else [])

    def add(self, start: int, end: int) -> None:
        merged: list[tuple[int, int]] = []
        for low, high in sorted([*self.ranges, (start, end)]):
            if merged and low <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], high))
            else:
                merged.append((low, high))
        self.ranges = merged

    def remove(self, start: int, end: int) -> None:
        kept: list[tuple[int, int]] = []
        for low, high in self.ranges:
            if high < start or low > end:
                kept.append((low, high))
                continue
            if low < start:
                kept.append((low, start - 1))
            if high > end:
                kept.append((end + 1, high))
        self.ranges = kept

    def truncate(self, size: int) -> None:
        self.ranges = [(low, min(high, size - 1)) for low, high in self.ranges if low < size]

    def within(self, start: int, end: int) -> list[tuple[int, int]]:
        return [
            (max(low, start), min(high, end))
            for low, high in self.ranges
            if high >= start and low <= end
        ]


@dataclass
class ItemRecord:
    """A file's or directory's properties (everything but the body and the name)."""

    etag: str
    last_modified: datetime
    created: datetime
    last_write: datetime
    changed: datetime
    content: dict[str, str] = field(default_factory=dict)  # Content-Type, Cache-Control, ...
    metadata: dict[str, str] = field(default_factory=dict)
    lease: Lease | None = None
    body_signature: tuple[int, int, int] = (0, 0, 0)
    written: WrittenRanges = field(default_factory=WrittenRanges)

    def touch(self, clock: EtagClock, path: Path, *, write_time: bool = True) -> None:
        """After a change through the API: new etag and Last-Modified, body signature noted."""
        now = datetime.now(UTC)
        self.etag = clock.next()
        self.last_modified = now
        self.changed = now
        if write_time:
            self.last_write = now
        self.body_signature = signature(path)

    @property
    def lease_active(self) -> bool:
        return self.lease is not None and self.lease.active


@dataclass
class ShareRecord:
    etag: str
    last_modified: datetime
    quota_gib: int = 102400  # what ARM gives a share created without a quota
    metadata: dict[str, str] = field(default_factory=dict)


def signature(path: Path) -> tuple[int, int, int]:
    try:
        stat = path.stat()
    except OSError:
        return (0, 0, 0)
    return (stat.st_mtime_ns, stat.st_size if path.is_file() else 0, stat.st_ino)


def invalid_segment(name: str) -> bool:
    return (
        not name
        or name in {".", ".."}
        or len(name) > MAX_NAME_LENGTH
        or any(ch in INVALID_NAME_CHARACTERS or ord(ch) < 0x20 for ch in name)
    )


def find_child(parent: Path, name: str) -> Path | None:
    """The entry of `parent` named `name`, compared case-insensitively as the service does."""
    exact = parent / name
    if os.path.lexists(exact):
        return exact
    folded = name.casefold()
    try:
        with os.scandir(parent) as entries:
            for entry in entries:
                if entry.name.casefold() == folded:
                    return Path(entry.path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return None


@dataclass(frozen=True)
class Located:
    """Where a request's path points in a share folder.

    `parent` is the existing parent folder (None when some ancestor is missing or is a file);
    `path` is the existing entry, or where a new one would go (None without a parent).
    """

    parent: Path | None
    path: Path | None
    exists: bool

    @property
    def is_dir(self) -> bool:
        return self.exists and self.path is not None and self.path.is_dir()

    @property
    def is_file(self) -> bool:
        return self.exists and self.path is not None and self.path.is_file()


def locate(share_root: Path, segments: list[str]) -> Located:
    current = share_root
    for name in segments[:-1]:
        child = find_child(current, name)
        if child is None or not child.is_dir():
            return Located(None, None, False)
        current = child
    if not segments:
        return Located(share_root.parent, share_root, share_root.is_dir())
    found = find_child(current, segments[-1])
    if found is None:
        return Located(current, current / segments[-1], False)
    return Located(current, found, True)


def record_key(segments: list[str]) -> str:
    return "/".join(segment.casefold() for segment in segments)


class FilesState:
    """Thread-safe enough by construction: callers hold `lock` for a whole operation."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.clock = EtagClock()
        self._shares: dict[tuple[str, str], ShareRecord] = {}
        self._items: dict[tuple[str, str, str], ItemRecord] = {}

    def share(self, account: str, share: str, root: Path) -> ShareRecord:
        """The share's record; made on first sight for a share created through ARM."""
        key = (account, share)
        record = self._shares.get(key)
        if record is None:
            created = _mtime(root)
            record = ShareRecord(etag=self.clock.next(), last_modified=created)
            self._shares[key] = record
        return record

    def new_share(self, account: str, share: str) -> ShareRecord:
        record = ShareRecord(etag=self.clock.next(), last_modified=datetime.now(UTC))
        self._shares[(account, share)] = record
        return record

    def forget_share(self, account: str, share: str) -> None:
        self._shares.pop((account, share), None)
        for key in [k for k in self._items if k[0] == account and k[1] == share]:
            del self._items[key]

    def item(self, account: str, share: str, segments: list[str], path: Path) -> ItemRecord:
        """The record of an existing file or directory, refreshed if its body changed outside
        the service."""
        key = (account, share, record_key(segments))
        record = self._items.get(key)
        current = signature(path)
        if record is None:
            record = self._add(key, _mtime(path), current, WrittenRanges.whole(current[1]))
        elif path.is_file() and record.body_signature != current:
            stamp = _mtime(path)
            record.etag = self.clock.next()
            record.last_modified = record.last_write = record.changed = stamp
            record.body_signature = current
            record.written = WrittenRanges.whole(current[1])
        return record

    def new_item(self, account: str, share: str, segments: list[str], path: Path) -> ItemRecord:
        key = (account, share, record_key(segments))
        return self._add(key, datetime.now(UTC), signature(path), WrittenRanges())

    def _add(
        self,
        key: tuple[str, str, str],
        stamp: datetime,
        body_signature: tuple[int, int, int],
        written: WrittenRanges,
    ) -> ItemRecord:
        """A new record, all of its times `stamp`, kept under `key`."""
        record = ItemRecord(
            etag=self.clock.next(),
            last_modified=stamp,
            created=stamp,
            last_write=stamp,
            changed=stamp,
            body_signature=body_signature,
            written=written,
        )
        self._items[key] = record
        return record

    def forget_item(self, account: str, share: str, segments: list[str]) -> None:
        self._items.pop((account, share, record_key(segments)), None)

    def move_items(self, account: str, share: str, source: list[str], target: list[str]) -> None:
        """Records follow a renamed file, or every entry under a renamed directory."""
        old, new = record_key(source), record_key(target)
        for key in list(self._items):
            if key[0] != account or key[1] != share:
                continue
            relative = key[2]
            if relative == old or relative.startswith(old + "/"):
                record = self._items.pop(key)
                self._items[(account, share, new + relative[len(old) :])] = record

    def leased_under(self, account: str, share: str, segments: list[str]) -> bool:
        prefix = record_key(segments) + "/"
        return any(
            key[0] == account and key[1] == share and key[2].startswith(prefix) and rec.lease_active
            for key, rec in self._items.items()
        )


def _mtime(path: Path) -> datetime:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return datetime.now(UTC)

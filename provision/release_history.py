"""Which release is live, which were, and when: `app/history/` on the share, one empty marker
file per release made live, named `<sequence>_<UTC time>_<release id>`. The newest marker (the
highest sequence) names the live release: there is no `current` file.

Making a release live is one request (an empty file appears whole or not at all) and reading the
live release with its history one listing, where a `current` file and a JSON history, each
rewritten atomically, cost a read and six writes per deploy on a remote share. Markers are written
only under the deploy lock, after a listing, so sequences never collide and do not depend on the
clocks of the machines that deploy (the time in the name is for people).

Pruning starts once the share holds more than `KEEP_RELEASES` releases: it keeps the last
`KEEP_RELEASES` distinct releases made live, with their bodies, so `aca-infer rollback --to` can
roll any of them out again, and deletes the rest (a release that never got ready stays until
then). `aca-infer releases` lists them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from provision.manifest_cache import ManifestCache, load_manifest
from provision.release import (
    HISTORY_DIR,
    KEEP_RELEASES,
    RELEASES_DIR,
    Manifest,
    object_path,
    release_path,
)
from provision.share import Share
from provision.wheelhouse import RUNTIME_FILE, WHEELHOUSES_DIR, wheelhouse_path

# Markers beyond this many are deleted, a batch at a time (dates of long-gone releases).
KEEP_MARKERS = 50
_STAMP = "%Y%m%dT%H%M%SZ"
_MARKER = re.compile(r"(?P<sequence>\d{8})_(?P<stamp>\d{8}T\d{6}Z)_(?P<release>r-[0-9a-f]+)")


@dataclass(frozen=True)
class HistoryEntry:
    sequence: int
    release: str
    deployed_at: str
    path: str  # its marker


@dataclass(frozen=True)
class History:
    entries: tuple[HistoryEntry, ...]  # oldest first; a release made live twice appears twice

    @property
    def current(self) -> str | None:
        """The live release: the one made live last."""
        return self.entries[-1].release if self.entries else None

    def previous(self, current: str | None = None) -> str | None:
        """The release made live before `current` (default: before the live one)."""
        current = self.current if current is None else current
        return next((e.release for e in reversed(self.entries) if e.release != current), None)

    def kept(self) -> list[str]:
        """The last KEEP_RELEASES distinct releases made live, newest first."""
        newest_first: list[str] = []
        for entry in reversed(self.entries):
            if entry.release not in newest_first:
                newest_first.append(entry.release)
        return newest_first[:KEEP_RELEASES]


@dataclass(frozen=True)
class ReleaseInfo:
    release: str
    deployed_at: str | None
    files: int
    size: int
    live: bool


def _marker_entry(path: str) -> HistoryEntry | None:
    match = _MARKER.fullmatch(path.rsplit("/", 1)[-1])
    if match is None:
        return None  # not one of ours
    when = datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=UTC)
    return HistoryEntry(
        int(match["sequence"]), match["release"], when.isoformat(timespec="seconds"), path
    )


def read_history(share: Share) -> History:
    entries = (_marker_entry(path) for path in share.list_files(HISTORY_DIR))
    found = sorted((e for e in entries if e is not None), key=lambda e: e.sequence)
    return History(tuple(found))


def read_current(share: Share) -> str | None:
    """The live release, None before the first deploy."""
    return read_history(share).current


def record_live(share: Share, history: History, release: str) -> History:
    """Make `release` the live one (under the deploy lock, `history` read under it too);
    returns the history with it."""
    sequence = history.entries[-1].sequence + 1 if history.entries else 1
    now = datetime.now(UTC).replace(microsecond=0)
    path = f"{HISTORY_DIR}/{sequence:08d}_{now.strftime(_STAMP)}_{release}"
    share.write_in_place(path, b"")
    return History((*history.entries, HistoryEntry(sequence, release, now.isoformat(), path)))


def release_ids_on_share(share: Share) -> list[str]:
    return [
        path.rsplit("/", 1)[-1].removesuffix(".json")
        for path in share.list_files(RELEASES_DIR)
        if path.endswith(".json")
    ]


def previous_of(share: Share, history: History) -> str | None:
    """The release made live before the live one that the share still holds."""
    on_share = set(release_ids_on_share(share))
    current = history.current
    for entry in reversed(history.entries):
        if entry.release != current and entry.release in on_share:
            return entry.release
    return None


def _wheelhouse_of(
    share: Share, manifest: Manifest, manifests: ManifestCache, keys: dict[str, str | None]
) -> str | None:
    """The wheelhouse the release installs from; `keys` remembers it per runtime record (most
    releases share one: it is read once)."""
    entry = manifest.files.get(RUNTIME_FILE)
    if entry is None:
        return None
    if entry.sha256 not in keys:
        keys[entry.sha256] = json.loads(manifests.body(share, entry.sha256))["wheelhouse"]
    return keys[entry.sha256]


def prune(share: Share, history: History, manifests: ManifestCache | None = None) -> None:
    """Once the share holds more than KEEP_RELEASES releases, delete those the history does not
    keep, then the bodies only they used, and the wheelhouses only they installed from (with
    their bodies); markers beyond KEEP_MARKERS go a batch at a time. Bodies are found from the
    manifests, never by listing every object folder (hundreds of requests on a remote share); a
    body no manifest ever named (a deploy killed mid-upload) stays, and the next deploy of that
    content reuses it. Below the threshold nothing else is read (one listing). Manifests and
    runtime records are read through `manifests` (local copies first, when it keeps any)."""
    manifests = manifests or ManifestCache(None)
    on_share = release_ids_on_share(share)
    if len(on_share) <= KEEP_RELEASES:
        return
    keep = set(history.kept())
    kept: dict[str, Manifest] = {}
    dropped: dict[str, Manifest | None] = {}
    for release in on_share:
        manifest = manifests.manifest(share, release)
        if release in keep and manifest is not None:
            kept[release] = manifest
        elif release not in keep:
            share.delete(release_path(release))  # the manifest first: it never names a gap
            dropped[release] = manifest

    def bodies(manifests: list[Manifest]) -> set[str]:
        return {object_path(e.sha256) for m in manifests for e in m.files.values()}

    keep_objects = bodies(list(kept.values()))
    dropped_objects = bodies([m for m in dropped.values() if m is not None])
    keys: dict[str, str | None] = {}
    kept_keys = {_wheelhouse_of(share, m, manifests, keys) for m in kept.values()}
    dropped_keys = {
        _wheelhouse_of(share, m, manifests, keys) for m in dropped.values() if m is not None
    }
    if dropped_keys - kept_keys:  # a wheelhouse may have lost its last release
        kept_wheelhouses = {wheelhouse_path(key) for key in kept_keys if key is not None}
        for path in list(share.list_files(WHEELHOUSES_DIR)):
            wheels = Manifest.from_json(share.read_bytes(path))
            if path in kept_wheelhouses:
                keep_objects |= bodies([wheels])
            else:
                share.delete(path)
                dropped_objects |= bodies([wheels])
    for path in sorted(dropped_objects - keep_objects):
        share.delete(path)
    if len(history.entries) > 2 * KEEP_MARKERS:
        for entry in history.entries[:-KEEP_MARKERS]:
            share.delete(entry.path)


def list_releases(share: Share) -> list[ReleaseInfo]:
    """Every whole release on the share, newest first (those never live last)."""
    history = read_history(share)
    dates = {e.release: e.deployed_at for e in history.entries}
    order = {e.release: position for position, e in enumerate(history.entries)}
    infos = []
    for release in release_ids_on_share(share):
        manifest = load_manifest(share, release)
        if manifest is None:
            continue
        infos.append(
            ReleaseInfo(
                release=release,
                deployed_at=dates.get(release),
                files=len(manifest.files),
                size=sum(e.size for e in manifest.files.values()),
                live=release == history.current,
            )
        )
    return sorted(infos, key=lambda info: order.get(info.release, -1), reverse=True)

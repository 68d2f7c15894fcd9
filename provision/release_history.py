"""Which releases were live, and when: `app/history.json` on the share, newest last.

Deploy and rollback append the release they made live; pruning keeps the bodies of the last
`KEEP_RELEASES` distinct releases (and whatever `current` names), so `aca-infer rollback --to`
can roll any of them out again. `aca-infer releases` lists them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from provision.release import (
    CURRENT,
    HISTORY,
    KEEP_RELEASES,
    RELEASES_DIR,
    Manifest,
    object_path,
    release_path,
)
from provision.share import Share, read_bytes_or_none, read_text_or_none
from provision.wheelhouse import RUNTIME_FILE, WHEELHOUSES_DIR, wheelhouse_path


@dataclass(frozen=True)
class HistoryEntry:
    release: str
    deployed_at: str


@dataclass(frozen=True)
class ReleaseInfo:
    release: str
    deployed_at: str | None
    files: int
    size: int
    live: bool


def load_history(share: Share) -> list[HistoryEntry]:
    data = read_bytes_or_none(share, HISTORY)
    if data is None:
        return []
    try:
        raw = json.loads(data)
        return [HistoryEntry(str(e["release"]), str(e["deployed_at"])) for e in raw]
    except (ValueError, KeyError, TypeError):
        return []  # a damaged history only loses dates: releases are still found by listing


def record_live(share: Share, release: str) -> None:
    entries = [e for e in load_history(share) if e.release != release]
    entries.append(HistoryEntry(release, datetime.now(UTC).isoformat(timespec="seconds")))
    body = [{"release": e.release, "deployed_at": e.deployed_at} for e in entries[-50:]]
    share.write_bytes(HISTORY, json.dumps(body, indent=1).encode())


def release_ids_on_share(share: Share) -> list[str]:
    return [
        path.rsplit("/", 1)[-1].removesuffix(".json") for path in share.list_files(RELEASES_DIR)
    ]


def kept_releases(share: Share) -> list[str]:
    """The releases to keep, newest first: the last KEEP_RELEASES made live, and `current`."""
    newest_first = [e.release for e in reversed(load_history(share))]
    kept = newest_first[:KEEP_RELEASES]
    current = read_text_or_none(share, CURRENT)
    if current is not None and current not in kept:
        kept.insert(0, current)
    return kept


def previous_of(share: Share, current: str | None) -> str | None:
    """The release made live before `current` that the share still holds."""
    on_share = set(release_ids_on_share(share))
    for entry in reversed(load_history(share)):
        if entry.release != current and entry.release in on_share:
            return entry.release
    return None


def _wheelhouse_of(share: Share, manifest: Manifest) -> str | None:
    entry = manifest.files.get(RUNTIME_FILE)
    if entry is None:
        return None
    key: str | None = json.loads(share.read_bytes(object_path(entry.sha256)))["wheelhouse"]
    return key


def prune(share: Share) -> None:
    """Delete releases beyond the kept ones and the wheelhouses no kept release uses, then the
    bodies only they used. Bodies are found from the manifests, never by listing every object
    folder (hundreds of requests on a remote share); a body no manifest ever named (a deploy
    killed mid-upload) stays, and the next deploy of that content reuses it."""
    keep = set(kept_releases(share))
    keep_objects: set[str] = set()
    dropped_objects: set[str] = set()
    keep_wheelhouses: set[str] = set()
    for release in release_ids_on_share(share):
        manifest = Manifest.from_json(share.read_bytes(release_path(release)))
        bodies = {object_path(e.sha256) for e in manifest.files.values()}
        if release in keep:
            keep_objects.update(bodies)
            key = _wheelhouse_of(share, manifest)
            if key is not None:
                keep_wheelhouses.add(wheelhouse_path(key))
        else:
            share.delete(release_path(release))  # the manifest first: it never names a gap
            dropped_objects.update(bodies)
    for path in list(share.list_files(WHEELHOUSES_DIR)):
        wheels = Manifest.from_json(share.read_bytes(path))
        bodies = {object_path(e.sha256) for e in wheels.files.values()}
        if path in keep_wheelhouses:
            keep_objects.update(bodies)
        else:
            share.delete(path)
            dropped_objects.update(bodies)
    for path in sorted(dropped_objects - keep_objects):
        share.delete(path)


def list_releases(share: Share) -> list[ReleaseInfo]:
    """Every release on the share, newest first (those without a date last)."""
    current = read_text_or_none(share, CURRENT)
    history = load_history(share)
    dates = {e.release: e.deployed_at for e in history}
    order = {e.release: position for position, e in enumerate(history)}
    infos = []
    for release in release_ids_on_share(share):
        manifest = Manifest.from_json(share.read_bytes(release_path(release)))
        infos.append(
            ReleaseInfo(
                release=release,
                deployed_at=dates.get(release),
                files=len(manifest.files),
                size=sum(e.size for e in manifest.files.values()),
                live=release == current,
            )
        )
    return sorted(infos, key=lambda info: order.get(info.release, -1), reverse=True)

"""Deploy: sync the inference code to the share as a release, switch to it, restart, verify.

Guarantees (DESIGN.md "Share layout"): unchanged files are never uploaded again; `current` is
switched last and atomically, so a replica never starts on a half-written release; a release that
fails readiness is rolled back to `previous`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from provision.deploy_lock import deploy_lock
from provision.errors import AcaInferError, InputError, NotReadyError
from provision.release import (
    BOOTSTRAP,
    CURRENT,
    PREVIOUS,
    Manifest,
    object_path,
    release_path,
    scan_tree,
)
from provision.release_history import (
    ReleaseInfo,
    list_releases,
    previous_of,
    prune,
    record_live,
    release_ids_on_share,
)
from provision.share import Share, read_text_or_none
from provision.targets import Progress, ReadyState, Target

APP_PACKAGE = "inference_app"
UPLOAD_WORKERS = 8
UPLOAD_PROGRESS_EVERY = 50


@dataclass(frozen=True)
class DeploySettings:
    source_dir: Path
    ready_timeout: float = 600.0
    break_lock: bool = False
    restart: bool = False  # even when the release is unchanged: the model may have changed

    def __post_init__(self) -> None:
        if not (self.source_dir / "__main__.py").is_file():
            raise InputError(
                f"--app-dir {self.source_dir}: no {APP_PACKAGE} package there (missing "
                "__main__.py); run from the aca-infer checkout or pass --project-dir"
            )
        if self.ready_timeout <= 0:
            raise InputError("--ready-timeout must be a positive number of seconds")


@dataclass(frozen=True)
class SyncStats:
    uploaded: int
    unchanged: int
    deleted: int
    bytes_uploaded: int


@dataclass(frozen=True)
class DeployResult:
    release: str
    previous_release: str | None
    uploaded: int
    deleted: int
    unchanged: int
    bytes_uploaded: int
    endpoint: str
    ui_url: str
    ready: bool
    restarted: bool


@dataclass(frozen=True)
class ReleasesResult:
    target: str
    releases: list[ReleaseInfo]


@dataclass(frozen=True)
class RollbackResult:
    release: str
    previous_release: str
    endpoint: str
    ready: bool


def bootstrap_source() -> bytes:
    return resources.files("provision").joinpath("share_files/bootstrap.py").read_bytes()


def _load_manifest(share: Share, release_id: str | None) -> Manifest | None:
    if release_id is None or not share.exists(release_path(release_id)):
        return None
    return Manifest.from_json(share.read_bytes(release_path(release_id)))


def _write_body(share: Share, target: str, body: Path) -> None:
    share.write_bytes(target, body.read_bytes())  # read in the worker: one body in memory each


def _upload_bodies(share: Share, bodies: dict[str, Path], progress: Progress) -> None:
    """Write the bodies in parallel (a remote share answers each request in tens of ms), saying
    how far it got every `UPLOAD_PROGRESS_EVERY` files."""
    total_bytes = sum(path.stat().st_size for path in bodies.values())
    done_files = done_bytes = 0
    with ThreadPoolExecutor(max_workers=UPLOAD_WORKERS) as pool:
        uploads = {
            pool.submit(_write_body, share, target, path): path for target, path in bodies.items()
        }
        for finished in as_completed(uploads):
            finished.result()
            done_files += 1
            done_bytes += uploads[finished].stat().st_size
            if done_files % UPLOAD_PROGRESS_EVERY == 0 or done_files == len(bodies):
                progress(
                    f"uploaded {done_files}/{len(bodies)} files, {done_bytes}/{total_bytes} bytes"
                )


def _bodies_on_share(share: Share, manifest: Manifest, current: Manifest | None) -> set[str]:
    """Which of the manifest's bodies the share holds. Those of the live release's manifest are
    there (a manifest is written only after all its bodies, and pruning keeps the bodies of the
    releases it keeps); only the folders of the others are listed, so a redeploy costs a few
    listings on a remote share whatever the tree's size, not one per object folder."""
    known = {object_path(e.sha256) for e in current.files.values()} if current else set()
    wanted = {object_path(e.sha256) for e in manifest.files.values()} - known
    found = set(known)
    for folder in sorted({path.rsplit("/", 1)[0] for path in wanted}):
        found.update(share.list_files(folder))
    return found


def sync_release(
    share: Share,
    manifest: Manifest,
    bodies: dict[str, Path],
    current_release: str | None,
    progress: Progress,
) -> SyncStats:
    """Upload what the share lacks: file bodies by content, then the bootstrap, then the
    manifest last, so a manifest on the share always names bodies that are all there."""
    current = _load_manifest(share, current_release)
    existing = _bodies_on_share(share, manifest, current)
    changed = [
        p for p, e in sorted(manifest.files.items()) if object_path(e.sha256) not in existing
    ]
    # Files with the same content share one body: write it once.
    bodies_to_write = {object_path(manifest.files[path].sha256): path for path in changed}
    uploaded, unchanged = len(changed), len(manifest.files) - len(changed)
    bytes_uploaded = sum(manifest.files[path].size for path in bodies_to_write.values())
    if changed:
        progress(f"upload {uploaded} changed files ({bytes_uploaded} bytes) to {share.describe()}")
    _upload_bodies(
        share, {target: bodies[path] for target, path in bodies_to_write.items()}, progress
    )
    bootstrap = bootstrap_source()
    on_share = share.read_bytes(BOOTSTRAP) if share.exists(BOOTSTRAP) else None
    if on_share != bootstrap:
        progress(f"upload {BOOTSTRAP}")
        share.write_bytes(BOOTSTRAP, bootstrap)
        uploaded += 1
        bytes_uploaded += len(bootstrap)
    else:
        unchanged += 1
    if not share.exists(release_path(manifest.release_id)):
        share.write_bytes(release_path(manifest.release_id), manifest.to_json())
    deleted = len(set(current.files) - set(manifest.files)) if current else 0
    return SyncStats(uploaded, unchanged, deleted, bytes_uploaded)


def _switch(share: Share, current: str, previous: str | None) -> None:
    """Name the live release. Only after the replica on it is ready (it is pinned, so it never
    needed `current`): a deploy stopped at any point leaves `current` naming what serves."""
    # `previous` first: if we stop between the two writes, `current` still names a whole release.
    if previous is not None and previous != current:
        share.write_bytes(PREVIOUS, previous.encode())
    share.write_bytes(CURRENT, current.encode())
    record_live(share, current)


def _restart_and_wait(
    target: Target, release: str | None, timeout: float, progress: Progress
) -> ReadyState:
    progress("restart the replica in place")
    try:
        target.replica.restart(release)
    except AcaInferError as error:  # e.g. its port was taken since the deploy checked it
        return ReadyState(False, str(error))
    return target.replica.wait_ready(timeout, progress)


def _roll_out(target: Target, release: str, timeout: float, progress: Progress) -> ReadyState:
    try:
        return target.replica.roll_out(release, timeout, progress)
    except AcaInferError as error:
        return ReadyState(False, str(error))


def deploy(target: Target, settings: DeploySettings, progress: Progress) -> DeployResult:
    target.check_deployable()
    share = target.share
    manifest, bodies = scan_tree(settings.source_dir, APP_PACKAGE)
    with deploy_lock(share, progress, settings.break_lock) as lock:
        current = read_text_or_none(share, CURRENT)
        stats = sync_release(share, manifest, bodies, current, progress)
        new = manifest.release_id
        changed = target.replica.settings_changed()
        if changed:
            progress(f"{', '.join(changed)} changed since the replica started: restart to apply")
        running = target.replica.is_running()
        if current == new and not (settings.restart or changed) and running:
            state = target.replica.wait_ready(settings.ready_timeout, progress)
            if state.ready:
                progress(f"release {new} is already live; nothing to restart")
                return _result(target, new, read_text_or_none(share, PREVIOUS), stats, False)
        previous = current if current != new else read_text_or_none(share, PREVIOUS)
        lock.check()
        if settings.restart:
            state = _restart_and_wait(target, new, settings.ready_timeout, progress)
            if not state.ready:
                raise _restarted_previous(target, new, previous, state, settings, progress)
        else:
            state = _roll_out(target, new, settings.ready_timeout, progress)
            if not state.ready:
                raise _kept_serving(new, current, running, state)
        _switch(share, new, previous)
        prune(share)
        return _result(target, new, previous, stats, True)


def _result(
    target: Target, release: str, previous: str | None, stats: SyncStats, restarted: bool
) -> DeployResult:
    return DeployResult(
        release=release,
        previous_release=previous,
        uploaded=stats.uploaded,
        deleted=stats.deleted,
        unchanged=stats.unchanged,
        bytes_uploaded=stats.bytes_uploaded,
        endpoint=target.endpoint(),
        ui_url=target.ui_url(),
        ready=True,
        restarted=restarted,
    )


def _kept_serving(
    failed: str, current: str | None, running: bool, state: ReadyState
) -> NotReadyError:
    """The failed replica was started beside the live one, which never stopped serving."""
    reason = f"release {failed} did not become ready: {state.reason}"
    if current is None:
        return NotReadyError(f"{reason}\nthere is no previous release to roll back to")
    if not running:
        return NotReadyError(f"{reason}\nno replica was running; `current` still names {current}")
    return NotReadyError(
        f"{reason}\nrelease {current} kept serving throughout; `current` still names it"
    )


def _restarted_previous(
    target: Target,
    failed: str,
    previous: str | None,
    state: ReadyState,
    settings: DeploySettings,
    progress: Progress,
) -> NotReadyError:
    """In place there is no old replica left: start the previous release again."""
    reason = f"release {failed} did not become ready: {state.reason}"
    if previous is None:
        return NotReadyError(f"{reason}; there is no previous release to roll back to")
    progress(f"roll back to {previous}")
    restored = _restart_and_wait(target, previous, settings.ready_timeout, progress)
    outcome = "ready" if restored.ready else f"also not ready: {restored.reason}"
    return NotReadyError(f"{reason}; rolled back to {previous} ({outcome})")


def rollback(
    target: Target, ready_timeout: float, progress: Progress, to: str | None = None
) -> RollbackResult:
    """Roll out an earlier release (default: the one live before `current`) beside the running
    one, as a deploy does; `current` names it once it is ready."""
    target.check_deployable()
    share = target.share
    with deploy_lock(share, progress) as lock:
        current = read_text_or_none(share, CURRENT)
        kept = release_ids_on_share(share)
        if to is None:
            to = previous_of(share, current)
            if to is None:
                raise InputError("nothing to roll back to: the share has no previous release")
        elif to not in kept:
            raise InputError(
                f"--to {to}: no such release on the share; `aca-infer releases` lists them"
            )
        if to == current and target.replica.is_running():
            raise InputError(f"--to {to}: that release is already live")
        lock.check()
        state = _roll_out(target, to, ready_timeout, progress)
        if not state.ready:
            raise _kept_serving(to, current, target.replica.is_running(), state)
        _switch(share, to, current)
        return RollbackResult(to, current or "", target.endpoint(), True)


def releases(target: Target) -> ReleasesResult:
    return ReleasesResult(target.name, list_releases(target.share))

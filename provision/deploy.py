"""Deploy: sync the inference code to the share as a release, roll it out, verify, switch.

Guarantees (DESIGN.md "Share layout"): unchanged files are never uploaded again; a manifest is
written only after every body it names, so a replica never starts on a half-written release; the
new release is rolled out beside the running one (`Replica.roll_out`, pinned to its id) and
takes over only once ready; it is recorded live (`release_history`) only after that, so the
history always names what serves. A release that fails readiness never takes over: the old one
kept serving and stays the live release (exit 5). `--restart` restarts in place and, on
failure, starts the previous release again. One deploy at a time (`deploy_lock`, which heals
when its holder dies); the last `KEEP_RELEASES` releases stay on the share for `rollback --to`
(`release_history`).
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from provision.assets import APP_PACKAGE, bootstrap_source
from provision.deploy_lock import deploy_lock
from provision.errors import AcaInferError, InputError, NotReadyError, OperationError
from provision.manifest_cache import ManifestCache
from provision.release import (
    BOOTSTRAP,
    LOCK,
    FileEntry,
    Manifest,
    object_path,
    release_path,
    scan_tree,
    sha256_bytes,
)
from provision.release_history import (
    ReleaseInfo,
    list_releases,
    previous_of,
    prune,
    read_history,
    record_live,
    release_ids_on_share,
)
from provision.share import Share, read_bytes_or_none
from provision.targets import Progress, ReadyState, Target
from provision.wheelhouse import (
    RUNTIME_FILE,
    PipDownloader,
    RuntimeSpec,
    WheelDownloader,
    serve_requirements,
    wheelhouse_path,
)

UPLOAD_WORKERS = 8
UPLOAD_PROGRESS_EVERY = 50


@dataclass(frozen=True)
class DeploySettings:
    source_dir: Path
    ready_timeout: float = 600.0
    break_lock: bool = False
    restart: bool = False  # even when the release is unchanged: the model may have changed
    # The packages the server needs beside the image's torch; None: the `serve` extra.
    requirements: tuple[str, ...] | None = None
    downloader: WheelDownloader = field(default_factory=PipDownloader)
    # Manifests this project deployed (content-addressed: right for any share); None: none kept.
    cache_dir: Path | None = None
    # The release this project deployed last: a tree that differs goes straight to the lock,
    # without first looking for a redeploy of what is live (None: always look).
    last_release: str | None = None

    def __post_init__(self) -> None:
        if not (self.source_dir / "__main__.py").is_file():
            raise InputError(
                f"--app-dir {self.source_dir}: no {APP_PACKAGE} package there (missing "
                "__main__.py); pass the folder of a server package"
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


def _upload_bodies(
    share: Share, bodies: dict[str, str], read_body: Callable[[str], bytes], progress: Progress
) -> None:
    """Write the bodies (share path -> the file they stand for) in parallel, reading each in its
    worker (one body in memory per worker); a remote share answers each request in tens of ms.
    Says how far it got every `UPLOAD_PROGRESS_EVERY` files."""
    done_files = done_bytes = 0

    def write(target: str, path: str) -> int:
        data = read_body(path)
        share.write_bytes(target, data)
        return len(data)

    with ThreadPoolExecutor(max_workers=UPLOAD_WORKERS) as pool:
        uploads = [pool.submit(write, target, path) for target, path in bodies.items()]
        for finished in as_completed(uploads):
            done_files += 1
            done_bytes += finished.result()
            if done_files % UPLOAD_PROGRESS_EVERY == 0 or done_files == len(bodies):
                progress(f"uploaded {done_files}/{len(bodies)} files, {done_bytes} bytes")


def _bodies_on_share(share: Share, manifest: Manifest, known: set[str] | None) -> set[str]:
    """Which of the manifest's bodies the share holds, given bodies `known` to be there (those
    of the live release's manifest: a manifest is written only after all its bodies, and pruning
    keeps the bodies of the releases it keeps). Only the folders of the others are listed, so a
    redeploy costs a few listings on a remote share whatever the tree's size. Beside a live
    release, a folder that could spare only one upload is not listed: a body the live release
    lacks is rarely there, and the listing would cost a request of its own (a body that is
    there is written again whole, atomically, with the same content)."""
    wanted = {object_path(e.sha256) for e in manifest.files.values()} - (known or set())
    found = set(known or set())
    least = 1 if known is None else 2
    folders = Counter(path.rsplit("/", 1)[0] for path in wanted)
    for folder in sorted(folder for folder, count in folders.items() if count >= least):
        found.update(share.list_files(folder))
    return found


def upload_missing(
    share: Share,
    manifest: Manifest,
    read_body: Callable[[str], bytes],
    progress: Progress,
    what: str = "changed files",
    known: Manifest | None = None,
) -> tuple[int, int]:
    """Write the bodies of `manifest` that the share lacks (by content); returns the number of
    files they stand for and the bytes written. `known`: a manifest whose bodies are there."""
    present = {object_path(e.sha256) for e in known.files.values()} if known else None
    existing = _bodies_on_share(share, manifest, present)
    changed = [
        p for p, e in sorted(manifest.files.items()) if object_path(e.sha256) not in existing
    ]
    # Files with the same content share one body: write it once.
    bodies_to_write = {object_path(manifest.files[path].sha256): path for path in changed}
    bytes_uploaded = sum(manifest.files[path].size for path in bodies_to_write.values())
    if changed:
        progress(f"upload {len(changed)} {what} ({bytes_uploaded} bytes) to {share.describe()}")
    _upload_bodies(share, bodies_to_write, read_body, progress)
    return len(changed), bytes_uploaded


def sync_release(
    share: Share,
    manifest: Manifest,
    read_body: Callable[[str], bytes],
    current_release: str | None,
    progress: Progress,
    manifests: ManifestCache | None = None,
) -> SyncStats:
    """Upload what the share lacks: file bodies by content, then the bootstrap, then the
    manifest last, so a manifest on the share always names bodies that are all there."""
    manifests = manifests or ManifestCache(None)
    current = None if current_release is None else manifests.manifest(share, current_release)
    uploaded, bytes_uploaded = upload_missing(share, manifest, read_body, progress, known=current)
    unchanged = len(manifest.files) - uploaded
    bootstrap = bootstrap_source()
    on_share = read_bytes_or_none(share, BOOTSTRAP)
    if on_share != bootstrap:
        progress(f"upload {BOOTSTRAP}")
        share.write_bytes(BOOTSTRAP, bootstrap)
        uploaded += 1
        bytes_uploaded += len(bootstrap)
    else:
        unchanged += 1
    # Written again when it is there already (a release made live before): one write costs
    # less than asking first on every deploy of a new release. In place: a cut manifest does
    # not match its id, readers skip it, and the next deploy writes it again.
    if current is None or manifest.release_id != current_release:
        share.write_in_place(release_path(manifest.release_id), manifest.to_json())
    manifests.store(manifest)
    deleted = len(set(current.files) - set(manifest.files)) if current else 0
    return SyncStats(uploaded, unchanged, deleted, bytes_uploaded)


def _entry(path: Path) -> FileEntry:
    return FileEntry(sha256_bytes(path.read_bytes()), path.stat().st_size)


def sync_wheelhouse(
    share: Share, spec: RuntimeSpec, downloader: WheelDownloader, progress: Progress
) -> tuple[int, int]:
    """Put the wheels for `spec` on the share unless its wheelhouse is there already: downloaded
    once per requirements key, bodies the share has are not uploaded again, the wheelhouse's
    manifest written last. Returns the wheels uploaded and their bytes."""
    key = spec.key
    if key is None or spec.platform is None or share.exists(wheelhouse_path(key)):
        return 0, 0
    platform = spec.platform
    progress(
        f"download the server's packages once for requirements {key} "
        f"(Python {platform.python_version}, {platform.platform})"
    )
    with tempfile.TemporaryDirectory(prefix="aca-infer-wheels-") as folder:
        wheels = downloader.download(spec.requirements, platform, Path(folder))
        if not wheels:
            raise OperationError(f"no wheels were downloaded for {', '.join(spec.requirements)}")
        bodies = {wheel.name: wheel for wheel in wheels}
        manifest = Manifest({name: _entry(path) for name, path in bodies.items()})
        uploaded = upload_missing(
            share, manifest, lambda name: bodies[name].read_bytes(), progress, "wheels"
        )
    share.write_bytes(wheelhouse_path(key), manifest.to_json())
    return uploaded


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


def build_release(source_dir: Path, spec: RuntimeSpec) -> tuple[Manifest, Callable[[str], bytes]]:
    """The release of `source_dir` with the record of what it needs installed (`RUNTIME_FILE`),
    and how to read each file's body."""
    manifest, bodies = scan_tree(source_dir, APP_PACKAGE)
    runtime = spec.to_json()
    manifest = Manifest(
        {**manifest.files, RUNTIME_FILE: FileEntry(sha256_bytes(runtime), len(runtime))}
    )

    def read_body(path: str) -> bytes:
        return runtime if path == RUNTIME_FILE else bodies[path].read_bytes()

    return manifest, read_body


def _already_live(
    target: Target, manifest: Manifest, settings: DeploySettings, progress: Progress
) -> tuple[DeployResult | None, bool]:
    """A redeploy of what is live, found without taking the lock (which costs a remote share
    five requests): the history names this very release live, no deploy is under way, the
    bootstrap is this CLI's and the replica on it is ready. Writes nothing. Returns the result,
    or None and whether the replica was awaited in vain (the locked path then does not wait
    again)."""
    share, new = target.share, manifest.release_id
    history = read_history(share)
    if history.current != new or share.exists(LOCK):
        return None, False  # a deploy holding the lock: the locked path names its holder
    if read_bytes_or_none(share, BOOTSTRAP) != bootstrap_source():
        return None, False
    if target.replica.settings_changed() or not target.replica.is_running():
        return None, False
    if not target.replica.wait_ready(settings.ready_timeout, progress).ready:
        return None, True
    progress(f"release {new} is already live; nothing to upload or restart")
    stats = SyncStats(0, len(manifest.files) + 1, 0, 0)  # + 1: the bootstrap
    return _result(target, new, history.previous(new), stats, False), False


def deploy(target: Target, settings: DeploySettings, progress: Progress) -> DeployResult:
    target.check_deployable()
    share = target.share
    requirements = settings.requirements
    spec = RuntimeSpec(
        serve_requirements() if requirements is None else requirements, target.image_platform()
    )
    manifest, read_body = build_release(settings.source_dir, spec)
    new = manifest.release_id
    manifests = ManifestCache(settings.cache_dir)
    manifests.store_body(read_body(RUNTIME_FILE))  # pruning reads it by hash
    awaited_in_vain = False
    maybe_live = settings.last_release in (None, new)
    if maybe_live and not (settings.restart or settings.break_lock):
        live, awaited_in_vain = _already_live(target, manifest, settings, progress)
        if live is not None:
            return live
    with deploy_lock(share, progress, settings.break_lock) as lock:
        history = read_history(share)
        current = history.current
        # The wheels first: a release on the share always names a complete wheelhouse.
        wheels, wheel_bytes = sync_wheelhouse(share, spec, settings.downloader, progress)
        stats = sync_release(share, manifest, read_body, current, progress, manifests)
        stats = SyncStats(
            stats.uploaded + wheels,
            stats.unchanged,
            stats.deleted,
            stats.bytes_uploaded + wheel_bytes,
        )
        changed = target.replica.settings_changed()
        if changed:
            progress(f"{', '.join(changed)} changed since the replica started: restart to apply")
        running = target.replica.is_running()
        unchanged = current == new and not (settings.restart or changed) and running
        if unchanged and not awaited_in_vain:
            state = target.replica.wait_ready(settings.ready_timeout, progress)
            if state.ready:
                progress(f"release {new} is already live; nothing to restart")
                return _result(target, new, history.previous(new), stats, False)
        previous = current if current != new else history.previous(new)
        lock.check()
        if settings.restart:
            state = _restart_and_wait(target, new, settings.ready_timeout, progress)
            if not state.ready:
                raise _restarted_previous(target, new, previous, state, settings, progress)
        else:
            state = _roll_out(target, new, settings.ready_timeout, progress)
            if not state.ready:
                raise _kept_serving(new, current, running, state)
        # Made live only now, once its replica is ready (it is pinned to the release, so it
        # never needed the history): a deploy stopped at any point leaves the live one named.
        history = record_live(share, history, new)
        prune(share, history, manifests)
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
        return NotReadyError(
            f"{reason}\nno replica was running; {current} is still the live release"
        )
    return NotReadyError(
        f"{reason}\nrelease {current} kept serving throughout and is still the live release"
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
    """Roll out an earlier release (default: the one live before the live one) beside the
    running one, as a deploy does; it is recorded live once it is ready."""
    target.check_deployable()
    share = target.share
    with deploy_lock(share, progress) as lock:
        history = read_history(share)
        current = history.current
        kept = release_ids_on_share(share)
        if to is None:
            to = previous_of(share, history)
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
        record_live(share, history, to)
        return RollbackResult(to, current or "", target.endpoint(), True)


def releases(target: Target) -> ReleasesResult:
    return ReleasesResult(target.name, list_releases(target.share))

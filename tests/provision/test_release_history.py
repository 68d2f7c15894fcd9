"""The live release and its history as marker files, and manifests kept on local disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision.deploy import DeploySettings, build_release, deploy, releases
from provision.local.share import LocalShare
from provision.manifest_cache import ManifestCache
from provision.release import HISTORY_DIR, RELEASES_DIR, Manifest, release_path
from provision.release_history import read_current, read_history, record_live
from provision.wheelhouse import RuntimeSpec, serve_requirements
from tests.provision.fakes import FakeTarget
from tests.provision.test_deploy import quiet, write_app


class CountingShare(LocalShare):
    """Counts reads of release manifests, as a remote share would bill them."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.manifest_reads = 0

    def read_bytes(self, path: str) -> bytes:
        if path.startswith(f"{RELEASES_DIR}/"):
            self.manifest_reads += 1
        return super().read_bytes(path)


def test_the_newest_marker_names_the_live_release_whatever_the_clocks(tmp_path: Path) -> None:
    share = LocalShare(tmp_path)
    assert read_current(share) is None
    history = read_history(share)
    for release in ("r-aaaaaaaaaaaa", "r-bbbbbbbbbbbb", "r-aaaaaaaaaaaa"):
        history = record_live(share, history, release)  # several in the same second
    # A marker from a machine whose clock is ahead does not outrank a later sequence.
    (tmp_path / HISTORY_DIR / "00000001_29990101T000000Z_r-cccccccccccc").touch()
    (tmp_path / HISTORY_DIR / "notes.txt").write_text("not a marker")
    reread = read_history(share)
    assert read_current(share) == "r-aaaaaaaaaaaa"
    assert [e.sequence for e in reread.entries][-3:] == [1, 2, 3]
    assert reread.previous() == "r-bbbbbbbbbbbb"
    assert reread.kept()[:2] == ["r-aaaaaaaaaaaa", "r-bbbbbbbbbbbb"]


def test_a_cut_manifest_is_not_a_release_and_the_next_deploy_writes_it_whole(
    tmp_path: Path,
) -> None:
    app = tmp_path / "inference_app"
    target = FakeTarget(tmp_path / "share")
    write_app(app, {"a.py": "A"})
    live = deploy(target, DeploySettings(app), quiet).release
    write_app(app, {"a.py": "B"})
    manifest, _ = build_release(app, RuntimeSpec(serve_requirements(), None))
    # A deploy killed while it wrote its manifest in place left a prefix of it.
    target.share.write_bytes(release_path(manifest.release_id), manifest.to_json()[:40])
    assert [info.release for info in releases(target).releases] == [live]
    again = deploy(target, DeploySettings(app), quiet)
    assert again.release == manifest.release_id
    assert [info.release for info in releases(target).releases] == [again.release, live]


def test_a_redeploy_reads_the_live_manifest_from_the_local_copy(tmp_path: Path) -> None:
    app = tmp_path / "inference_app"
    share = CountingShare(tmp_path / "share")
    target = FakeTarget(tmp_path / "share")
    target._share = target._replica.share = share
    cache = tmp_path / "cache"
    write_app(app, {"a.py": "A"})
    deploy(target, DeploySettings(app, cache_dir=cache), quiet)
    write_app(app, {"a.py": "B"})
    share.manifest_reads = 0
    deploy(target, DeploySettings(app, cache_dir=cache), quiet)
    assert share.manifest_reads == 0
    elsewhere = tmp_path / "elsewhere"  # another machine reads it from the share
    write_app(app, {"a.py": "C"})
    deploy(target, DeploySettings(app, cache_dir=elsewhere), quiet)
    assert share.manifest_reads == 1


def test_a_damaged_local_copy_is_read_again_from_the_share(tmp_path: Path) -> None:
    share = LocalShare(tmp_path / "share")
    manifest = Manifest({})
    share.write_in_place(release_path(manifest.release_id), manifest.to_json())
    cache = ManifestCache(tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / f"{manifest.release_id}.json").write_text('{"files": {"x": 1}}')
    assert cache.manifest(share, manifest.release_id) == manifest
    assert cache.manifest(share, "r-000000000000") is None


@pytest.mark.parametrize("data", [b"", b"x" * 100])
def test_a_body_kept_locally_must_match_its_hash(tmp_path: Path, data: bytes) -> None:
    from provision.release import object_path, sha256_bytes

    share = LocalShare(tmp_path / "share")
    sha = sha256_bytes(data)
    share.write_bytes(object_path(sha), data)
    cache = ManifestCache(tmp_path / "cache")
    assert cache.body(share, sha) == data
    (tmp_path / "cache" / sha).write_bytes(b"tampered")
    assert cache.body(share, sha) == data

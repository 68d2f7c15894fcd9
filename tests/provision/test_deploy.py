from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provision.deploy import DeploySettings, deploy, releases, rollback
from provision.errors import InputError, NotReadyError, OperationError
from provision.local.share import LocalShare
from provision.release import (
    LOCK,
    OBJECTS_DIR,
    Manifest,
    release_path,
    sha256_bytes,
)
from provision.release_history import read_current
from tests.provision.app_trees import apply_tree, local_tree, remote_tree, trees
from tests.provision.fakes import FakeTarget

# Every release holds its code plus one record of the packages it needs (RUNTIME_FILE).
RECORD = 1


def quiet(message: str) -> None:
    pass


def write_app(app: Path, files: dict[str, str]) -> None:
    app.mkdir(parents=True, exist_ok=True)
    (app / "__main__.py").write_text("print('serve')\n")
    apply_tree(app, files, keep=frozenset({"__main__.py"}))


@pytest.fixture
def target(tmp_path: Path) -> FakeTarget:
    return FakeTarget(tmp_path / "share")


def test_first_deploy_uploads_everything_and_switches(tmp_path: Path, target: FakeTarget) -> None:
    app = tmp_path / "inference_app"
    write_app(app, {"a.py": "A", "pkg/b.py": "B"})
    result = deploy(target, DeploySettings(app), quiet)
    assert result.uploaded == 3 + RECORD + 1  # three files, the record and the bootstrap
    assert result.unchanged == 0 and result.previous_release is None and result.ready
    assert read_current(target.share) == result.release
    assert remote_tree(target.share) == local_tree(app)
    assert target.replica.started_on == [result.release]
    assert not target.share.exists(LOCK)


def test_redeploy_without_change_uploads_nothing_and_does_not_restart(
    tmp_path: Path, target: FakeTarget
) -> None:
    app = tmp_path / "inference_app"
    write_app(app, {"a.py": "A"})
    first = deploy(target, DeploySettings(app), quiet)
    second = deploy(target, DeploySettings(app), quiet)
    assert (second.uploaded, second.bytes_uploaded, second.release) == (0, 0, first.release)
    assert not second.restarted
    assert len(target.replica.started_on) == 1


def test_changed_file_uploads_only_that_file(tmp_path: Path, target: FakeTarget) -> None:
    app = tmp_path / "inference_app"
    write_app(app, {"a.py": "A", "b.py": "B"})
    first = deploy(target, DeploySettings(app), quiet)
    write_app(app, {"a.py": "A2"})
    second = deploy(target, DeploySettings(app), quiet)
    assert (second.uploaded, second.deleted, second.unchanged) == (1, 1, 1 + RECORD + 1)
    assert second.bytes_uploaded == 2
    assert second.previous_release == first.release
    assert releases(target).releases[1].release == first.release  # live before it


def test_release_that_fails_readiness_never_takes_over(tmp_path: Path, target: FakeTarget) -> None:
    app = tmp_path / "inference_app"
    write_app(app, {"a.py": "good"})
    good = deploy(target, DeploySettings(app), quiet).release
    target.replica.is_ready = lambda release: release == good
    write_app(app, {"a.py": "broken"})
    with pytest.raises(NotReadyError, match=f"release {good} kept serving throughout"):
        deploy(target, DeploySettings(app), quiet)
    assert read_current(target.share) == good
    assert target.replica.live == good
    assert not target.share.exists(LOCK)


def test_in_place_restart_that_fails_starts_the_previous_release_again(
    tmp_path: Path, target: FakeTarget
) -> None:
    app = tmp_path / "inference_app"
    write_app(app, {"a.py": "good"})
    good = deploy(target, DeploySettings(app), quiet).release
    target.replica.is_ready = lambda release: release == good
    write_app(app, {"a.py": "broken"})
    with pytest.raises(NotReadyError, match=f"rolled back to {good} \\(ready\\)"):
        deploy(target, DeploySettings(app, restart=True), quiet)
    assert read_current(target.share) == good
    assert target.replica.started_on[-1] == good


def test_first_release_failing_readiness_says_there_is_nothing_to_roll_back_to(
    tmp_path: Path, target: FakeTarget
) -> None:
    target.replica.is_ready = lambda release: False
    app = tmp_path / "inference_app"
    write_app(app, {})
    with pytest.raises(NotReadyError, match="no previous release"):
        deploy(target, DeploySettings(app), quiet)


def test_rollback_on_demand_swaps_current_and_previous(tmp_path: Path, target: FakeTarget) -> None:
    app = tmp_path / "inference_app"
    write_app(app, {"a.py": "one"})
    one = deploy(target, DeploySettings(app), quiet).release
    write_app(app, {"a.py": "two"})
    two = deploy(target, DeploySettings(app), quiet).release
    result = rollback(target, 5.0, quiet)
    assert (result.release, result.previous_release) == (one, two)
    assert remote_tree(target.share)["inference_app/a.py"] == b"one"


def test_rollback_to_any_kept_release_and_the_last_five_are_kept(
    tmp_path: Path, target: FakeTarget
) -> None:
    app = tmp_path / "inference_app"
    ids = []
    for body in "1234567":
        write_app(app, {"a.py": body})
        ids.append(deploy(target, DeploySettings(app), quiet).release)
    listed = releases(target).releases
    assert [info.release for info in listed] == ids[::-1][:5]
    assert [info.live for info in listed] == [True, False, False, False, False]
    live = Manifest.from_json(target.share.read_bytes(release_path(ids[-1])))
    assert listed[0].files == 2 + RECORD
    assert listed[0].size == sum(e.size for e in live.files.values())
    assert live.files["inference_app/a.py"].size == 1
    result = rollback(target, 5.0, quiet, to=ids[2])
    assert (result.release, result.previous_release) == (ids[2], ids[6])
    assert remote_tree(target.share)["inference_app/a.py"] == b"3"
    with pytest.raises(InputError, match=f"--to {ids[0]}: no such release"):
        rollback(target, 5.0, quiet, to=ids[0])


def test_a_rollback_that_does_not_get_ready_leaves_the_live_release(
    tmp_path: Path, target: FakeTarget
) -> None:
    app = tmp_path / "inference_app"
    write_app(app, {"a.py": "one"})
    one = deploy(target, DeploySettings(app), quiet).release
    write_app(app, {"a.py": "two"})
    two = deploy(target, DeploySettings(app), quiet).release
    target.replica.is_ready = lambda release: release == two
    with pytest.raises(NotReadyError, match=f"release {one} did not become ready"):
        rollback(target, 5.0, quiet)
    assert (read_current(target.share), target.replica.live) == (two, two)


def test_rollback_without_previous_is_bad_input(tmp_path: Path, target: FakeTarget) -> None:
    app = tmp_path / "inference_app"
    write_app(app, {})
    deploy(target, DeploySettings(app), quiet)
    with pytest.raises(InputError, match="nothing to roll back"):
        rollback(target, 5.0, quiet)


def test_second_deploy_fails_fast_naming_the_lock_holder(
    tmp_path: Path, target: FakeTarget
) -> None:
    app = tmp_path / "inference_app"
    write_app(app, {})
    holder = {
        "holder": "ci@runner",
        "host": "runner",
        "pid": 42,
        "since": "2026-01-01T00:00:00+00:00",
        "heartbeat": time.time(),  # alive: beating on another machine
        "token": "t",
    }
    target.share.create_exclusive(LOCK, json.dumps(holder).encode())
    with pytest.raises(OperationError, match=r"ci@runner \(pid 42\) since 2026-01-01"):
        deploy(target, DeploySettings(app), quiet)
    assert read_current(target.share) is None
    assert deploy(target, DeploySettings(app, break_lock=True), quiet).ready


def test_compiled_files_and_caches_are_not_shipped(tmp_path: Path, target: FakeTarget) -> None:
    app = tmp_path / "inference_app"
    write_app(app, {"a.py": "A", "__pycache__/a.cpython-311.pyc": "x", ".hidden": "h"})
    deploy(target, DeploySettings(app), quiet)
    assert set(remote_tree(target.share)) == {"inference_app/__main__.py", "inference_app/a.py"}


def test_only_the_last_five_releases_are_kept(tmp_path: Path, target: FakeTarget) -> None:
    app = tmp_path / "inference_app"
    for body in "1234567":
        write_app(app, {"a.py": body})
        deploy(target, DeploySettings(app), quiet)
    kept = list(target.share.list_files("app/releases"))
    objects = list(target.share.list_files(OBJECTS_DIR))
    assert len(kept) == 5
    assert len(objects) == 6 + RECORD  # __main__.py, a.py of 3 to 7, the record


def test_virtualenvs_dot_folders_and_acainferignore_are_not_shipped(
    tmp_path: Path, target: FakeTarget
) -> None:
    app = tmp_path / "inference_app"
    write_app(
        app,
        {
            "a.py": "A",
            "venv/pyvenv.cfg": "home = /usr",
            "venv/lib/site.py": "x",
            "env2/conda-meta/history": "x",
            ".git/config": "x",
            "data/big.bin": "x",
            "notes/keep.md": "k",
            "notes/draft.md": "d",
            ".acainferignore": "data/\n*.md\n!keep.md\n",
        },
    )
    deploy(target, DeploySettings(app), quiet)
    assert set(remote_tree(target.share)) == {
        "inference_app/__main__.py",
        "inference_app/a.py",
        "inference_app/notes/keep.md",
    }


def test_deploy_settings_reject_a_folder_without_the_app(tmp_path: Path) -> None:
    with pytest.raises(InputError) as refused:
        DeploySettings(tmp_path)
    assert str(refused.value).startswith(f"--app-dir {tmp_path}: no inference_app package there")
    assert "\n" not in str(refused.value)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(trees, min_size=1, max_size=5))
def test_after_any_sequence_of_edits_and_deploys_remote_equals_local(
    tmp_path_factory: pytest.TempPathFactory, edits: list[dict[str, str]]
) -> None:
    root = tmp_path_factory.mktemp("prop")
    target = FakeTarget(root / "share")
    app = root / "inference_app"
    for tree in edits:
        write_app(app, tree)
        result = deploy(target, DeploySettings(app), quiet)
        assert remote_tree(target.share) == local_tree(app)
        assert result.uploaded + result.unchanged == len(local_tree(app)) + RECORD + 1


def test_files_with_equal_content_count_as_uploaded_and_share_one_body(
    tmp_path: Path, target: FakeTarget
) -> None:
    app = tmp_path / "inference_app"
    write_app(app, {"a.py": "same", "b.py": "same"})
    result = deploy(target, DeploySettings(app), quiet)
    assert (result.uploaded, result.unchanged) == (3 + RECORD + 1, 0)
    assert len(list(target.share.list_files(OBJECTS_DIR))) == 2 + RECORD
    assert remote_tree(target.share) == local_tree(app)


def test_restart_flag_restarts_an_unchanged_release(tmp_path: Path, target: FakeTarget) -> None:
    app = tmp_path / "inference_app"
    write_app(app, {"a.py": "A"})
    first = deploy(target, DeploySettings(app), quiet)
    again = deploy(target, DeploySettings(app, restart=True), quiet)
    assert (again.uploaded, again.release, again.restarted) == (0, first.release, True)
    assert target.replica.started_on == [first.release, first.release]


def test_a_replica_that_cannot_start_is_reported_not_ready_with_the_reason(
    tmp_path: Path, target: FakeTarget
) -> None:
    app = tmp_path / "inference_app"
    write_app(app, {"a.py": "A"})
    deploy(target, DeploySettings(app), quiet)
    target.replica.start_refusal = "port 1 is in use by another process"
    with pytest.raises(NotReadyError, match="did not become ready: port 1 is in use") as raised:
        deploy(target, DeploySettings(app, restart=True), quiet)
    assert "there is no previous release" in str(raised.value)
    assert not target.share.exists(LOCK)


class Killed(BaseException):
    """The deploy process died here (as with kill -9): nothing after it runs."""


class DyingShare(LocalShare):
    """A share whose writer dies after `writes_left` changes: every later call fails too."""

    def __init__(self, root: Path, writes_left: int) -> None:
        super().__init__(root)
        self.writes_left = writes_left

    def _change(self) -> None:
        if self.writes_left <= 0:
            raise Killed
        self.writes_left -= 1

    def write_bytes(self, path: str, data: bytes) -> None:
        self._change()
        super().write_bytes(path, data)

    def write_in_place(self, path: str, data: bytes) -> None:
        self._change()
        super().write_in_place(path, data)

    def create_exclusive(self, path: str, data: bytes) -> bool:
        self._change()
        return super().create_exclusive(path, data)

    def release_exclusive(self, path: str) -> None:
        self._change()
        super().release_exclusive(path)

    def delete(self, path: str) -> None:
        self._change()
        super().delete(path)


def assert_whole(share: LocalShare, release: str | None) -> None:
    """A release that is named live has its manifest and every body, each matching its hash."""
    if release is None:
        return
    manifest = Manifest.from_json(share.read_bytes(release_path(release)))
    for entry in manifest.files.values():
        body = share.read_bytes(f"{OBJECTS_DIR}/{entry.sha256[:2]}/{entry.sha256}")
        assert sha256_bytes(body) == entry.sha256


def as_if_the_holder_died(share: LocalShare) -> None:
    from tests.provision.test_deploy_lock import dead_pid

    if share.exists(LOCK):
        info = json.loads(share.read_bytes(LOCK))
        share.write_bytes(LOCK, json.dumps({**info, "pid": dead_pid()}).encode())


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(trees, min_size=2, max_size=4), st.integers(min_value=0, max_value=12))
def test_a_deploy_killed_at_any_point_never_serves_half_a_release_and_the_next_converges(
    tmp_path_factory: pytest.TempPathFactory, edits: list[dict[str, str]], kill_after: int
) -> None:
    root = tmp_path_factory.mktemp("killed")
    healthy = FakeTarget(root / "share")
    app = root / "inference_app"
    for tree in edits[:-1]:
        write_app(app, tree)
        deploy(healthy, DeploySettings(app), quiet)
    write_app(app, edits[-1])
    dying = FakeTarget(root / "share")
    dying._share = DyingShare(root / "share", kill_after)
    dying._replica = healthy.replica
    with contextlib.suppress(Killed):
        deploy(dying, DeploySettings(app), quiet)
    share = healthy.share
    assert_whole(share, read_current(share))
    assert_whole(share, healthy.replica.live)

    as_if_the_holder_died(share)
    result = deploy(healthy, DeploySettings(app), quiet)
    assert remote_tree(healthy.share) == local_tree(app)
    assert healthy.replica.live == result.release == read_current(share)
    assert not share.exists(LOCK)

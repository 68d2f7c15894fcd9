"""The bootstrap that the container (and the local replica) runs from the share."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provision.deploy import DeploySettings, deploy
from provision.local.share import LocalShare
from provision.release import HISTORY_DIR, OBJECTS_DIR
from provision.release_history import read_current
from tests.provision.fakes import FakeTarget

MAIN = "import os, sys\nprint('running', os.environ['ACA_INFER_RELEASE'], sys.argv[1:])\n"


def quiet(message: str) -> None:
    pass


@pytest.fixture
def share(tmp_path: Path) -> Path:
    app = tmp_path / "src/inference_app"
    app.mkdir(parents=True)
    (app / "__init__.py").write_text("")
    (app / "__main__.py").write_text(MAIN)
    deploy(FakeTarget(tmp_path / "share"), DeploySettings(app), quiet)
    return tmp_path / "share"


def run_bootstrap(share: Path, runtime: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ACA_INFER_MOUNT_ROOT": str(share), "ACA_INFER_RUNTIME_DIR": str(runtime)}
    return subprocess.run(
        [sys.executable, str(share / "app/bootstrap.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=share,
        timeout=60,
    )


def test_starts_the_current_release_from_a_local_copy(share: Path, tmp_path: Path) -> None:
    release = str(read_current(LocalShare(share)))
    done = run_bootstrap(share, tmp_path / "runtime", "--port", "1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"running {release} ['--port', '1']"
    assert (tmp_path / "runtime/releases" / release / ".complete").is_file()


def test_refuses_a_body_that_does_not_match_its_hash(share: Path, tmp_path: Path) -> None:
    body = next(p for p in (share / OBJECTS_DIR).rglob("*") if p.is_file())
    body.write_text("tampered")
    done = run_bootstrap(share, tmp_path / "runtime")
    assert done.returncode == 3
    assert "does not match its hash" in done.stderr
    assert not list((tmp_path / "runtime/releases").glob("r-*"))


def test_says_to_deploy_when_there_is_no_release(tmp_path: Path, share: Path) -> None:
    shutil.rmtree(share / HISTORY_DIR)
    done = run_bootstrap(share, tmp_path / "runtime")
    assert done.returncode == 3
    assert "deploy a release first" in done.stderr

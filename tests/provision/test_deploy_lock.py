"""The deploy lock heals: a holder that died is taken over, a live one is named."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from provision.deploy import DeploySettings, deploy
from provision.deploy_lock import acquire
from provision.errors import OperationError
from provision.local.share import LocalShare
from provision.release import LOCK
from provision.release_history import read_current
from provision.targets import Progress, ReadyState
from tests.inference_app.servers import wait_until
from tests.provision.fakes import FakeTarget
from tests.provision.test_deploy import write_app


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()  # reaped: the pid names no process now
    return process.pid


def lock_body(host: str, pid: int, heartbeat: float, holder: str = "ci@runner") -> bytes:
    body = {
        "holder": holder,
        "host": host,
        "pid": pid,
        "since": "2026-01-01T00:00:00+00:00",
        "heartbeat": heartbeat,
        "token": "old-token",
    }
    return json.dumps(body).encode()


def held(share: LocalShare) -> dict:
    value: dict = json.loads(share.read_bytes(LOCK))
    return value


def test_lock_of_a_dead_pid_on_this_host_is_taken_over_saying_whose(tmp_path: Path) -> None:
    share = LocalShare(tmp_path)
    pid = dead_pid()
    share.create_exclusive(LOCK, lock_body(socket.gethostname(), pid, time.time()))
    said: list[str] = []
    lock = acquire(share, said.append)
    try:
        assert held(share)["token"] == lock.info.token
        assert len(said) == 1
        assert said[0].startswith(
            f"took over the deploy lock of ci@runner (pid {pid}) since 2026-01-01T00:00:00+00:00"
        )
        assert f"pid {pid} no longer runs on {socket.gethostname()}" in said[0]
    finally:
        lock.release()
    assert not share.exists(LOCK)


def test_lock_without_heartbeat_for_longer_than_the_timeout_is_taken_over(
    tmp_path: Path,
) -> None:
    share = LocalShare(tmp_path)
    share.create_exclusive(LOCK, lock_body("another-machine", 42, time.time() - 3600))
    said: list[str] = []
    acquire(share, said.append).release()
    assert "no heartbeat for 3600s (more than 60s)" in said[0]
    assert "ci@runner (pid 42)" in said[0]


def test_live_holder_makes_a_second_deploy_fail_fast_naming_it(tmp_path: Path) -> None:
    share = LocalShare(tmp_path)
    share.create_exclusive(LOCK, lock_body("another-machine", 42, time.time()))
    with pytest.raises(OperationError, match=r"another deploy holds app/deploy.lock .*ci@runner"):
        acquire(share, print)
    assert held(share)["token"] == "old-token"  # untouched


def test_the_holder_refreshes_its_heartbeat_and_notices_a_lost_lock(tmp_path: Path) -> None:
    share = LocalShare(tmp_path)
    lock = acquire(share, print, heartbeat_seconds=0.05)
    beat = f"{LOCK}.beat-{lock.info.token}"
    wait_until(lambda: share.exists(beat), 10, "a first heartbeat")
    first = float(share.read_bytes(beat))
    wait_until(lambda: float(share.read_bytes(beat)) > first, 10, "a second heartbeat")
    lock.check()  # still ours
    other = LocalShare(tmp_path)  # another machine's deploy, taking it over
    other.delete(LOCK)
    other.create_exclusive(LOCK, lock_body("another-machine", 42, time.time()))
    wait_until(lambda: lock._lost is not None, 10, "the loss noticed")
    with pytest.raises(OperationError, match="another deploy took the lock over"):
        lock.check()
    lock.release()
    assert held(share)["token"] == "old-token"  # a lost lock is not ours to delete


def block_roll_outs(target: FakeTarget) -> tuple[threading.Event, threading.Event]:
    """From now on a roll-out waits until told to go on: a deploy in progress, holding the
    lock. Returns (inside, go_on)."""
    inside, go_on = threading.Event(), threading.Event()
    real = target.replica.roll_out

    def roll_out(release: str, timeout: float, progress: Progress) -> ReadyState:
        inside.set()
        go_on.wait(30)
        return real(release, timeout, progress)

    target.replica.roll_out = roll_out  # type: ignore[method-assign]
    return inside, go_on


def test_two_concurrent_deploys_one_fails_fast_naming_the_other(tmp_path: Path) -> None:
    target = FakeTarget(tmp_path / "share")
    app = tmp_path / "inference_app"
    write_app(app, {"a.py": "one"})
    deploy(target, DeploySettings(app), print)
    inside, go_on = block_roll_outs(target)
    write_app(app, {"a.py": "two"})
    results: list[object] = []
    first = threading.Thread(
        target=lambda: results.append(deploy(target, DeploySettings(app), print))
    )
    first.start()
    try:
        assert inside.wait(30)
        with pytest.raises(OperationError, match=r"another deploy holds .* \(pid \d+\)"):
            deploy(target, DeploySettings(app), print)
    finally:
        go_on.set()
        first.join()
    assert len(results) == 1
    assert read_current(target.share) == getattr(results[0], "release", None)
    assert not target.share.exists(LOCK)

"""A target whose share is a real local folder and whose replica is a stand-in that records
restarts and answers readiness from a rule, so deploy logic is tested without processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from provision.errors import OperationError
from provision.local.share import LocalShare
from provision.release_history import read_current
from provision.targets import (
    ApiKeys,
    DownPlan,
    DownResult,
    LogQuery,
    Progress,
    ProvisionResult,
    ProvisionSettings,
    ReadyState,
    ReplicaIdentity,
    RotateResult,
    ScaleResult,
    TargetDescription,
)
from provision.wheelhouse import ImagePlatform


@dataclass
class FakeReplica:
    share: LocalShare
    is_ready: Callable[[str | None], bool] = lambda release: True
    running: bool = False
    started_on: list[str | None] = field(default_factory=list)
    start_refusal: str | None = None  # e.g. its port is taken: restart raises OperationError
    live: str | None = None  # the release the running replica serves

    def restart(self, release: str | None = None) -> None:
        if self.start_refusal is not None:
            self.running = False
            raise OperationError(self.start_refusal)
        self.running = True
        self.live = release or read_current(self.share)
        self.started_on.append(self.live)

    def roll_out(self, release: str, timeout: float, progress: Progress) -> ReadyState:
        """Beside the running one: a release that is not ready never takes over."""
        if not self.running:
            self.restart(release)
            return self.wait_ready(timeout, progress)
        if not self.is_ready(release):
            return ReadyState(False, f"release {release} crashed on start")
        self.live = release
        self.started_on.append(release)
        return ReadyState(True)

    def stop(self) -> bool:
        was, self.running = self.running, False
        return was

    def is_running(self) -> bool:
        return self.running

    def identity(self) -> ReplicaIdentity | None:
        if not self.running:
            return None
        return ReplicaIdentity("http://127.0.0.1:1", self.started_on[-1], str(len(self.started_on)))

    def settings_changed(self) -> list[str]:
        return []

    def wait_ready(self, timeout: float, progress: Progress) -> ReadyState:
        release = self.live
        if self.running and self.is_ready(release):
            return ReadyState(True)
        return ReadyState(False, f"release {release} crashed on start")

    def logs(self, lines: int = 40) -> str:
        return ""


class FakeTarget:
    name = "fake"

    def __init__(self, root: Path, platform: ImagePlatform | None = None) -> None:
        self._share = LocalShare(root)
        self._replica = FakeReplica(self._share)
        self._platform = platform

    def image_platform(self) -> ImagePlatform | None:
        return self._platform

    @property
    def share(self) -> LocalShare:
        return self._share

    @property
    def replica(self) -> FakeReplica:
        return self._replica

    def endpoint(self) -> str:
        return "http://127.0.0.1:1"

    def ui_url(self) -> str:
        return "http://127.0.0.1:1/ui"

    def keys(self) -> ApiKeys:
        return ApiKeys("p", "s")

    def provision(self, settings: ProvisionSettings, progress: Progress) -> ProvisionResult:
        raise AssertionError("not used")

    def check_deployable(self) -> None:
        return None

    def down(self, purge: bool, progress: Progress) -> DownResult:
        raise AssertionError("not used")

    def describe(self) -> TargetDescription:
        running = self._replica.running
        return TargetDescription(app_state="running" if running else "stopped", replica_count=1)

    def log_lines(self, query: LogQuery) -> Iterator[str]:
        yield from self._replica.logs().splitlines()

    def rotate_key(self, which: str, ready_timeout: float, progress: Progress) -> RotateResult:
        raise AssertionError("not used")

    def plan_down(self, purge: bool) -> DownPlan:
        raise AssertionError("not used")

    def scale(self, running: bool, ready_timeout: float, progress: Progress) -> ScaleResult:
        raise AssertionError("not used")

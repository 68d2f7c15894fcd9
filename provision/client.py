"""The endpoint's state (`status`) and the replica's logs (`logs`); `invoke` is in invoke.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from provision.deploy_record import last_deploy
from provision.readiness import probe
from provision.release_history import read_history
from provision.targets import DayTwoOperations, LogQuery, Target, TargetDescription


@dataclass(frozen=True)
class StatusResult:
    target: str
    endpoint: str
    ui_url: str
    running: bool
    ready: bool
    reason: str
    release: str | None
    previous_release: str | None
    instance_id: str | None = None
    # Parameters changed since the replica started: the next deploy (or `up`) applies them.
    restart_pending: list[str] | None = None
    # What the platform reports: app state, replicas, pid/port locally, revision and workload
    # profile on Azure.
    app: TargetDescription | None = None
    # The last `deploy`/`rollback` from this project: action, release, ready, at (UTC).
    last_deploy: dict[str, Any] | None = None


def status(target: Target, project_dir: Path) -> StatusResult:
    identity = target.replica.identity()
    ready, reason = False, "the replica is not running"
    if identity is not None:
        with httpx.Client(timeout=5.0) as client:
            ready, reason = probe(client, identity)
    history = read_history(target.share)
    return StatusResult(
        target=target.name,
        # Where the running replica answers (a changed port applies at the next deploy).
        endpoint=identity.endpoint if identity else target.endpoint(),
        ui_url=f"{identity.endpoint}/ui" if identity else target.ui_url(),
        running=identity is not None,
        ready=ready,
        reason=reason,
        release=history.current,
        previous_release=history.previous(),
        instance_id=identity.instance_id if identity else None,
        restart_pending=target.replica.settings_changed(),
        app=target.describe() if isinstance(target, DayTwoOperations) else None,
        last_deploy=last_deploy(project_dir, target.name),
    )


def log_lines(target: DayTwoOperations, query: LogQuery) -> Iterator[str]:
    return target.log_lines(query)

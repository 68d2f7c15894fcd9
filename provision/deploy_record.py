"""The last deploy (or rollback), recorded in the target's state dir for `aca-infer status`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provision.fsutil import read_json, write_json_atomic
from provision.target_state import state_dir

RECORD_FILE = "last-deploy.json"


def record_deploy(project_dir: Path, target: str, action: str, release: str, ready: bool) -> None:
    write_json_atomic(
        state_dir(project_dir, target) / RECORD_FILE,
        {
            "action": action,
            "release": release,
            "ready": ready,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        },
    )


def last_deploy(project_dir: Path, target: str) -> dict[str, Any] | None:
    try:
        value = read_json(state_dir(project_dir, target) / RECORD_FILE)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None

"""The local target's own events (`aca-infer logs --system`): replica starts, stops and
take-overs, one timestamped line each in `.aca-infer/local/events.log`, as the platform's system
log stream reports them on Azure."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

EVENTS_FILE = "events.log"


def record_event(state_dir: Path, message: str) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    # One short append per line: concurrent writers never interleave within a line.
    with (state_dir / EVENTS_FILE).open("a", encoding="utf-8") as events:
        events.write(f"{stamp} {message}\n")

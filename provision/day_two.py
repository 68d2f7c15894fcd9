"""The day-two operations of a target (`DayTwoOperations`), or exit 3 for a target that does not
offer them yet."""

from __future__ import annotations

from provision.errors import PrerequisiteError
from provision.targets import DayTwoOperations, Target


def operations(target: Target, command: str) -> DayTwoOperations:
    if isinstance(target, DayTwoOperations):
        return target
    raise PrerequisiteError(
        f"`aca-infer {command}` is not available for the {target.name} target yet; "
        "it works with --target local"
    )

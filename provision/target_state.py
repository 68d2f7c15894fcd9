"""Values given once for a target, kept until changed (as azd keeps an environment's `.env`).

`aca-infer provision --set name=value` stores the value in `.aca-infer/<target>/parameters.json`;
later runs of `provision` or `up` for that target use it again without the flag, until another
`--set name=value` changes it or `--set name=null` forgets it (the template default applies
again). `.aca-infer/` is the project's local state, ignored by git: nothing here is written into
the project's committed files. Secure parameters are never stored.

The store is target-agnostic: each target keeps its own file, read and written through
`TargetState(project_dir, target)`. Callers write only after every value has validated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.errors import InputError
from provision.fsutil import write_json_atomic

STATE_ROOT = Path(".aca-infer")
VALUES_FILE = "parameters.json"


def state_dir(project_dir: Path, target: str) -> Path:
    """Where a target keeps its local state: `<project>/.aca-infer/<target>/`."""
    return project_dir / STATE_ROOT / target


@dataclass(frozen=True)
class TargetState:
    project_dir: Path
    target: str

    @property
    def path(self) -> Path:
        return state_dir(self.project_dir, self.target) / VALUES_FILE

    def load(self) -> dict[str, Any]:
        """The stored values; empty when none were given yet."""
        if not self.path.is_file():
            return {}
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(
                f"{self.path}: not a JSON object of parameter values ({error}); fix it, or "
                "delete it to forget the stored values"
            ) from None
        if not isinstance(stored, dict):
            raise InputError(
                f"{self.path}: expected a JSON object of parameter values; fix it, or delete it "
                "to forget the stored values"
            )
        return stored

    def save(self, values: Mapping[str, Any]) -> None:
        write_json_atomic(self.path, dict(values))


def updated(stored: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """The stored values after `given`: each given value replaces the stored one; a None
    (`--set name=null`) forgets it."""
    values = dict(stored)
    for name, value in given.items():
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value
    return values

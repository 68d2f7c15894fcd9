"""The project a command works on: where its root is, and which target it uses by default.

The root is found as git finds `.git`: the nearest folder, from the working directory up, that
holds `infra/` or `.aca-infer/`; `--project-dir` names it directly. The target is `--target`,
else `ACA_INFER_TARGET`, else the one this project last provisioned (so `make demo` followed by
`aca-infer status` shows the local replica), else `azure` (where an AI Toolkit project goes).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from provision.errors import InputError, PrerequisiteError
from provision.fsutil import write_bytes_atomic
from provision.targets import TARGET_NAMES

ROOT_MARKERS = ("infra", ".aca-infer")
TARGET_ENV = "ACA_INFER_TARGET"
DEFAULT_TARGET = "azure"
LAST_TARGET_FILE = Path(".aca-infer/last-target")


def find_root(start: Path) -> Path:
    """The nearest folder from `start` up that holds a root marker; `start` when none does."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if any((folder / marker).is_dir() for marker in ROOT_MARKERS):
            return folder
    return start


def project_root(explicit: Path | None, cwd: Path) -> Path:
    if explicit is None:
        return find_root(cwd)
    folder = (cwd / explicit).resolve()
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise InputError(
            f"--project-dir {explicit}: {folder} {what}; pass the project's folder "
            "(the one holding infra/), or leave the option out to use the working directory's"
        )
    return folder


def last_target(project_dir: Path) -> str | None:
    try:
        name = (project_dir / LAST_TARGET_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return name if name in TARGET_NAMES else None


def resolve_target(explicit: str | None, project_dir: Path, environ: Mapping[str, str]) -> str:
    if explicit is not None:
        return explicit
    from_env = environ.get(TARGET_ENV, "").strip()
    if from_env:
        if from_env not in TARGET_NAMES:
            raise InputError(
                f"{TARGET_ENV}={from_env!r}: unknown target; use one of {', '.join(TARGET_NAMES)}"
            )
        return from_env
    name = last_target(project_dir) or DEFAULT_TARGET
    if name not in TARGET_NAMES:
        raise PrerequisiteError(
            f"the {name} target is not available in this version of aca-infer; "
            f"pass --target {TARGET_NAMES[0]} or set {TARGET_ENV}={TARGET_NAMES[0]}"
        )
    return name


def remember_target(project_dir: Path, name: str) -> None:
    write_bytes_atomic(project_dir / LAST_TARGET_FILE, f"{name}\n".encode())


def forget_target(project_dir: Path, name: str) -> None:
    """After `down`: the default falls back to the environment or `azure` again."""
    if last_target(project_dir) == name:
        (project_dir / LAST_TARGET_FILE).unlink(missing_ok=True)

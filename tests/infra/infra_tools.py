"""Finding and running the external tools the infra tests use: checkov and the Bicep CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.infra.bicep_checks import REPO_ROOT

# checkov pins dependencies that clash with the project's (packaging, networkx,
# python-dateutil), so it lives in its own virtual environment.
CHECKOV_VENV = REPO_ROOT / ".venv-checkov"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def find_checkov() -> str | None:
    explicit = os.environ.get("CHECKOV")
    if explicit:
        return shutil.which(explicit)
    bundled = CHECKOV_VENV / "bin" / "checkov"
    if bundled.exists():
        return str(bundled)
    return shutil.which("checkov")


def find_bicep() -> str | None:
    found = shutil.which("bicep")
    if found:
        return found
    installed_by_az = Path.home() / ".azure" / "bin" / "bicep"
    return str(installed_by_az) if installed_by_az.exists() else None


@dataclass(frozen=True)
class CheckovReport:
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    parsing_errors: list[str] = field(default_factory=list)
    resource_count: int = 0


def run_checkov(checkov: str, directory: Path) -> CheckovReport:
    """Scan the Bicep files under a directory, offline (no download of guidelines)."""
    completed = subprocess.run(
        [
            checkov,
            *("--directory", str(directory), "--framework", "bicep", "--output", "json"),
            *("--compact", "--skip-download"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if completed.returncode not in (0, 1):
        raise RuntimeError(f"checkov exited {completed.returncode}: {completed.stderr[-2000:]}")
    document = json.loads(completed.stdout)
    reports = document if isinstance(document, list) else [document]
    failed: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    errors: list[str] = []
    resources = 0
    for report in reports:
        results = report.get("results", {})
        failed += results.get("failed_checks", [])
        skipped += results.get("skipped_checks", [])
        errors += results.get("parsing_errors", []) or []
        resources += report.get("summary", {}).get("resource_count", 0)
    return CheckovReport(failed, skipped, errors, resources)


def run_bicep(bicep: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [bicep, *arguments], capture_output=True, text=True, timeout=300, check=False
    )

"""`bicep build` and `bicep lint` of every file, when a Bicep CLI is installed (the GitHub
Actions workflow installs one; no package registry reachable here has it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.infra import bicep_checks as checks
from tests.infra import infra_tools

BICEP = infra_tools.find_bicep()
pytestmark = pytest.mark.skipif(BICEP is None, reason="no bicep CLI on PATH or in ~/.azure/bin")
FILES = checks.bicep_files()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_bicep_build_succeeds(path: Path) -> None:
    assert BICEP is not None
    completed = infra_tools.run_bicep(BICEP, "build", str(path), "--stdout")

    assert completed.returncode == 0, completed.stderr
    assert "Error" not in completed.stderr, completed.stderr


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_bicep_lint_reports_no_error(path: Path) -> None:
    assert BICEP is not None
    completed = infra_tools.run_bicep(BICEP, "lint", str(path))

    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert ": Error " not in completed.stdout + completed.stderr


def test_compiled_template_outputs_the_config_keys() -> None:
    assert BICEP is not None
    completed = infra_tools.run_bicep(BICEP, "build", str(checks.MAIN_TEMPLATE), "--stdout")
    compiled = json.loads(completed.stdout)

    assert set(compiled["outputs"]) >= checks.CONFIG_KEYS
    assert set(compiled["outputs"]) <= checks.CONFIG_KEYS | checks.EXTRA_OUTPUT_KEYS

"""checkov finds no failed check in the templates; every suppression says why; a defect fails.

checkov lives in its own virtual environment (.venv-checkov); without it these tests skip on a
developer machine and fail under CI (CI=true), where a skipped security scan would go unnoticed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.infra import infra_tools
from tests.infra.bicep_checks import PROVISION_DIR


@pytest.fixture(scope="module")
def checkov() -> str:
    found = infra_tools.find_checkov()
    if found is None:
        message = (
            "checkov not installed: "
            "python3 -m venv .venv-checkov && .venv-checkov/bin/pip install checkov"
        )
        if infra_tools.in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def report(checkov: str) -> infra_tools.CheckovReport:
    return infra_tools.run_checkov(checkov, PROVISION_DIR)


def test_checkov_parses_every_template(report: infra_tools.CheckovReport) -> None:
    # A file checkov cannot parse is silently left out of the scan.
    assert report.parsing_errors == []
    assert report.resource_count > 0


def test_checkov_finds_no_failed_check(report: infra_tools.CheckovReport) -> None:
    failed = [f"{c['check_id']} {c['file_path']} {c['resource']}" for c in report.failed]

    assert failed == []


def test_every_suppression_gives_a_reason(report: infra_tools.CheckovReport) -> None:
    reasons = {c["check_id"]: c["check_result"].get("suppress_comment", "") for c in report.skipped}

    assert reasons, "expected the documented suppressions on the storage account"
    assert {check: reason for check, reason in reasons.items() if len(reason) < 20} == {}


def test_checkov_fails_a_template_with_weak_tls(checkov: str, tmp_path: Path) -> None:
    copy = tmp_path / "provision"
    shutil.copytree(PROVISION_DIR, copy)
    storage = copy / "modules" / "storage.bicep"
    storage.write_text(storage.read_text().replace("'TLS1_2'", "'TLS1_0'"))

    weakened = infra_tools.run_checkov(checkov, copy)

    assert "CKV_AZURE_44" in {c["check_id"] for c in weakened.failed}

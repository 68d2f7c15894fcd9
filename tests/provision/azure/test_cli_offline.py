"""`provision --target azure` before any network call: --dry-run and every bad input."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from provision.cli import cli
from tests.provision.azure.projects import (
    BAD_FILES,
    SUFFIX,
    ai_toolkit_project,
    copy_templates,
    parameters_document,
    write_parameters,
)

SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
PROVISION = ("provision", "--target", "azure", "-g", "rg", "--subscription", SUBSCRIPTION)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails the test: these commands must stay on this machine."""

    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"network call to {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def run(project: Path, *arguments: str, env: dict[str, str] | None = None) -> Any:
    environment = {"AZURE_CONFIG_DIR": str(project / "no-azure-cli"), "AZURE_SUBSCRIPTION_ID": ""}
    return CliRunner().invoke(
        cli,
        ["--project-dir", str(project), *arguments],
        env=environment | (env or {}),
        catch_exceptions=False,
    )


def test_dry_run_of_an_ai_toolkit_project(tmp_path: Path, no_network: None) -> None:
    ai_toolkit_project(tmp_path, SUBSCRIPTION, "rg-finetune")
    result = run(tmp_path, "--output", "json", "provision", "--target", "azure", "--dry-run")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)["request"]
    assert plan["scope"]["subscription_id"] == SUBSCRIPTION
    assert plan["scope"]["resource_group"] == "rg-finetune"
    assert plan["scope"]["location"] == "westus3"
    parameters = plan["parameters"]
    assert parameters["storageAccountName"] == {
        "value": f"aistorage{SUFFIX}",
        "source": "infra/finetuning.config.json",
    }
    assert parameters["fileShareName"]["value"] == f"aifileshare{SUFFIX}"
    assert parameters["acaEnvironmentName"]["value"] == f"aienv{SUFFIX}"
    assert parameters["acaAppName"]["value"] == f"aiacaapp{SUFFIX}"
    assert parameters["defaultCommands"]["value"] == []
    assert parameters["apiKeyPrimary"]["value"] == "<redacted>"
    assert any("AI Toolkit" in note for note in plan["notes"])


def test_dry_run_never_shows_a_key_given_in_the_environment(
    tmp_path: Path, no_network: None
) -> None:
    ai_toolkit_project(tmp_path, SUBSCRIPTION, "rg-finetune")
    key = "a-key-that-must-stay-secret-0123"
    result = run(
        tmp_path,
        "provision",
        "--target",
        "azure",
        "--dry-run",
        env={"ACA_INFER_API_KEY_PRIMARY": key},
    )
    assert result.exit_code == 0, result.output
    assert key not in result.output
    assert "ACA_INFER_API_KEY_PRIMARY" in result.output


@pytest.mark.parametrize(("case", "document", "expected"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_each_bad_parameter_file_is_one_line_and_exit_2(
    tmp_path: Path, no_network: None, case: str, document: Any, expected: str
) -> None:
    copy_templates(tmp_path)
    write_parameters(tmp_path, document)
    result = run(
        tmp_path, "provision", "--target", "azure", "-g", "rg", "--subscription", SUBSCRIPTION
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_missing_resource_group_without_a_terminal_names_the_flag(
    tmp_path: Path, no_network: None
) -> None:
    copy_templates(tmp_path)
    result = run(tmp_path, "provision", "--target", "azure", "--subscription", SUBSCRIPTION)
    assert result.exit_code == 2
    assert "give --resource-group (or set AZURE_RESOURCE_GROUP)" in result.stderr


def test_azure_options_are_refused_for_the_local_target(tmp_path: Path) -> None:
    result = run(tmp_path, "provision", "--target", "local", "--dry-run")
    assert result.exit_code == 2
    assert "--dry-run is an option of --target azure" in result.stderr


def test_keys_in_the_parameters_file_are_refused(tmp_path: Path, no_network: None) -> None:
    copy_templates(tmp_path)
    write_parameters(tmp_path, parameters_document(apiKeyPrimary="x" * 20))
    result = run(
        tmp_path, "provision", "--target", "azure", "-g", "rg", "--subscription", SUBSCRIPTION
    )
    assert result.exit_code == 2
    assert "API keys never go in files" in result.stderr
    assert "x" * 20 not in result.output

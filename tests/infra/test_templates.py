"""The real templates and parameters files pass every offline check."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra import bicep_checks as checks

FIXTURES = Path(__file__).parent / "fixtures"
AI_TOOLKIT_NAMES = {
    "defaultCommands",
    "maximumInstanceCount",
    "location",
    "storageAccountName",
    "fileShareName",
    "acaEnvironmentName",
    "acaEnvironmentStorageName",
    "acaAppName",
    "acaLogAnalyticsName",
}
# Names the Python side renders into the parameters file or passes with --set.
PROVISIONER_NAMES = {
    "modelPath",
    "adapterPath",
    "apiKeyPrimary",
    "apiKeySecondary",
    "gpuProfileType",
    "minimumInstanceCount",
    "maximumInstanceCount",
    "concurrentRequests",
    "containerImage",
}


@pytest.fixture(scope="module")
def main() -> checks.Template:
    return checks.parse_file(checks.MAIN_TEMPLATE)


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", checks.bicep_files(), ids=lambda p: p.name)
def test_template_parses_and_passes_every_check(path: Path) -> None:
    template = checks.parse_file(path)

    assert checks.all_template_problems(template) == []


def test_main_template_composes_modules_only(main: checks.Template) -> None:
    created = [symbol for symbol, r in main.resources.items() if not r.get("existing")]

    assert created == []
    assert set(main.modules) == {"storage", "monitoring", "appEnvironment", "app"}


def test_outputs_are_the_inference_config_keys(main: checks.Template) -> None:
    assert checks.check_outputs_are_config_keys(main) == []
    assert set(main.outputs) >= checks.CONFIG_KEYS


def test_parameters_file_fits_the_template(main: checks.Template) -> None:
    assert checks.check_parameters_file(main, load_json(checks.PARAMETERS_FILE)) == []


def test_ai_toolkit_parameters_file_is_accepted_as_is(main: checks.Template) -> None:
    document = load_json(FIXTURES / "ai_toolkit_inference.parameters.json")

    assert set(document["parameters"]) == AI_TOOLKIT_NAMES
    assert checks.check_parameters_file(main, document) == []


def test_template_declares_every_name_the_tools_use(main: checks.Template) -> None:
    assert (AI_TOOLKIT_NAMES | PROVISIONER_NAMES) - set(main.params) == set()


def test_api_keys_are_secure_and_have_no_default(main: checks.Template) -> None:
    for name in ("apiKeyPrimary", "apiKeySecondary"):
        assert checks.decorator(main.params[name], "secure") is True
        assert not checks.has_default(main.params[name])


def test_share_layout_defaults_follow_the_ai_toolkit(main: checks.Template) -> None:
    defaults = {name: main.params[name]["default"] for name in ("modelPath", "adapterPath")}

    assert defaults == {
        "modelPath": "model-cache/microsoft/Phi-3-mini-4k-instruct",
        "adapterPath": "models/qlora/qlora/gpu_model/adapter",
    }


def test_profile_choices_and_scale_to_zero_default(main: checks.Template) -> None:
    profile = main.params["gpuProfileType"]

    assert profile["default"] == "Consumption-GPU-NC8as-T4"
    assert set(checks.decorator(profile, "allowed")) == {
        "Consumption-GPU-NC8as-T4",
        "Consumption-GPU-NC24-A100",
        "NC24-A100",
        "NC48-A100",
        "NC96-A100",
        "Consumption",
    }
    assert main.params["minimumInstanceCount"]["default"] == 0


def test_no_preview_api_version_in_any_file() -> None:
    for path in checks.bicep_files():
        assert not re.search(r"@\d{4}-\d{2}-\d{2}-preview", path.read_text()), path


def test_bicepconfig_makes_the_rules_that_matter_errors() -> None:
    assert checks.check_bicepconfig(load_json(checks.INFRA_DIR / "bicepconfig.json")) == []


def test_readme_documents_every_parameter(main: checks.Template) -> None:
    readme = (checks.INFRA_DIR / "README.md").read_text(encoding="utf-8")

    assert checks.check_params_documented(main, readme) == []


@pytest.mark.parametrize(
    ("commands", "expected"),
    [
        ([], ["python", "/mount/app/bootstrap.py"]),
        (
            ["cd /mount", "pip install -r ./setup/requirements.txt", "python3 ./inference/app.py"],
            [
                "/bin/bash",
                "-c",
                "cd /mount; pip install -r ./setup/requirements.txt; python3 ./inference/app.py",
            ],
        ),
    ],
    ids=["default-runs-bootstrap", "ai-toolkit-commands"],
)
def test_container_command(main: checks.Template, commands: list[str], expected: list[str]) -> None:
    params = {**checks.default_params(main), "defaultCommands": commands}

    assert checks.evaluate(main, "containerCommand", params) == expected


def test_cpu_only_profile_runs_the_app_on_consumption(main: checks.Template) -> None:
    for choice, expected in (("Consumption", "Consumption"), ("NC24-A100", "gpu")):
        params = {**checks.default_params(main), "gpuProfileType": choice}

        assert checks.evaluate(main, "appWorkloadProfileName", params) == expected

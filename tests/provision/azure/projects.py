"""Project folders for the azure target's CLI tests: an AI Toolkit project and an empty one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.infra.bicep_checks import REPO_ROOT

AI_TOOLKIT_PARAMETERS = REPO_ROOT / "tests/infra/fixtures/ai_toolkit_inference.parameters.json"
SUFFIX = "ab12c"


def copy_templates(project: Path) -> Path:
    target = project / "infra/provision"
    shutil.copytree(REPO_ROOT / "infra/provision", target, dirs_exist_ok=True)
    return target / "inference.parameters.json"


def ai_toolkit_project(project: Path, subscription_id: str, resource_group: str) -> Path:
    """finetuning.config.json as the AI Toolkit writes it, and its inference parameters file."""
    parameters = copy_templates(project)
    shutil.copy(AI_TOOLKIT_PARAMETERS, parameters)
    (project / "infra/finetuning.config.json").write_text(
        json.dumps(
            {
                "SUBSCRIPTION_ID": subscription_id,
                "RESOURCE_GROUP_NAME": resource_group,
                "STORAGE_ACCOUNT_NAME": f"aistorage{SUFFIX}",
                "FILE_SHARE_NAME": f"aifileshare{SUFFIX}",
                "ACA_JOB_NAME": f"aiacajob{SUFFIX}",
                "COMMANDS": ["cd /mount", "python3 ./finetuning/invoke_olive.py"],
            }
        )
    )
    return project


def write_parameters(project: Path, document: Any) -> None:
    path = project / "infra/provision/inference.parameters.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))


def parameters_document(**values: Any) -> dict[str, Any]:
    return {"parameters": {name: {"value": value} for name, value in values.items()}}


# Each bad parameters file: (case, file content, what the one-line error contains).
BAD_FILES: list[tuple[str, Any, str]] = [
    ("malformed JSON", '{"parameters": {\n  "acaAppName": {"value": }\n}}', "not valid JSON"),
    (
        "template syntax error",
        '{"parameters": {"acaAppName": {"value": "{{ env.X "}}}',
        "template syntax error",
    ),
    (
        "undefined env",
        parameters_document(acaAppName="{{ env.NOT_SET_ANYWHERE }}"),
        "NOT_SET_ANYWHERE",
    ),
    (
        "unknown name",
        parameters_document(gpuProfile="NC24-A100"),
        "gpuProfile (from infra/provision/inference.parameters.json): unknown parameter",
    ),
    ("invalid name", parameters_document(acaAppName="My_App"), "acaAppName 'My_App'"),
    (
        "value outside @allowed",
        parameters_document(gpuProfileType="H100"),
        "gpuProfileType 'H100'",
    ),
    (
        "integer out of range",
        parameters_document(maximumInstanceCount=99),
        "maximumInstanceCount 99",
    ),
]

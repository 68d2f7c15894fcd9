from __future__ import annotations

import json
from pathlib import Path

import pytest

from provision.errors import InputError
from provision.parameters import env_name, parse_set_flags, resolve_parameters

DEFAULTS = {"modelPath": "default/model", "maximumInstanceCount": 1, "location": None}


def write_parameters(project: Path, text: str) -> None:
    path = project / "infra/provision/inference.parameters.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def parameters_doc(**values: object) -> str:
    return json.dumps({"parameters": {k: {"value": v} for k, v in values.items()}})


def test_env_names_are_upper_snake_with_prefix() -> None:
    assert env_name("maximumInstanceCount") == "ACA_INFER_MAXIMUM_INSTANCE_COUNT"


def test_set_flags_parse_json_values_and_keep_strings() -> None:
    assert parse_set_flags(["a=3", "b=x/y", "c=null", "d=a=b"]) == {
        "a": 3,
        "b": "x/y",
        "c": None,
        "d": "a=b",
    }


def test_set_flag_without_equals_names_the_fix() -> None:
    with pytest.raises(InputError, match="expected name=value"):
        parse_set_flags(["modelPath"])


def test_precedence_flags_then_env_then_file_then_finetuning_then_defaults(tmp_path: Path) -> None:
    write_parameters(tmp_path, parameters_doc(modelPath="file/model", location="westus3"))
    (tmp_path / "infra/finetuning.config.json").write_text(
        json.dumps({"LOCATION": "eastus", "STORAGE_ACCOUNT_NAME": "ftstore"})
    )
    env = {"ACA_INFER_MAXIMUM_INSTANCE_COUNT": "4", "ACA_INFER_MODEL_PATH": "env/model"}
    resolved = resolve_parameters(tmp_path, ["modelPath=flag/model"], env, DEFAULTS)
    assert resolved == {
        "modelPath": "flag/model",
        "maximumInstanceCount": 4,
        "location": "westus3",
        "storageAccountName": "ftstore",
        "useExistingStorageAccount": True,
    }


def test_nulls_in_the_file_keep_the_default(tmp_path: Path) -> None:
    write_parameters(tmp_path, parameters_doc(modelPath=None, maximumInstanceCount=None))
    assert resolve_parameters(tmp_path, [], {}, DEFAULTS)["modelPath"] == "default/model"


def test_file_renders_env_with_jinja(tmp_path: Path) -> None:
    write_parameters(tmp_path, parameters_doc(modelPath="{{ env.MODEL_DIR }}/phi"))
    resolved = resolve_parameters(tmp_path, [], {"MODEL_DIR": "model-cache"}, DEFAULTS)
    assert resolved["modelPath"] == "model-cache/phi"


def test_undefined_env_in_the_file_is_named(tmp_path: Path) -> None:
    write_parameters(tmp_path, parameters_doc(modelPath="{{ env.MISSING_VAR }}"))
    with pytest.raises(InputError, match="MISSING_VAR"):
        resolve_parameters(tmp_path, [], {}, DEFAULTS)


def test_broken_json_names_file_and_line(tmp_path: Path) -> None:
    write_parameters(tmp_path, '{"parameters": {\n  "modelPath": {"value": }\n}}')
    with pytest.raises(InputError, match=r"inference.parameters.json:2: not valid JSON"):
        resolve_parameters(tmp_path, [], {}, DEFAULTS)


def test_unknown_parameter_in_set_is_a_typo(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--set modelPth: unknown parameter"):
        resolve_parameters(tmp_path, ["modelPth=x"], {}, DEFAULTS)


def test_finetuning_environment_is_reused_not_redefined(tmp_path: Path) -> None:
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra/finetuning.config.json").write_text(
        json.dumps({"ACA_ENVIRONMENT_NAME": "aienv123", "SUBSCRIPTION_ID": "x"})
    )
    resolved = resolve_parameters(tmp_path, ["workloadProfileName=gpu2"], {}, DEFAULTS)
    assert resolved["acaEnvironmentName"] == "aienv123"
    assert resolved["useExistingEnvironment"] is True
    assert resolved["workloadProfileName"] == "gpu2"  # a flag still wins
    assert resolved["gpuProfileType"] == "NC24-A100"

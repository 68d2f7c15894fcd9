from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from provision.errors import InputError
from provision.parameters import (
    ResolvedParameters,
    env_name,
    parse_set_flags,
    resolve_parameters,
    template_declarations,
)
from provision.template_params import ParamDeclaration

REPO = Path(__file__).resolve().parents[2]
DECLARATIONS = template_declarations(REPO)


def resolve(
    project: Path,
    flags: list[str] | None = None,
    environ: dict[str, str] | None = None,
    stored: dict[str, Any] | None = None,
) -> ResolvedParameters:
    return resolve_parameters(project, flags or [], environ or {}, DECLARATIONS, stored or {})


def write_parameters(project: Path, text: str | bytes) -> None:
    path = project / "infra/provision/inference.parameters.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


def parameters_doc(**values: object) -> str:
    return json.dumps({"parameters": {k: {"value": v} for k, v in values.items()}})


def test_env_names_are_upper_snake_with_prefix() -> None:
    assert env_name("maximumInstanceCount") == "ACA_INFER_MAXIMUM_INSTANCE_COUNT"


def test_set_flags_parse_by_declared_type() -> None:
    assert parse_set_flags(
        ["maximumInstanceCount=3", "modelPath=x/y", "adapterPath=null", "acaAppName=a=b"],
        DECLARATIONS,
    ) == {"maximumInstanceCount": 3, "modelPath": "x/y", "adapterPath": None, "acaAppName": "a=b"}


def test_set_flag_without_equals_names_the_fix() -> None:
    with pytest.raises(InputError, match="expected name=value"):
        parse_set_flags(["modelPath"], DECLARATIONS)


def test_defaults_come_from_the_template(tmp_path: Path) -> None:
    values = resolve(tmp_path).values
    assert values["modelPath"] == DECLARATIONS["modelPath"].default
    assert values["maximumInstanceCount"] == 1
    assert "location" not in values  # an expression default: ARM computes it


def test_precedence_flags_env_kept_file_finetuning_defaults(tmp_path: Path) -> None:
    write_parameters(
        tmp_path, parameters_doc(modelPath="file/model", location="westus3", fileShareName="fshare")
    )
    (tmp_path / "infra/finetuning.config.json").write_text(
        json.dumps({"LOCATION": "eastus", "STORAGE_ACCOUNT_NAME": "ftstore"})
    )
    env = {"ACA_INFER_MAXIMUM_INSTANCE_COUNT": "4", "ACA_INFER_MODEL_PATH": "env/model"}
    stored = {"modelPath": "kept/model", "fileShareName": "kept-share", "concurrentRequests": 8}
    resolved = resolve(tmp_path, ["modelPath=flag/model"], env, stored)
    assert resolved.values["modelPath"] == "flag/model"
    assert resolved.values["maximumInstanceCount"] == 4
    assert resolved.values["fileShareName"] == "kept-share"  # kept beats the file
    assert resolved.values["concurrentRequests"] == 8
    assert resolved.values["location"] == "westus3"
    assert resolved.values["storageAccountName"] == "ftstore"
    assert resolved.values["useExistingStorageAccount"] is True
    assert resolved.origins["maximumInstanceCount"] == "ACA_INFER_MAXIMUM_INSTANCE_COUNT"
    assert resolved.origins["modelPath"] == "--set"


def test_values_given_once_are_kept_until_changed_and_null_forgets(tmp_path: Path) -> None:
    first = resolve(tmp_path, ["modelPath=my/model"])
    assert first.stored == {"modelPath": "my/model"}
    again = resolve(tmp_path, [], stored=first.stored)
    assert again.values["modelPath"] == "my/model" and again.stored == first.stored
    forgotten = resolve(tmp_path, ["modelPath=null"], stored=first.stored)
    assert forgotten.stored == {}
    assert forgotten.values["modelPath"] == DECLARATIONS["modelPath"].default


def test_invalid_values_are_refused_naming_value_rule_and_source(tmp_path: Path) -> None:
    write_parameters(tmp_path, parameters_doc(concurrentRequests="lots"))
    with pytest.raises(InputError) as raised:
        resolve(tmp_path, ["maximumInstanceCount=-3"])
    message = str(raised.value)
    assert "maximumInstanceCount -3 (from --set): must be at least 1 (@minValue(1))" in message
    assert "concurrentRequests 'lots' (from infra/provision/inference.parameters.json)" in message


def test_secure_values_are_never_kept(tmp_path: Path) -> None:
    resolved = resolve(tmp_path, ["apiKeyPrimary=" + "k" * 20, "modelPath=m"])
    assert resolved.stored == {"modelPath": "m"}


def test_nulls_in_the_file_keep_the_default(tmp_path: Path) -> None:
    write_parameters(tmp_path, parameters_doc(modelPath=None, maximumInstanceCount=None))
    assert resolve(tmp_path).values["modelPath"] == DECLARATIONS["modelPath"].default


def test_file_renders_env_with_jinja(tmp_path: Path) -> None:
    write_parameters(tmp_path, parameters_doc(modelPath="{{ env.MODEL_DIR }}/phi"))
    assert resolve(tmp_path, [], {"MODEL_DIR": "model-cache"}).values["modelPath"] == (
        "model-cache/phi"
    )


def test_undefined_env_in_the_file_is_named(tmp_path: Path) -> None:
    write_parameters(tmp_path, parameters_doc(modelPath="{{ env.MISSING_VAR }}"))
    with pytest.raises(InputError, match="MISSING_VAR"):
        resolve(tmp_path)


def test_a_failing_template_expression_is_bad_input(tmp_path: Path) -> None:
    write_parameters(tmp_path, parameters_doc(maximumInstanceCount="{{ 1/0 }}"))
    with pytest.raises(InputError, match="a template expression failed: ZeroDivisionError"):
        resolve(tmp_path)


def test_a_file_that_is_not_utf8_is_bad_input(tmp_path: Path) -> None:
    write_parameters(tmp_path, b'{"parameters": {"modelPath": {"value": "caf\xe9"}}}')
    with pytest.raises(InputError, match=r"not UTF-8 text \(byte 0xe9 at offset 43\)"):
        resolve(tmp_path)


def test_broken_json_names_file_and_line(tmp_path: Path) -> None:
    write_parameters(tmp_path, '{"parameters": {\n  "modelPath": {"value": }\n}}')
    with pytest.raises(InputError, match=r"inference.parameters.json:2: not valid JSON"):
        resolve(tmp_path)


def test_unknown_parameter_in_set_is_a_typo(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="--set modelPth: unknown parameter"):
        resolve(tmp_path, ["modelPth=x"])


def test_unknown_parameter_in_the_file_is_a_typo(tmp_path: Path) -> None:
    write_parameters(tmp_path, parameters_doc(maxInstances=3))
    with pytest.raises(InputError, match="maxInstances \\(from infra/provision/inference"):
        resolve(tmp_path)


def test_finetuning_environment_is_reused_not_redefined(tmp_path: Path) -> None:
    (tmp_path / "infra").mkdir()
    (tmp_path / "infra/finetuning.config.json").write_text(
        json.dumps({"ACA_ENVIRONMENT_NAME": "aienv123", "SUBSCRIPTION_ID": "x"})
    )
    values = resolve(tmp_path, ["workloadProfileName=gpu2"]).values
    assert values["acaEnvironmentName"] == "aienv123"
    assert values["useExistingEnvironment"] is True
    assert values["workloadProfileName"] == "gpu2"  # a flag still wins
    assert values["gpuProfileType"] == "NC24-A100"


def test_a_project_template_wins_over_the_packaged_one(tmp_path: Path) -> None:
    own = tmp_path / "infra/provision/inference.bicep"
    own.parent.mkdir(parents=True)
    own.write_text("@minValue(2)\nparam replicas int = 2\n")
    declarations = template_declarations(tmp_path)
    assert declarations == {
        "replicas": ParamDeclaration("replicas", "int", True, 2, min_value=2),
    }

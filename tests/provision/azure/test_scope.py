"""Where to provision: flags, azd's variables, the fine-tuning config, the Azure CLI default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provision.azure.scope import ScopeFlags, arm_endpoint, logs_endpoint, resolve_scope
from provision.errors import InputError

SUB_A = "aaaaaaaa-0000-0000-0000-000000000000"
SUB_B = "bbbbbbbb-0000-0000-0000-000000000000"
SUB_C = "cccccccc-0000-0000-0000-000000000000"
FINETUNING = {"SUBSCRIPTION_ID": SUB_C, "RESOURCE_GROUP_NAME": "rg-finetune"}


def test_flags_win_over_environment_over_finetuning_config() -> None:
    environ = {"AZURE_SUBSCRIPTION_ID": SUB_B, "AZURE_RESOURCE_GROUP": "rg-env"}
    scope = resolve_scope(ScopeFlags(SUB_A, None, "West US 3"), environ, FINETUNING, None, None)
    assert (scope.subscription_id, scope.resource_group, scope.location) == (
        SUB_A,
        "rg-env",
        "westus3",
    )
    assert scope.sources == {
        "subscription": "--subscription",
        "resource_group": "AZURE_RESOURCE_GROUP",
        "location": "--location",
    }
    scope = resolve_scope(ScopeFlags(), {}, FINETUNING, ("eastus", "parameters file"), None)
    assert (scope.subscription_id, scope.resource_group, scope.location) == (
        SUB_C,
        "rg-finetune",
        "eastus",
    )


def test_the_azure_cli_default_subscription_is_read_from_its_profile(tmp_path: Path) -> None:
    (tmp_path / "azureProfile.json").write_text(
        "\ufeff"
        + json.dumps(
            {"subscriptions": [{"id": SUB_B, "isDefault": False}, {"id": SUB_A, "isDefault": True}]}
        ),
        encoding="utf-8",
    )
    environ = {"AZURE_CONFIG_DIR": str(tmp_path), "AZURE_RESOURCE_GROUP": "rg"}
    scope = resolve_scope(ScopeFlags(), environ, {}, None, None)
    assert scope.subscription_id == SUB_A
    assert scope.location is None


def test_without_a_terminal_a_missing_value_names_the_flag(tmp_path: Path) -> None:
    environ = {"AZURE_CONFIG_DIR": str(tmp_path)}
    with pytest.raises(InputError, match=r"give --subscription \(or set AZURE_SUBSCRIPTION_ID\)"):
        resolve_scope(ScopeFlags(), environ, {}, None, None)
    with pytest.raises(InputError, match="give --resource-group"):
        resolve_scope(ScopeFlags(SUB_A), environ, {}, None, None)


def test_with_a_terminal_a_missing_value_is_asked(tmp_path: Path) -> None:
    asked: list[str] = []

    def ask(question: str) -> str:
        asked.append(question)
        return "rg-asked"

    scope = resolve_scope(ScopeFlags(SUB_A), {"AZURE_CONFIG_DIR": str(tmp_path)}, {}, None, ask)
    assert scope.resource_group == "rg-asked" and asked == ["Resource group"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (ScopeFlags("not-a-guid", "rg"), "--subscription 'not-a-guid': not a subscription id"),
        (ScopeFlags(SUB_A, "rg."), "--resource-group 'rg.': not a valid resource group name"),
        (ScopeFlags(SUB_A, "rg", "west-us"), "--location 'west-us': not a valid location"),
        (ScopeFlags(SUB_A, "rg", arm_endpoint="http://arm"), "--arm-endpoint 'http://arm'"),
    ],
)
def test_bad_scope_values_are_one_line(flags: ScopeFlags, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        resolve_scope(flags, {}, {}, None, None)


def test_arm_endpoint_and_its_token_scope() -> None:
    public = arm_endpoint(None, {})
    assert (public.url, public.credential_scope) == (
        "https://management.azure.com",
        "https://management.azure.com/.default",
    )
    other = arm_endpoint(None, {"ACA_INFER_ARM_ENDPOINT": "https://management.usgovcloudapi.net/"})
    assert other.url == "https://management.usgovcloudapi.net"
    assert other.credential_scope == "https://management.usgovcloudapi.net/.default"
    assert other.source == "ACA_INFER_ARM_ENDPOINT"
    audience = arm_endpoint(
        "https://arm.example",
        {"ACA_INFER_ARM_SCOPE": "https://management.core.example/.default"},
    )
    assert audience.credential_scope == "https://management.core.example/.default"
    assert audience.source == "--arm-endpoint"


def test_logs_endpoint_and_its_token_scope() -> None:
    public = logs_endpoint({})
    assert (public.url, public.credential_scope) == (
        "https://api.loganalytics.io",
        "https://api.loganalytics.io/.default",
    )
    other = logs_endpoint(
        {
            "ACA_INFER_LOGS_ENDPOINT": "https://api.loganalytics.us/",
            "ACA_INFER_LOGS_SCOPE": "https://api.loganalytics.us/.default",
        }
    )
    assert (other.url, other.source) == ("https://api.loganalytics.us", "ACA_INFER_LOGS_ENDPOINT")
    with pytest.raises(InputError, match="ACA_INFER_LOGS_ENDPOINT 'http://logs'"):
        logs_endpoint({"ACA_INFER_LOGS_ENDPOINT": "http://logs"})

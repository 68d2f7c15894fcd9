"""ARM's uniqueString, Azure's naming rules, and the AI Toolkit's names for a resource group."""

from __future__ import annotations

import pytest

from provision.azure.naming import NAME_RULES, ai_toolkit_names, ai_toolkit_suffix, check_names
from provision.azure.uniquestring import unique_string
from provision.errors import InputError


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (("test",), "rbgf3xv4ufgzg"),
        (("hello", "world"), "a7wkljktk6wne"),
        (("abc",), "cgtzqvhu4i23s"),
        (("foo", "bar", "baz"), "xzi4ioaxtmth4"),
        (
            ("/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-rg",),
            "bmg7c6xu4tw46",
        ),
    ],
)
def test_unique_string_matches_arm(values: tuple[str, ...], expected: str) -> None:
    assert unique_string(*values) == expected


def test_suffix_comes_from_the_fine_tuning_storage_account() -> None:
    suffix = ai_toolkit_suffix({"STORAGE_ACCOUNT_NAME": "aistoragex9y8z"}, "sub", "rg")
    assert suffix.value == "x9y8z"
    assert "STORAGE_ACCOUNT_NAME" in suffix.source


def test_without_a_fine_tuning_run_the_suffix_is_the_templates_derivation() -> None:
    subscription = "00000000-0000-0000-0000-000000000000"
    assert ai_toolkit_suffix({}, subscription, "my-rg").value == "bmg7c"
    # a custom storage name carries no suffix: the derivation applies
    assert ai_toolkit_suffix({"STORAGE_ACCOUNT_NAME": "mystore"}, subscription, "my-rg").value == (
        "bmg7c"
    )


def test_ai_toolkit_names() -> None:
    assert ai_toolkit_names("ab12c") == {
        "storageAccountName": "aistorageab12c",
        "fileShareName": "aifileshareab12c",
        "acaEnvironmentName": "aienvab12c",
        "acaEnvironmentStorageName": "aienvstorageab12c",
        "acaAppName": "aiacaappab12c",
        "acaLogAnalyticsName": "ailogab12c",
    }


@pytest.mark.parametrize(
    ("parameter", "value"),
    [
        ("storageAccountName", "My_Store"),
        ("storageAccountName", "ab"),
        ("storageAccountName", "a" * 25),
        ("fileShareName", "share--double"),
        ("fileShareName", "-share"),
        ("acaAppName", "1app"),
        ("acaAppName", "App"),
        ("acaAppName", "app-"),
        ("acaEnvironmentName", "env_x"),
        ("acaLogAnalyticsName", "log"),
        ("workloadProfileName", "a-profile-name-too-long"),
    ],
)
def test_invalid_names_name_parameter_rule_and_value(parameter: str, value: str) -> None:
    with pytest.raises(InputError) as raised:
        check_names({parameter: value})
    message = str(raised.value)
    assert message.startswith(
        f"{parameter} {value!r}: not a valid {NAME_RULES[parameter].resource}"
    )
    assert "\n" not in message


def test_ai_toolkit_names_are_valid() -> None:
    check_names(ai_toolkit_names("ab12c"))

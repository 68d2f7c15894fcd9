"""Preflight decisions: what is reused, what is created, and each failed check's one line."""

from __future__ import annotations

from typing import Any

import pytest

from provision.azure.naming import ai_toolkit_names
from provision.azure.preflight import Environment, Existing, Usage, run_preflight
from provision.azure.request import ProvisionRequest, Resolved
from provision.azure.scope import ArmEndpoint, Scope
from provision.errors import InputError, OperationError, PrerequisiteError
from tests.provision.azure.fake_azure import FakeAzure

SUFFIX = "ab12c"
NAMES = ai_toolkit_names(SUFFIX)
ALL_GPU = {"Consumption", "Consumption-GPU-NC8as-T4", "Consumption-GPU-NC24-A100", "NC24-A100"}
OURS = {"created-by": "aca-infer"}


def make_request(
    location: str | None = "westus3", user: dict[str, Any] | None = None, **derived: Any
) -> ProvisionRequest:
    parameters = {name: Resolved(value, "AI Toolkit name") for name, value in NAMES.items()}
    parameters["gpuProfileType"] = Resolved("Consumption-GPU-NC8as-T4", "default")
    parameters.update({name: Resolved(value, "derived") for name, value in derived.items()})
    parameters.update({name: Resolved(value, "--set") for name, value in (user or {}).items()})
    scope = Scope(
        "00000000-0000-0000-0000-000000000001",
        "rg-infer",
        location,
        ArmEndpoint("https://arm.invalid", "https://arm.invalid/.default", "test"),
        {"location": "--location"} if location else {},
    )
    return ProvisionRequest(scope, parameters, "aca-infer-" + NAMES["acaAppName"])


def empty_subscription() -> FakeAzure:
    return FakeAzure(offered={"westus3": ALL_GPU, "eastus": ALL_GPU})


def fine_tuning_subscription(profile: tuple[str, str] = ("GPU", "NC24-A100")) -> FakeAzure:
    azure = empty_subscription()
    azure.group = Existing("westus3")
    azure.accounts[NAMES["storageAccountName"]] = Existing("westus3")
    azure.shares.add((NAMES["storageAccountName"], NAMES["fileShareName"]))
    azure.workspaces[NAMES["acaLogAnalyticsName"]] = Existing("westus3")
    azure.environments[NAMES["acaEnvironmentName"]] = Environment(
        "westus3", {}, (("Consumption", "Consumption"), profile)
    )
    azure.environment_storages.add(
        (NAMES["acaEnvironmentName"], NAMES["acaEnvironmentStorageName"])
    )
    return azure


def run(azure: FakeAzure, request: ProvisionRequest) -> tuple[Any, list[str]]:
    said: list[str] = []
    return run_preflight(azure, request, said.append), said


def test_empty_subscription_creates_everything_tagged() -> None:
    result, _ = run(empty_subscription(), make_request())
    assert result.overrides["useExistingStorageAccount"] is False
    assert result.overrides["useExistingEnvironment"] is False
    assert result.overrides["useExistingLogAnalytics"] is False
    assert result.overrides["tags"] == {"created-by": "aca-infer"}
    assert not result.group_exists and not result.reused
    assert f"container app {NAMES['acaAppName']}" in result.created


def test_ai_toolkit_resources_are_referenced_and_its_gpu_profile_used_by_name() -> None:
    result, _ = run(fine_tuning_subscription(), make_request(location=None))
    assert result.overrides["useExistingStorageAccount"] is True
    assert result.overrides["useExistingEnvironment"] is True
    assert result.overrides["useExistingLogAnalytics"] is True
    assert result.overrides["workloadProfileName"] == "GPU"
    assert result.overrides["gpuProfileType"] == "NC24-A100"
    assert result.location == "westus3"
    assert f"storage account {NAMES['storageAccountName']}" in result.reused
    assert result.created == (f"container app {NAMES['acaAppName']}",)


def test_asked_profile_type_is_found_by_type_in_the_reused_environment() -> None:
    azure = fine_tuning_subscription(("gpu-t4", "Consumption-GPU-NC8as-T4"))
    request = make_request(user={"gpuProfileType": "Consumption-GPU-NC8as-T4"})
    result, _ = run(azure, request)
    assert result.overrides["workloadProfileName"] == "gpu-t4"


def test_a_dedicated_profile_cannot_be_added_to_an_existing_environment() -> None:
    azure = fine_tuning_subscription(("gpu-t4", "Consumption-GPU-NC8as-T4"))
    with pytest.raises(InputError, match="dedicated GPU profile can only be added when an env"):
        run(azure, make_request(user={"gpuProfileType": "NC48-A100"}))


def test_a_missing_serverless_profile_says_how_to_add_it() -> None:
    with pytest.raises(
        InputError, match=r"az containerapp env workload-profile add .* Consumption-GPU-NC8as-T4"
    ):
        run(
            fine_tuning_subscription(),
            make_request(user={"gpuProfileType": "Consumption-GPU-NC8as-T4"}),
        )


def test_unregistered_providers_are_registered_and_said() -> None:
    azure = empty_subscription()
    azure.registered = {"Microsoft.Storage"}
    _, said = run(azure, make_request())
    assert azure.registrations == ["Microsoft.App", "Microsoft.OperationalInsights"]
    assert any("registering resource provider Microsoft.App" in line for line in said)


def test_profile_not_offered_names_nearby_regions_that_offer_it() -> None:
    azure = FakeAzure(
        offered={"westus3": {"Consumption"}, "eastus": ALL_GPU, "swedencentral": ALL_GPU}
    )
    with pytest.raises(InputError) as raised:
        run(azure, make_request())
    message = str(raised.value)
    assert "'Consumption-GPU-NC8as-T4' is not offered in westus3" in message
    assert "eastus" in message
    assert message.index("eastus") < message.index("swedencentral")  # same geography first


def test_exhausted_quota_names_it_and_a_smaller_profile_that_fits() -> None:
    azure = empty_subscription()
    azure.quota["westus3"] = [
        Usage("ManagedEnvironmentConsumptionNCA100Gpus", 1, 1),
        Usage("ManagedEnvironmentConsumptionT4Gpus", 0, 2),
    ]
    request = make_request(user={"gpuProfileType": "Consumption-GPU-NC24-A100"})
    with pytest.raises(OperationError) as raised:
        run(azure, request)
    message = str(raised.value)
    assert "ManagedEnvironmentConsumptionNCA100Gpus" in message and "0 of 1 left" in message
    assert "gpuProfileType=Consumption-GPU-NC8as-T4" in message


def test_taken_storage_name_stops_before_anything_is_created() -> None:
    azure = empty_subscription()
    azure.taken_names.add(NAMES["storageAccountName"])
    with pytest.raises(
        InputError, match="storageAccountName 'aistorageab12c': The storage account"
    ):
        run(azure, make_request())


def test_existing_account_without_the_share_is_reported() -> None:
    azure = empty_subscription()
    azure.accounts[NAMES["storageAccountName"]] = Existing("westus3")
    with pytest.raises(InputError, match=r"fileShareName 'aifileshareab12c'.*has no such share"):
        run(azure, make_request())


def test_resources_an_earlier_provision_created_are_managed_again_not_referenced() -> None:
    azure = empty_subscription()
    azure.group = Existing("westus3", OURS)
    azure.accounts[NAMES["storageAccountName"]] = Existing("westus3", OURS)
    azure.environments[NAMES["acaEnvironmentName"]] = Environment("westus3", OURS, ())
    azure.workspaces[NAMES["acaLogAnalyticsName"]] = Existing("westus3", OURS)
    azure.apps[NAMES["acaAppName"]] = Existing("westus3", OURS)
    result, _ = run(azure, make_request())
    assert result.overrides["useExistingStorageAccount"] is False
    assert result.overrides["useExistingEnvironment"] is False
    assert result.overrides["useExistingLogAnalytics"] is False
    assert result.app_exists and not result.notes


def test_a_new_resource_group_needs_a_location() -> None:
    with pytest.raises(InputError, match="does not exist: give --location"):
        run(empty_subscription(), make_request(location=None))


def test_no_credential_stops_first() -> None:
    azure = empty_subscription()
    azure.signed_in = False
    with pytest.raises(PrerequisiteError, match="az login"):
        run(azure, make_request())
    assert not azure.registrations


def test_a_reused_dedicated_profile_needs_no_new_quota() -> None:
    azure = fine_tuning_subscription()
    azure.quota["westus3"] = [Usage("ManagedEnvironmentDedicatedA100Gpus", 1, 1)]
    result, _ = run(azure, make_request(location=None))
    assert result.overrides["gpuProfileType"] == "NC24-A100"

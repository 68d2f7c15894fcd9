"""Managed environments in the double: ACA's workload profile rules, available profile types and
usages per location, and the config switches that make a location lack a profile or quota."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.appcontainers import ContainerAppsAPIClient

from tests.azure_double.apps_testing import (
    LOCATION,
    RESOURCE_GROUP,
    environment_body,
    error_of,
    prepare,
)
from tests.azure_double.sdk import mgmt_client
from tests.azure_double.server import AzureDouble


def _create(client: Any, profiles: list[dict[str, Any]], name: str = "env"):
    return client.managed_environments.begin_create_or_update(
        RESOURCE_GROUP, name, environment_body(profiles)
    ).result()


def _refused(client: Any, profiles: list[dict[str, Any]]) -> Any:
    with pytest.raises(HttpResponseError) as refused:
        _create(client, profiles)
    assert refused.value.status_code == 400
    return refused.value.error


CONSUMPTION = {"name": "Consumption", "workloadProfileType": "Consumption"}
T4 = {"name": "gpu", "workloadProfileType": "Consumption-GPU-NC8as-T4"}
A100 = {"name": "gpu", "workloadProfileType": "NC24-A100", "minimumCount": 0, "maximumCount": 1}


def test_consumption_is_always_there(client: Any):
    environment = _create(client, [T4])

    profiles = {p.name: p.workload_profile_type for p in environment.properties.workload_profiles}
    assert profiles == {"Consumption": "Consumption", "gpu": "Consumption-GPU-NC8as-T4"}


def test_serverless_gpu_takes_no_node_counts(client: Any):
    error = _refused(client, [CONSUMPTION, {**T4, "minimumCount": 0, "maximumCount": 1}])

    assert error.code == "WorkloadProfilePropertyNotSupported"
    assert "'MinimumCount' is not supported for Consumption_GPU_NC8as_T4" in error.message


def test_dedicated_gpu_needs_node_counts(client: Any):
    error = _refused(client, [CONSUMPTION, {"name": "gpu", "workloadProfileType": "NC24-A100"}])

    assert error.code == "WorkloadProfileCountInvalid"
    assert _create(client, [CONSUMPTION, A100]).properties.provisioning_state == "Succeeded"


def test_profile_name_length_and_type_are_checked(client: Any):
    assert _refused(client, [CONSUMPTION, {**T4, "name": "g" * 16}]).code == (
        "WorkloadProfileNameInvalid"
    )
    bad_type = {"name": "gpu", "workloadProfileType": "NC8-H100"}
    assert _refused(client, [CONSUMPTION, bad_type]).code == "WorkloadProfileInvalidType"


def test_dedicated_profile_only_at_creation_serverless_any_time(client: Any):
    _create(client, [CONSUMPTION])

    updated = _create(client, [CONSUMPTION, T4])
    assert {p.name for p in updated.properties.workload_profiles} == {"Consumption", "gpu"}
    error = _refused(client, [CONSUMPTION, T4, {**A100, "name": "dedicated"}])
    assert error.code == "ManagedEnvironmentDedicatedProfileNotAddable"


def test_available_profiles_follow_the_location_switch(double: AzureDouble, client: Any):
    def offered() -> set[str]:
        return {p.name for p in client.available_workload_profiles.get(LOCATION)}

    assert {"Consumption", "Consumption-GPU-NC8as-T4", "NC24-A100"} <= offered()
    double.config.unavailable_profiles = {LOCATION: ["Consumption-GPU-NC8as-T4"]}

    assert "Consumption-GPU-NC8as-T4" not in offered()
    error = _refused(client, [CONSUMPTION, T4])
    assert error.code == "WorkloadProfileInvalidType"
    assert f"not supported in location '{LOCATION}'" in error.message


def test_usages_count_environments_and_quota_exhaustion_refuses_creation(
    double: AzureDouble, client: Any
):
    def usages() -> dict[str, tuple[float, float]]:
        return {u.name.value: (u.current_value, u.limit) for u in client.usages.list(LOCATION)}

    before = usages()
    assert before["ManagedEnvironmentCount"][0] == 0
    _create(client, [CONSUMPTION, T4])
    after = usages()
    assert after["ManagedEnvironmentCount"][0] == 1
    assert after["ManagedEnvironmentConsumptionT4Gpus"][0] == 1
    environment_usages = {
        u.name.value: u.current_value
        for u in client.managed_environment_usages.list(RESOURCE_GROUP, "env")
    }
    assert environment_usages["ManagedEnvironmentConsumptionT4Gpus"] == 1

    double.config.quota = {LOCATION: {"ManagedEnvironmentConsumptionT4Gpus": 1}}
    with pytest.raises(HttpResponseError) as refused:
        _create(client, [CONSUMPTION, T4], name="second")
    assert error_of(refused.value).code == "ManagedEnvironmentQuotaExceeded"
    assert "ManagedEnvironmentConsumptionT4Gpus" in str(error_of(refused.value).message)


def test_an_unknown_api_version_gets_arms_error(double: AzureDouble):
    prepare(double)
    old = mgmt_client(ContainerAppsAPIClient, double, api_version="2019-01-01")
    with pytest.raises(HttpResponseError) as refused:
        list(old.managed_environments.list_by_resource_group(RESOURCE_GROUP))

    assert error_of(refused.value).code == "InvalidApiVersionParameter"

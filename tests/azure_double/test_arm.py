"""ARM through the real SDK clients: resource groups, providers, deployments (validate, what-if,
create as a long-running operation, operations, outputs, failures with nested details)."""

from __future__ import annotations

import json
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import DefaultAzureCredential

from tests.azure_double.api_versions import TEMPLATE_DIR
from tests.azure_double.sdk import (
    create_share,
    deployments_client,
    resources_client,
    storage_client,
    use_double_env,
)
from tests.azure_double.server import AzureDouble
from tests.infra.bicep_checks import CONFIG_KEYS, EXTRA_OUTPUT_KEYS

SMALL_TEMPLATE = """
metadata name = 'double check'

param location string = resourceGroup().location

@allowed(['small', 'large'])
param size string = 'small'

@minValue(1)
@maxValue(3)
param count int = 2

@minLength(3)
@maxLength(5)
param word string

@secure()
param secret string

output WHERE string = location
output PICKED string = '${size}-${word}'
output GROUP string = resourceGroup().name
output COUNT int = count
"""

KEYS = {"apiKeyPrimary": {"value": "p" * 16}, "apiKeySecondary": {"value": "s" * 16}}


@pytest.fixture
def double(azure_double: AzureDouble) -> Iterator[AzureDouble]:
    azure_double.retry_after_s = 0
    with use_double_env(azure_double):
        resources_client(azure_double).resource_groups.create_or_update(
            "rg", {"location": "westus3"}
        )
        yield azure_double


def bicep_build(path: Path) -> dict[str, Any]:
    """The stand-in `bicep` on the double's PATH (its env is applied by the fixture)."""
    built = subprocess.run(
        ["bicep", "build", str(path), "--stdout"], capture_output=True, text=True, check=True
    )
    return dict(json.loads(built.stdout))


@pytest.fixture
def small_template(tmp_path: Path, double: AzureDouble) -> dict[str, Any]:
    source = tmp_path / "small.bicep"
    source.write_text(SMALL_TEMPLATE)
    return bicep_build(source)


def deployment(template: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    return {"properties": {"template": template, "parameters": parameters, "mode": "Incremental"}}


# ---- resource groups ---------------------------------------------------------------------------


def test_resource_group_lifecycle(double: AzureDouble) -> None:
    groups = resources_client(double).resource_groups
    created = groups.create_or_update("rg-life", {"location": "East US", "tags": {"a": "1"}})
    assert (created.name, created.location, created.tags) == ("rg-life", "eastus", {"a": "1"})
    assert groups.create_or_update("rg-life", {"location": "eastus"}).tags == {}
    assert groups.check_existence("rg-life") is True
    assert {"rg", "rg-life"} <= {g.name for g in groups.list()}
    storage_client(double).storage_accounts.begin_create(
        "rg-life",
        "stinlife",
        {"location": "eastus", "kind": "StorageV2", "sku": {"name": "Standard_LRS"}},
    ).result()
    groups.begin_delete("rg-life").result()
    assert groups.check_existence("rg-life") is False
    with pytest.raises(ResourceNotFoundError) as raised:
        storage_client(double).storage_accounts.get_properties("rg-life", "stinlife")
    assert raised.value.error is not None
    assert raised.value.error.code == "ResourceGroupNotFound"
    with pytest.raises(ResourceNotFoundError):
        groups.get("rg-life")


@pytest.mark.parametrize(
    ("name", "location", "code"),
    [
        ("rg-far", "moon", "LocationNotAvailableForResourceGroup"),
        ("rg-bad.", "eastus", "InvalidResourceGroupName"),
        ("rg", "eastus", "InvalidResourceGroupLocation"),
    ],
)
def test_resource_group_errors_use_arms_codes(
    double: AzureDouble, name: str, location: str, code: str
) -> None:
    with pytest.raises(HttpResponseError) as raised:
        resources_client(double).resource_groups.create_or_update(name, {"location": location})
    assert raised.value.error is not None
    assert raised.value.error.code == code


# ---- providers ---------------------------------------------------------------------------------


def test_a_provider_that_is_not_registered_refuses_requests_until_registered(
    double: AzureDouble,
) -> None:
    double.config.unregistered_providers = {"Microsoft.Storage"}
    providers = resources_client(double).providers
    assert providers.get("Microsoft.Storage").registration_state == "NotRegistered"
    accounts = storage_client(double).storage_accounts
    body = {"location": "westus3", "kind": "StorageV2", "sku": {"name": "Standard_LRS"}}
    with pytest.raises(HttpResponseError) as raised:
        accounts.begin_create("rg", "stinreg", body).result()
    assert raised.value.status_code == 409
    assert raised.value.error is not None
    assert raised.value.error.code == "MissingSubscriptionRegistration"
    assert providers.register("Microsoft.Storage").registration_state == "Registering"
    assert providers.get("Microsoft.Storage").registration_state == "Registered"
    assert accounts.begin_create("rg", "stinreg", body).result().name == "stinreg"


def test_providers_list_the_resource_types_and_api_versions_the_double_serves(
    double: AzureDouble,
) -> None:
    listed = {p.namespace: p for p in resources_client(double).providers.list()}
    assert {"Microsoft.App", "Microsoft.Storage", "Microsoft.OperationalInsights"} <= set(listed)
    app_types = {t.resource_type: t for t in listed["Microsoft.App"].resource_types}
    assert "2025-07-01" in app_types["containerApps"].api_versions
    with pytest.raises(HttpResponseError) as raised:
        resources_client(double).providers.get("Microsoft.Nope")
    assert raised.value.error is not None
    assert raised.value.error.code == "InvalidResourceNamespace"


# ---- deployments -------------------------------------------------------------------------------


def test_a_deployment_runs_as_a_long_running_operation_and_returns_the_templates_outputs(
    double: AzureDouble, small_template: dict[str, Any]
) -> None:
    double.retry_after_s = 1
    deployments = deployments_client(double).deployments
    poller = deployments.begin_create_or_update(
        "rg",
        "small",
        deployment(small_template, {"word": {"value": "abcd"}, "secret": {"value": "hush"}}),
    )
    result = poller.result()
    assert result.properties.provisioning_state == "Succeeded"
    assert result.properties.outputs == {
        "WHERE": {"type": "String", "value": "westus3"},
        "PICKED": {"type": "String", "value": "small-abcd"},
        "GROUP": {"type": "String", "value": "rg"},
        "COUNT": {"type": "Int", "value": 2},
    }
    shown = result.properties.parameters
    assert shown["word"]["value"] == "abcd"
    assert "value" not in shown["secret"]  # secure values are never echoed
    put = next(r for r in double.requests if r.method == "PUT" and r.path.endswith("/small"))
    assert put.status == 201
    polls = [r for r in double.requests if "/operationStatuses/" in r.path]
    assert polls and all(r.status == 200 for r in polls)
    assert [d.name for d in deployments.list_by_resource_group("rg")] == ["small"]
    deployments.begin_delete("rg", "small").result()
    assert deployments.check_existence("rg", "small") is False


@pytest.mark.parametrize(
    ("parameters", "says"),
    [
        ({"secret": {"value": "x"}}, "The value for the template parameter 'word' is not provided"),
        (
            {"word": {"value": "abcd"}, "secret": {"value": "x"}, "size": {"value": "huge"}},
            "not part of the allowed value(s): 'small,large'",
        ),
        (
            {"word": {"value": "abcd"}, "secret": {"value": "x"}, "count": {"value": 0}},
            "greater than or equal to '1'",
        ),
        (
            {"word": {"value": "abcd"}, "secret": {"value": "x"}, "count": {"value": 4}},
            "less than or equal to '3'",
        ),
        (
            {"word": {"value": "ab"}, "secret": {"value": "x"}},
            "Length of the value should be greater",
        ),
        (
            {"word": {"value": "abcdef"}, "secret": {"value": "x"}},
            "Length of the value should be less",
        ),
        (
            {"word": {"value": "abcd"}, "secret": {"value": "x"}, "count": {"value": "2"}},
            "Expected a value of type 'int'",
        ),
        (
            {"word": {"value": "abcd"}, "secret": {"value": "x"}, "colour": {"value": "red"}},
            "The template parameters 'colour' in the parameters file are not valid",
        ),
    ],
)
def test_parameters_are_checked_against_the_templates_declarations(
    double: AzureDouble, small_template: dict[str, Any], parameters: dict[str, Any], says: str
) -> None:
    deployments = deployments_client(double).deployments
    for attempt in (deployments.begin_validate, deployments.begin_create_or_update):
        with pytest.raises(HttpResponseError) as raised:
            attempt("rg", "small", deployment(small_template, parameters)).result()
        assert raised.value.status_code == 400
        assert raised.value.error is not None
        assert raised.value.error.code == "InvalidTemplate"
        assert says in str(raised.value.error.message)
    assert deployments.check_existence("rg", "small") is False


def test_a_deployment_into_a_missing_resource_group_is_refused(
    double: AzureDouble, small_template: dict[str, Any]
) -> None:
    with pytest.raises(ResourceNotFoundError) as raised:
        deployments_client(double).deployments.begin_validate(
            "rg-missing", "small", deployment(small_template, {})
        ).result()
    assert raised.value.error is not None
    assert raised.value.error.code == "ResourceGroupNotFound"


@pytest.fixture
def inference_template(double: AzureDouble) -> dict[str, Any]:
    return bicep_build(TEMPLATE_DIR / "inference.bicep")


def test_validate_and_what_if_list_what_the_inference_template_creates(
    double: AzureDouble, inference_template: dict[str, Any]
) -> None:
    deployments = deployments_client(double).deployments
    body = deployment(inference_template, {**KEYS, "storageAccountName": {"value": "stmodels"}})
    validated = deployments.begin_validate("rg", "infer", body).result()
    types = [
        r.id.split("/providers/")[1].rsplit("/", 1)[0]
        for r in validated.properties.validated_resources
    ]
    assert types == [
        "Microsoft.Storage/storageAccounts",
        "Microsoft.Storage/storageAccounts/stmodels/fileServices",
        "Microsoft.Storage/storageAccounts/stmodels/fileServices/default/shares",
        "Microsoft.OperationalInsights/workspaces",
        "Microsoft.App/managedEnvironments",
        "Microsoft.App/managedEnvironments/"
        + validated.properties.parameters["acaEnvironmentName"]["value"]
        + "/storages",
        "Microsoft.App/containerApps",
    ]
    changes = deployments.begin_what_if("rg", "infer", body).result().changes
    assert {c.change_type for c in changes} == {"Create"}
    app = changes[-1].after
    assert [s["value"] for s in app["properties"]["configuration"]["secrets"]] == ["*****"] * 2
    assert KEYS["apiKeyPrimary"]["value"] not in json.dumps([c.after for c in changes])
    reuse = deployment(
        inference_template,
        {
            **KEYS,
            "useExistingStorageAccount": {"value": True},
            "useExistingEnvironment": {"value": True},
        },
    )
    planned = deployments.begin_what_if("rg", "infer", reuse).result().changes
    # Existing resources are only referenced: the app is all this deployment changes.
    assert [c.resource_id.rsplit("/", 2)[-2] for c in planned] == ["containerApps"]
    assert deployments.check_existence("rg", "infer") is False


def test_a_failing_resource_fails_the_deployment_with_nested_details_and_operations(
    double: AzureDouble, inference_template: dict[str, Any]
) -> None:
    double.config.unregistered_providers = {"Microsoft.App"}
    client = deployments_client(double)
    with pytest.raises(HttpResponseError) as raised:
        client.deployments.begin_create_or_update(
            "rg", "infer", deployment(inference_template, KEYS)
        ).result()
    error = raised.value.error
    assert error is not None
    assert error.code == "DeploymentFailed"
    # The module's nested deployment failed because of the resource inside it.
    (module_error,) = error.details
    assert module_error.code == "DeploymentFailed"
    assert str(module_error.target).endswith("/deployments/infer-environment")
    assert [d.code for d in module_error.details] == ["MissingSubscriptionRegistration"]
    failed = client.deployments.get("rg", "infer")
    assert failed.properties.provisioning_state == "Failed"
    assert failed.properties.error.details[0].details[0].code == "MissingSubscriptionRegistration"

    def states(name: str) -> dict[str, str]:
        return {
            o.properties.target_resource.resource_name: o.properties.provisioning_state
            for o in client.deployment_operations.list("rg", name)
        }

    assert states("infer") == {
        "infer-storage": "Succeeded",
        "infer-monitoring": "Succeeded",
        "infer-environment": "Failed",
    }
    account = failed.properties.parameters["storageAccountName"]["value"]
    assert states("infer-storage") == {
        account: "Succeeded",
        "default": "Succeeded",
        "aca-infer": "Succeeded",
    }
    environment = failed.properties.parameters["acaEnvironmentName"]["value"]
    assert states("infer-environment") == {environment: "Failed"}
    failure = next(iter(client.deployment_operations.list("rg", "infer-environment")))
    assert failure.properties.status_message["error"]["code"] == "MissingSubscriptionRegistration"
    # The share the deployment created through the storage provider is a real folder.
    account = failed.properties.parameters["storageAccountName"]["value"]
    assert double.share_root(account, "aca-infer").is_dir()


def test_an_injected_deployment_failure_carries_its_nested_details(
    double: AzureDouble, small_template: dict[str, Any]
) -> None:
    double.config.deployment_failure = {
        "code": "ResourceDeploymentFailure",
        "message": "The resource operation completed with terminal provisioning state 'Failed'.",
        "details": [{"code": "WorkloadProfileNotAvailable", "message": "No GPU here."}],
    }
    with pytest.raises(HttpResponseError) as raised:
        deployments_client(double).deployments.begin_create_or_update(
            "rg",
            "small",
            deployment(small_template, {"word": {"value": "abc"}, "secret": {"value": "x"}}),
        ).result()
    error = raised.value.error
    assert error is not None
    assert error.code == "DeploymentFailed"
    assert error.details[0].code == "ResourceDeploymentFailure"
    assert error.details[0].details[0].code == "WorkloadProfileNotAvailable"


def test_the_inference_template_outputs_are_the_config_keys(
    inference_template: dict[str, Any],
) -> None:
    assert set(inference_template["outputs"]) == CONFIG_KEYS | EXTRA_OUTPUT_KEYS


def test_the_inference_template_deploys_an_app_that_serves_from_the_share(
    double: AzureDouble, inference_template: dict[str, Any]
) -> None:
    apps_testing = pytest.importorskip("tests.azure_double.apps_testing")
    app = create_share(double, "rg", "stexisting", "aca-infer", "westus3") / "app"
    app.mkdir()
    (app / "bootstrap.py").write_text(apps_testing.SERVER)
    parameters = {
        **KEYS,
        "useExistingStorageAccount": {"value": True},
        "storageAccountName": {"value": "stexisting"},
        "gpuProfileType": {"value": "Consumption"},
        "minimumInstanceCount": {"value": 1},
        "startupProbeInitialDelaySeconds": {"value": 1},
        "startupProbePeriodSeconds": {"value": 1},
    }
    client = deployments_client(double)
    result = client.deployments.begin_create_or_update(
        "rg", "infer", deployment(inference_template, parameters)
    ).result()
    outputs = {key: entry["value"] for key, entry in result.properties.outputs.items()}
    assert set(outputs) == CONFIG_KEYS | EXTRA_OUTPUT_KEYS
    assert outputs["STORAGE_ACCOUNT_NAME"] == "stexisting"
    assert outputs["SUBSCRIPTION_ID"] == double.subscription_id
    endpoint = outputs["ACA_APP_ENDPOINT"]
    assert endpoint.startswith("https://127.0.0.1:")
    ready = httpx.get(
        f"{endpoint}/ready", verify=ssl.create_default_context(cafile=str(double.ca_bundle))
    )
    assert ready.status_code == 200
    modules = [
        o.properties.target_resource.resource_name
        for o in client.deployment_operations.list("rg", "infer")
    ]
    assert modules == ["infer-monitoring", "infer-environment", "infer-app"]


def test_the_subscription_is_the_one_the_double_serves(double: AzureDouble) -> None:
    token = DefaultAzureCredential().get_token(f"{double.arm_endpoint}/.default").token
    client = httpx.Client(
        base_url=f"{double.arm_endpoint}/subscriptions",
        headers={"Authorization": f"Bearer {token}"},
        params={"api-version": "2025-04-01"},
        verify=ssl.create_default_context(cafile=str(double.ca_bundle)),
    )
    with client:
        found = client.get(f"/{double.subscription_id}").json()
        assert (found["subscriptionId"], found["tenantId"], found["state"]) == (
            double.subscription_id,
            double.tenant_id,
            "Enabled",
        )
        assert [s["subscriptionId"] for s in client.get("").json()["value"]] == [
            double.subscription_id
        ]
        missing = client.get("/00000000-0000-0000-0000-000000000000/resourcegroups")
        assert (missing.status_code, missing.json()["error"]["code"]) == (
            404,
            "SubscriptionNotFound",
        )

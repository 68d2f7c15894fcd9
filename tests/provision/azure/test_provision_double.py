"""`aca-infer provision --target azure` through the Azure double: the real SDK clients, unpatched,
against a stateful ARM, Storage and Container Apps on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provision.azure.naming import ai_toolkit_names, resource_group_id
from provision.azure.target import AzureTarget
from provision.azure.uniquestring import unique_string
from provision.wheelhouse import PYTORCH_IMAGE_PLATFORM
from tests.azure_double.faults import Fault
from tests.azure_double.server import AzureDouble
from tests.provision.azure.double_project import Session
from tests.provision.azure.projects import BAD_FILES, copy_templates, write_parameters

GROUP = "rg-infer"
LOCATION = "westus3"


@pytest.fixture
def session(azure_double: AzureDouble, tmp_path: Path) -> Iterator[Session]:
    project = tmp_path / "project"
    copy_templates(project)
    # Replicas start in seconds here; the template's probe budget would make a failure take minutes.
    azure_double.config.extra["probe_time_scale"] = 0.05
    yield Session(azure_double, project)


def names(session: Session, group: str = GROUP) -> dict[str, str]:
    suffix = unique_string(resource_group_id(session.double.subscription_id, group))[:5]
    return ai_toolkit_names(suffix)


def ready_to_provision(session: Session) -> dict[str, str]:
    expected = names(session)
    session.seed_app(expected["storageAccountName"], expected["fileShareName"])
    return expected


def test_happy_path_on_an_empty_subscription(session: Session) -> None:
    expected = ready_to_provision(session)
    result = session.provision("-g", GROUP, "-l", LOCATION)
    assert result.exit_code == 0, result.stderr
    config = session.config()
    assert config["RESOURCE_GROUP_NAME"] == GROUP
    assert config["STORAGE_ACCOUNT_NAME"] == expected["storageAccountName"]
    assert config["FILE_SHARE_NAME"] == expected["fileShareName"]
    assert config["ACA_APP_NAME"] == expected["acaAppName"]
    assert config["ACA_APP_ENDPOINT"].startswith("https://127.0.0.1:")
    assert "creating resource group rg-infer in westus3" in result.stderr
    assert "succeeded Microsoft.App/containerApps" in result.stderr
    assert "minimumInstanceCount=1" in result.stderr and "/hour" in result.stderr
    app_id = (
        f"{session.group_id(GROUP)}/providers/Microsoft.App/containerApps/{expected['acaAppName']}"
    )
    app = session.resource(app_id)
    assert app is not None and app["tags"]["created-by"] == "aca-infer"

    # deploy brings the server's wheels for the default public PyTorch image
    assert AzureTarget(session.project).image_platform() == PYTORCH_IMAGE_PLATFORM

    keys = session.aca("--output", "json", "keys", "show", "--target", "azure")
    assert keys.exit_code == 0, keys.stderr
    primary = keys.stdout.split('"primary": "')[1].split('"')[0]
    assert len(primary) >= 32
    assert primary not in result.output
    assert primary not in (session.project / "infra/inference.config.json").read_text()


def test_reprovision_with_nothing_changed_deploys_nothing_and_keeps_the_keys(
    session: Session,
) -> None:
    ready_to_provision(session)
    assert session.provision("-g", GROUP, "-l", LOCATION).exit_code == 0
    keys_before = session.aca("keys", "show", "--target", "azure").stdout
    writes_before = len(session.writes())

    again = session.provision("-g", GROUP, "-l", LOCATION)
    assert again.exit_code == 0, again.stderr
    assert "skipping it (--force deploys anyway)" in again.stderr
    assert session.writes()[writes_before:] == []
    assert "Unchanged (deployment skipped)" in again.stdout
    assert session.aca("keys", "show", "--target", "azure").stdout == keys_before

    forced = session.provision("-g", GROUP, "-l", LOCATION, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert any("/deployments/" in write for write in session.writes()[writes_before:])
    assert session.aca("keys", "show", "--target", "azure").stdout == keys_before


def test_throttling_and_transient_errors_are_retried(session: Session) -> None:
    ready_to_provision(session)
    throttle = session.double.faults.add(
        Fault(
            method="GET",
            path=r"/resourcegroups/rg-infer$",
            status=429,
            code="TooManyRequests",
            headers={"Retry-After": "1"},
        )
    )
    unavailable = session.double.faults.add(
        Fault(method="PUT", path=r"/deployments/", status=503, code="ServiceUnavailable")
    )
    result = session.provision("-g", GROUP, "-l", LOCATION)
    assert result.exit_code == 0, result.stderr
    assert throttle.hits == 1 and unavailable.hits == 1


def test_a_failed_deployment_prints_its_nested_errors(session: Session) -> None:
    ready_to_provision(session)
    session.double.config.deployment_failure = {
        "code": "ResourceDeploymentFailure",
        "message": "The resource operation completed with terminal provisioning state 'Failed'.",
        "target": "aiacaapp",
        "details": [
            {
                "code": "ContainerAppInvalidImage",
                "message": "The image ghcr.io/x/y:1 cannot be pulled.",
                "target": "template.containers[0].image",
            }
        ],
    }
    result = session.provision("-g", GROUP, "-l", LOCATION)
    assert result.exit_code == 4, result.stderr
    assert (
        "failed    ContainerAppInvalidImage: The image ghcr.io/x/y:1 cannot be pulled. "
        "(target template.containers[0].image)" in result.stderr
    )
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: deployment aca-infer-") and "DeploymentFailed" in last
    assert not (session.project / "infra/inference.config.json").exists()


def test_unregistered_providers_are_registered(session: Session) -> None:
    ready_to_provision(session)
    session.double.config.unregistered_providers = {"Microsoft.App"}
    result = session.provision("-g", GROUP, "-l", LOCATION)
    assert result.exit_code == 0, result.stderr
    assert "registering resource provider Microsoft.App" in result.stderr


def test_a_profile_not_offered_names_regions_that_offer_it_and_creates_nothing(
    session: Session,
) -> None:
    session.double.config.unavailable_profiles = {LOCATION: ["Consumption-GPU-NC8as-T4"]}
    result = session.provision("-g", GROUP, "-l", LOCATION)
    assert result.exit_code == 2, result.stderr
    line = result.stderr.strip()
    assert "'Consumption-GPU-NC8as-T4' is not offered in westus3" in line
    assert "eastus" in line
    assert session.writes() == []


def test_exhausted_quota_names_it_and_a_smaller_profile(session: Session) -> None:
    session.double.config.quota = {LOCATION: {"ManagedEnvironmentConsumptionA100Gpus": 0}}
    result = session.provision(
        "-g", GROUP, "-l", LOCATION, "--set", "gpuProfileType=Consumption-GPU-NC24-A100"
    )
    assert result.exit_code == 4, result.stderr
    line = result.stderr.strip()
    assert "GPU quota 'ManagedEnvironmentConsumptionA100Gpus' in westus3: 0 of 0 left" in line
    assert "--set gpuProfileType=Consumption-GPU-NC8as-T4" in line
    assert session.writes() == []


def test_without_a_credential_exit_3_says_how_to_sign_in(session: Session) -> None:
    result = session.provision("-g", GROUP, "-l", LOCATION, env=session.env_without_az())
    assert result.exit_code == 3, result.stderr
    assert "az login" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert session.double.requests == []


def test_what_if_lists_the_changes_and_creates_nothing(session: Session) -> None:
    result = session.provision("-g", GROUP, "-l", LOCATION, "--what-if")
    assert result.exit_code == 0, result.stderr
    assert "Create     resource group rg-infer" in result.stdout
    assert "Create     container app aiacaapp" in result.stdout
    assert session.writes() == []


def test_a_template_that_does_not_compile_is_exit_2_and_creates_nothing(session: Session) -> None:
    template = session.project / "infra/provision/inference.bicep"
    template.write_text(
        template.read_text() + "\nresource broken 'Microsoft.App/x@2025-07-01' = {\n"
    )
    result = session.provision("-g", GROUP, "-l", LOCATION)
    assert result.exit_code == 2, result.stderr
    assert "does not compile" in result.stderr
    assert session.double.requests == []


def test_what_if_in_an_existing_group_shows_arms_changes_and_deploys_nothing(
    session: Session,
) -> None:
    ready_to_provision(session)
    assert session.provision("-g", GROUP, "-l", LOCATION).exit_code == 0
    writes_before = len(session.writes())
    result = session.provision("-g", GROUP, "--what-if", "--set", "maximumInstanceCount=3")
    assert result.exit_code == 0, result.stderr
    assert "What-if:" in result.stdout
    assert "Microsoft.App/containerApps" in result.stdout
    assert session.writes()[writes_before:] == []


def fine_tuning_run(session: Session, group: str) -> dict[str, str]:
    """What the AI Toolkit's fine-tuning template leaves in a resource group, made with the SDK:
    storage account + 1 TiB share, workspace, environment with a `GPU` NC24-A100 profile and its
    ReadWrite storage entry."""
    from tests.azure_double.apps_testing import apps_client
    from tests.azure_double.sdk import (
        log_analytics_client,
        resources_client,
        storage_client,
        use_double_env,
    )

    double = session.double
    found = names(session, group)
    account, share = found["storageAccountName"], found["fileShareName"]
    environment: Any = {
        "location": LOCATION,
        "properties": {
            "workloadProfiles": [
                {"name": "Consumption", "workloadProfileType": "Consumption"},
                {
                    "name": "GPU",
                    "workloadProfileType": "NC24-A100",
                    "minimumCount": 0,
                    "maximumCount": 1,
                },
            ]
        },
    }
    share_body: Any = {"properties": {"shareQuota": 1024}}
    with use_double_env(double):
        resources_client(double).resource_groups.create_or_update(group, {"location": LOCATION})
        storage = storage_client(double)
        storage.storage_accounts.begin_create(
            group,
            account,
            {"location": LOCATION, "kind": "StorageV2", "sku": {"name": "Standard_LRS"}},
        ).result()
        storage.file_shares.create(group, account, share, share_body)
        log_analytics_client(double).workspaces.begin_create_or_update(
            group, found["acaLogAnalyticsName"], {"location": LOCATION}
        ).result()
        apps = apps_client(double)
        apps.managed_environments.begin_create_or_update(
            group, found["acaEnvironmentName"], environment
        ).result()
        storage_entry: Any = {
            "properties": {
                "azureFile": {
                    "accountName": account,
                    "accountKey": double.storage_account_keys(account)[0],
                    "shareName": share,
                    "accessMode": "ReadWrite",
                }
            }
        }
        apps.managed_environments_storages.create_or_update(
            group, found["acaEnvironmentName"], found["acaEnvironmentStorageName"], storage_entry
        )
    return found


def test_an_ai_toolkit_project_reuses_the_fine_tuning_resources_untouched(
    azure_double: AzureDouble, tmp_path: Path
) -> None:
    from tests.provision.azure.projects import ai_toolkit_project

    group = "rg-finetune"
    project = ai_toolkit_project(tmp_path / "project", azure_double.subscription_id, group)
    session = Session(azure_double, project)
    session.double.config.extra["probe_time_scale"] = 0.05
    # The fine-tuning run's names derive from its resource group, as the AI Toolkit's do.
    found = fine_tuning_run(session, group)
    (project / "infra/finetuning.config.json").write_text(
        (project / "infra/finetuning.config.json")
        .read_text()
        .replace("ab12c", found["storageAccountName"].removeprefix("aistorage"))
    )
    session.seed_app(found["storageAccountName"], found["fileShareName"])
    fine_tuning_ids = [
        f"{session.group_id(group)}/providers/{path}"
        for path in (
            f"Microsoft.Storage/storageAccounts/{found['storageAccountName']}",
            f"Microsoft.Storage/storageAccounts/{found['storageAccountName']}/fileServices/default"
            f"/shares/{found['fileShareName']}",
            f"Microsoft.OperationalInsights/workspaces/{found['acaLogAnalyticsName']}",
            f"Microsoft.App/managedEnvironments/{found['acaEnvironmentName']}",
            f"Microsoft.App/managedEnvironments/{found['acaEnvironmentName']}/storages/"
            f"{found['acaEnvironmentStorageName']}",
        )
    ]
    before = {resource_id: session.resource(resource_id) for resource_id in fine_tuning_ids}
    assert all(before.values())
    writes_before = len(session.writes())

    result = session.provision()  # everything from finetuning.config.json and the AI Toolkit file
    assert result.exit_code == 0, result.stderr
    assert "defaultCommands are the AI Toolkit's" in result.stderr
    assert f"reusing environment {found['acaEnvironmentName']}" in result.stderr
    assert {resource_id: session.resource(resource_id) for resource_id in fine_tuning_ids} == before
    # The only write is the deployment; a re-PUT by it would have changed the bodies above
    # (the template's share quota, mount mode and tags differ from the fine-tuning run's).
    written = [write for write in session.writes()[writes_before:]]
    assert written and all("/providers/Microsoft.Resources/deployments/" in w for w in written)

    app = session.resource(
        f"{session.group_id(group)}/providers/Microsoft.App/containerApps/{found['acaAppName']}"
    )
    assert app is not None
    assert app["properties"]["workloadProfileName"] == "GPU"
    container = app["properties"]["template"]["containers"][0]
    assert container["command"] == ["python", "/mount/app/bootstrap.py"]
    config = session.config()
    assert config["STORAGE_ACCOUNT_NAME"] == found["storageAccountName"]
    assert config["FILE_SHARE_NAME"] == found["fileShareName"]
    assert config["ACA_APP_ENDPOINT"].startswith("https://")

    keys = session.aca("keys", "show", "--target", "azure").stdout
    writes_before = len(session.writes())
    again = session.provision()
    assert again.exit_code == 0, again.stderr
    assert "skipping it" in again.stderr
    assert session.writes()[writes_before:] == []
    assert {resource_id: session.resource(resource_id) for resource_id in fine_tuning_ids} == before
    assert session.aca("keys", "show", "--target", "azure").stdout == keys


@pytest.mark.parametrize(("case", "document", "expected"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_each_bad_parameter_file_stops_before_any_request(
    session: Session, case: str, document: object, expected: str
) -> None:
    write_parameters(session.project, document)
    result = session.provision("-g", GROUP, "-l", LOCATION)
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0]
    assert session.double.requests == []

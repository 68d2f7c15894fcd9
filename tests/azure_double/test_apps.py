"""Microsoft.App in the double, driven by the real ContainerAppsAPIClient: environments, storages,
apps whose replicas really run and serve HTTPS at their fqdn, revisions, replicas, stop/start."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.appcontainers import ContainerAppsAPIClient

from tests.azure_double.apps_testing import (
    RESOURCE_GROUP,
    app_body,
    apps_client,
    environment_body,
    prepare,
    storage_body,
    wait_for,
)
from tests.azure_double.server import AzureDouble


@pytest.fixture
def double(tmp_path: Path) -> Iterator[AzureDouble]:
    with AzureDouble(state_dir=tmp_path / "double") as started:
        yield started


@pytest.fixture
def client(double: AzureDouble) -> ContainerAppsAPIClient:
    prepare(double)
    return apps_client(double)


def _environment(double: AzureDouble, client: ContainerAppsAPIClient) -> str:
    environment = client.managed_environments.begin_create_or_update(
        RESOURCE_GROUP, "env", environment_body()
    ).result()
    client.managed_environments_storages.create_or_update(
        RESOURCE_GROUP, "env", "data", storage_body(double)
    )
    return str(environment.id)


def _https(double: AzureDouble) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=double.ca_bundle), timeout=30)


def _fqdn(app: Any) -> str:
    return str(app.properties.configuration.ingress.fqdn)


def test_environment_lifecycle_and_storage(double: AzureDouble, client: ContainerAppsAPIClient):
    environment = client.managed_environments.begin_create_or_update(
        RESOURCE_GROUP, "env", environment_body()
    ).result()
    assert environment.properties.provisioning_state == "Succeeded"
    types = {p.workload_profile_type for p in environment.properties.workload_profiles}
    assert types == {"Consumption", "Consumption-GPU-NC8as-T4"}
    assert [e.name for e in client.managed_environments.list_by_resource_group(RESOURCE_GROUP)] == [
        "env"
    ]

    storage = client.managed_environments_storages.create_or_update(
        RESOURCE_GROUP, "env", "data", storage_body(double)
    )
    assert storage.properties.azure_file.share_name == "models"
    assert storage.properties.azure_file.account_key is None  # write-only, never returned

    wrong_key = storage_body(double)
    wrong_key["properties"]["azureFile"]["accountKey"] = "bm90LXRoZS1rZXk="
    with pytest.raises(HttpResponseError) as refused:
        client.managed_environments_storages.create_or_update(
            RESOURCE_GROUP, "env", "other", wrong_key
        )
    assert refused.value.status_code == 400
    assert "not one of its keys" in str(refused.value)

    client.managed_environments.begin_delete(RESOURCE_GROUP, "env").result()
    with pytest.raises(ResourceNotFoundError):
        client.managed_environments.get(RESOURCE_GROUP, "env")


def test_app_replica_serves_from_the_share_at_its_fqdn(
    double: AzureDouble, client: ContainerAppsAPIClient
):
    environment_id = _environment(double, client)
    app = client.container_apps.begin_create_or_update(
        RESOURCE_GROUP, "web", app_body(environment_id, env={"GREETING": "hi"})
    ).result()

    assert app.properties.provisioning_state == "Succeeded"
    assert app.properties.latest_revision_name.startswith("web--")
    assert app.properties.latest_ready_revision_name == app.properties.latest_revision_name
    assert _fqdn(app).startswith("127.0.0.1:")
    with _https(double) as https:
        hello = https.get(f"https://{_fqdn(app)}/hello").json()
        echoed = https.post(f"https://{_fqdn(app)}/echo", content=b"x" * 100_000).json()
    assert hello["greeting"] == "hi"
    assert hello["key"] == "key-1"  # secretRef resolved
    share = double.share_root("appsdata", "models")
    assert hello["mount"] == str(share)  # /mount rewritten to the share folder
    assert hello["argv"] == [str(share / "server.py")]
    assert echoed["echo"] == "x" * 100_000

    secrets = client.container_apps.list_secrets(RESOURCE_GROUP, "web")
    assert [(s.name, s.value) for s in secrets.value] == [("api-key", "key-1")]
    fetched = client.container_apps.get(RESOURCE_GROUP, "web")
    assert [s.name for s in fetched.properties.configuration.secrets] == ["api-key"]
    assert fetched.properties.configuration.secrets[0].value is None

    revision = client.container_apps_revisions.get_revision(
        RESOURCE_GROUP, "web", app.properties.latest_revision_name
    )
    assert (revision.properties.active, revision.properties.traffic_weight) == (True, 100)
    assert revision.properties.running_state == "Running"
    replicas = client.container_apps_revision_replicas.list_replicas(
        RESOURCE_GROUP, "web", revision.name
    ).value
    assert len(replicas) == 1
    assert replicas[0].properties.containers[0].ready is True

    client.container_apps.begin_delete(RESOURCE_GROUP, "web").result()
    with pytest.raises(ResourceNotFoundError):
        client.container_apps.get(RESOURCE_GROUP, "web")
    with _https(double) as https, pytest.raises(httpx.ConnectError):
        https.get(f"https://{_fqdn(app)}/hello")

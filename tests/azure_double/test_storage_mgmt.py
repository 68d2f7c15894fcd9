"""Microsoft.Storage and Microsoft.OperationalInsights management through the real SDK clients."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from tests.azure_double.sdk import (
    log_analytics_client,
    resources_client,
    storage_client,
    use_double_env,
)
from tests.azure_double.server import AzureDouble

ACCOUNT = {"location": "eastus", "kind": "StorageV2", "sku": {"name": "Standard_LRS"}}


@pytest.fixture
def double(azure_double: AzureDouble) -> Iterator[AzureDouble]:
    azure_double.retry_after_s = 0
    with use_double_env(azure_double):
        groups = resources_client(azure_double).resource_groups
        groups.create_or_update("rg", {"location": "eastus"})
        groups.create_or_update("rg-other", {"location": "eastus"})
        yield azure_double


def test_storage_account_lifecycle_keys_and_file_endpoint(double: AzureDouble) -> None:
    accounts = storage_client(double).storage_accounts
    check = {"name": "stmodels", "type": "Microsoft.Storage/storageAccounts"}
    assert accounts.check_name_availability(check).name_available is True
    created = accounts.begin_create(
        "rg", "stmodels", {**ACCOUNT, "properties": {"minimumTlsVersion": "TLS1_2"}}
    ).result()
    assert created.provisioning_state == "Succeeded"
    assert created.minimum_tls_version == "TLS1_2"
    assert created.sku.tier == "Standard"
    endpoint = urlsplit(created.primary_endpoints.file)
    assert (endpoint.scheme, endpoint.hostname, endpoint.port, endpoint.path) == (
        "https",
        "127.0.0.1",
        double.files_port,
        "/stmodels/",
    )
    taken = accounts.check_name_availability(check)
    assert (taken.name_available, taken.reason) == (False, "AlreadyExists")
    assert [a.name for a in accounts.list_by_resource_group("rg")] == ["stmodels"]
    assert [a.name for a in accounts.list()] == ["stmodels"]

    keys = accounts.list_keys("rg", "stmodels").keys_property
    assert [k.key_name for k in keys] == ["key1", "key2"]
    assert [k.value for k in keys] == double.storage_account_keys("stmodels")
    renewed = accounts.regenerate_key("rg", "stmodels", {"keyName": "key1"}).keys_property
    assert renewed[0].value != keys[0].value
    assert renewed[1].value == keys[1].value

    accounts.delete("rg", "stmodels")
    with pytest.raises(ResourceNotFoundError):
        accounts.get_properties("rg", "stmodels")
    with pytest.raises(KeyError):
        double.storage_account_keys("stmodels")


@pytest.mark.parametrize(
    ("name", "reason"), [("UPPER", "AccountNameInvalid"), ("st", "AccountNameInvalid")]
)
def test_check_name_availability_explains_invalid_names(
    double: AzureDouble, name: str, reason: str
) -> None:
    result = storage_client(double).storage_accounts.check_name_availability(
        {"name": name, "type": "Microsoft.Storage/storageAccounts"}
    )
    assert (result.name_available, result.reason) == (False, reason)


def test_account_names_are_unique_across_resource_groups(double: AzureDouble) -> None:
    accounts = storage_client(double).storage_accounts
    accounts.begin_create("rg", "stshared", ACCOUNT).result()
    with pytest.raises(HttpResponseError) as raised:
        accounts.begin_create("rg-other", "stshared", ACCOUNT).result()
    assert raised.value.status_code == 409
    assert raised.value.error is not None
    assert raised.value.error.code == "StorageAccountAlreadyTaken"


def test_an_unknown_property_in_the_create_body_is_refused(double: AzureDouble) -> None:
    with pytest.raises(HttpResponseError) as raised:
        storage_client(double).storage_accounts.begin_create(
            "rg", "stbody", {**ACCOUNT, "properties": {"fastLane": True}}
        ).result()
    assert raised.value.error is not None
    assert raised.value.error.code == "InvalidRequestContent"
    assert "properties.fastLane" in str(raised.value.error.message)


def test_file_shares_as_arm_resources_are_folders_of_the_share_root(double: AzureDouble) -> None:
    client = storage_client(double)
    client.storage_accounts.begin_create("rg", "stshares", ACCOUNT).result()
    client.file_services.set_service_properties(
        "rg",
        "stshares",
        {"properties": {"shareDeleteRetentionPolicy": {"enabled": True, "days": 7}}},
    )
    share = client.file_shares.create(
        "rg", "stshares", "models", {"properties": {"shareQuota": 256}}
    )
    assert share.share_quota == 256
    assert double.share_root("stshares", "models").is_dir()
    assert client.file_shares.get("rg", "stshares", "models").name == "models"
    assert [s.name for s in client.file_shares.list("rg", "stshares")] == ["models"]
    with pytest.raises(HttpResponseError) as raised:
        client.file_shares.create("rg", "stshares", "Bad_Name", {"properties": {}})
    assert raised.value.error is not None
    assert raised.value.error.code == "InvalidResourceName"
    client.file_shares.delete("rg", "stshares", "models")
    assert not double.share_root("stshares", "models").exists()
    with pytest.raises(ResourceNotFoundError):
        client.file_shares.get("rg", "stshares", "models")


def test_log_analytics_workspace_lifecycle_and_shared_keys(double: AzureDouble) -> None:
    client = log_analytics_client(double)
    workspace = client.workspaces.begin_create_or_update(
        "rg",
        "log-infer",
        {"location": "eastus", "properties": {"retentionInDays": 30, "sku": {"name": "PerGB2018"}}},
    ).result()
    assert workspace.provisioning_state == "Succeeded"
    assert workspace.customer_id
    assert [w.name for w in client.workspaces.list_by_resource_group("rg")] == ["log-infer"]
    keys = client.shared_keys.get_shared_keys("rg", "log-infer")
    assert keys.primary_shared_key and keys.primary_shared_key != keys.secondary_shared_key
    client.workspaces.begin_delete("rg", "log-infer").result()
    with pytest.raises(ResourceNotFoundError):
        client.workspaces.get("rg", "log-infer")

"""The real SDK clients, pointed at a double the way the CLI points them at a custom cloud:
base_url + credential scopes of its ARM endpoint, the double's CA, the real credential chain
(DefaultAzureCredential with AZURE_TOKEN_CREDENTIALS=dev, which runs the stand-in `az`).

`use_double_env` applies the double's `env` to this process (the credential runs `az` from
PATH); short retry backoff keeps the SDK's own retries of 429/5xx quick in tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from azure.identity import DefaultAzureCredential

from tests.azure_double.server import AzureDouble

FAST_RETRY = {"retry_backoff_factor": 0.01, "retry_backoff_max": 0.05, "retry_total": 3}


@contextmanager
def use_double_env(double: AzureDouble) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in double.env}
    os.environ.update(double.env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def client_kwargs(double: AzureDouble, **overrides: Any) -> dict[str, Any]:
    return {
        "base_url": double.arm_endpoint,
        "credential_scopes": [f"{double.arm_endpoint}/.default"],
        "connection_verify": str(double.ca_bundle),
        "polling_interval": 0,
        **FAST_RETRY,
        **overrides,
    }


def credential() -> DefaultAzureCredential:
    return DefaultAzureCredential()


def mgmt_client(client_class: type[Any], double: AzureDouble, **overrides: Any) -> Any:
    """The management client `client_class` with the real credential chain, pointed at the
    double (run inside `use_double_env`)."""
    return client_class(credential(), double.subscription_id, **client_kwargs(double, **overrides))


def resources_client(double: AzureDouble, **overrides: Any) -> Any:
    from azure.mgmt.resource.resources import ResourceManagementClient

    return mgmt_client(ResourceManagementClient, double, **overrides)


def deployments_client(double: AzureDouble, **overrides: Any) -> Any:
    from azure.mgmt.resource.deployments import DeploymentsMgmtClient

    return mgmt_client(DeploymentsMgmtClient, double, **overrides)


def storage_client(double: AzureDouble, **overrides: Any) -> Any:
    from azure.mgmt.storage import StorageManagementClient

    return mgmt_client(StorageManagementClient, double, **overrides)


def create_share(double: AzureDouble, group: str, account: str, share: str, location: str) -> Path:
    """A StorageV2 account with one file share, made through the real storage client; returns
    the share's folder on the double."""
    storage = storage_client(double)
    storage.storage_accounts.begin_create(
        group,
        account,
        {"location": location, "kind": "StorageV2", "sku": {"name": "Standard_LRS"}},
    ).result()
    storage.file_shares.create(group, account, share, {})
    return double.share_root(account, share)


def log_analytics_client(double: AzureDouble, **overrides: Any) -> Any:
    from azure.mgmt.loganalytics import LogAnalyticsManagementClient

    return mgmt_client(LogAnalyticsManagementClient, double, **overrides)

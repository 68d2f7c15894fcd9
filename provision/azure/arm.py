"""The Azure SDK clients for one subscription and resource group (the AzureApi of preflight,
plus what deployment and keys need), and the one place Azure SDK errors become ours.

SDK modules are imported inside the methods so that `aca-infer --help` never loads them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from provision.azure.preflight import Environment, Existing, Usage
from provision.azure.scope import Scope
from provision.errors import OperationError, PrerequisiteError

SIGN_IN = (
    "sign in with `az login` (or `azd auth login`), or set a service principal's AZURE_CLIENT_ID, "
    "AZURE_TENANT_ID and AZURE_CLIENT_SECRET with AZURE_TOKEN_CREDENTIALS=EnvironmentCredential"
)


def arm_error_text(error: Any) -> str:
    """ARM's code, message and target of an HttpResponseError (or an ODataV4Format error)."""
    # An exception carries ARM's error in `.error`; an error object is the detail itself.
    detail = (getattr(error, "error", None) or error) if isinstance(error, Exception) else error
    code = getattr(detail, "code", None) or "Error"
    message = getattr(detail, "message", None) or str(error)
    target = getattr(detail, "target", None)
    text = f"{code}: {' '.join(str(message).split())}"
    return f"{text} (target {target})" if target else text


@contextmanager
def azure_errors(action: str) -> Iterator[None]:
    """Translate azure-core's exceptions, once, keeping ARM's code, message and target."""
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ServiceRequestError,
    )

    try:
        yield
    except ClientAuthenticationError as error:
        if getattr(error, "status_code", None) in (401, 403):
            raise OperationError(f"{action}: not authorised: {arm_error_text(error)}") from error
        raise PrerequisiteError(f"no usable Azure credential: {SIGN_IN}") from error
    except HttpResponseError as error:
        raise OperationError(f"{action}: {arm_error_text(error)}") from error
    except ServiceRequestError as error:
        raise OperationError(f"{action}: cannot reach Azure ({error})") from error


class Arm:
    """SDK clients bound to one scope; every call goes through `azure_errors`."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.group = scope.resource_group

    # -- clients -------------------------------------------------------------------------

    @cached_property
    def credential(self) -> Any:
        # Developer sign-ins (az, azd, ...) unless the user chose otherwise.
        os.environ.setdefault("AZURE_TOKEN_CREDENTIALS", "dev")
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()

    def _client(self, factory: Any) -> Any:
        return factory(
            self.credential,
            self.scope.subscription_id,
            base_url=self.scope.arm.url,
            credential_scopes=[self.scope.arm.credential_scope],
        )

    @cached_property
    def resources(self) -> Any:
        from azure.mgmt.resource.resources import ResourceManagementClient

        return self._client(ResourceManagementClient)

    @cached_property
    def deployments(self) -> Any:
        from azure.mgmt.resource.deployments import DeploymentsMgmtClient

        return self._client(DeploymentsMgmtClient)

    @cached_property
    def apps(self) -> Any:
        from azure.mgmt.appcontainers import ContainerAppsAPIClient

        return self._client(ContainerAppsAPIClient)

    @cached_property
    def storage(self) -> Any:
        from azure.mgmt.storage import StorageManagementClient

        return self._client(StorageManagementClient)

    @cached_property
    def logs(self) -> Any:
        from azure.mgmt.loganalytics import LogAnalyticsManagementClient

        return self._client(LogAnalyticsManagementClient)

    def _get_or_none(self, action: str, call: Any, *args: Any) -> Any:
        from azure.core.exceptions import ResourceNotFoundError

        with azure_errors(action):
            try:
                return call(*args)
            except ResourceNotFoundError:
                return None

    # -- preflight (AzureApi) ------------------------------------------------------------

    def check_credential(self) -> None:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            self.credential.get_token(self.scope.arm.credential_scope)
        except ClientAuthenticationError as error:
            raise PrerequisiteError(f"no usable Azure credential: {SIGN_IN}") from error

    def provider_registered(self, namespace: str) -> bool:
        with azure_errors(f"reading resource provider {namespace}"):
            provider = self.resources.providers.get(namespace)
        return str(provider.registration_state or "").lower() == "registered"

    def register_provider(self, namespace: str) -> None:
        with azure_errors(f"registering resource provider {namespace}"):
            self.resources.providers.register(namespace)

    def resource_group(self) -> Existing | None:
        group = self._get_or_none(
            f"reading resource group {self.group}", self.resources.resource_groups.get, self.group
        )
        return None if group is None else Existing(group.location, dict(group.tags or {}))

    def create_resource_group(self, location: str, tags: dict[str, str]) -> None:
        with azure_errors(f"creating resource group {self.group}"):
            self.resources.resource_groups.create_or_update(
                self.group, {"location": location, "tags": tags}
            )

    def storage_account(self, name: str) -> Existing | None:
        account = self._get_or_none(
            f"reading storage account {name}",
            self.storage.storage_accounts.get_properties,
            self.group,
            name,
        )
        return None if account is None else Existing(account.location, dict(account.tags or {}))

    def file_share_exists(self, account: str, share: str) -> bool:
        found = self._get_or_none(
            f"reading file share {share}", self.storage.file_shares.get, self.group, account, share
        )
        return found is not None

    def storage_name_available(self, name: str) -> tuple[bool, str]:
        with azure_errors(f"checking storage account name {name}"):
            answer = self.storage.storage_accounts.check_name_availability(
                {"name": name, "type": "Microsoft.Storage/storageAccounts"}
            )
        return bool(answer.name_available), str(answer.message or answer.reason or "")

    def workspace(self, name: str) -> Existing | None:
        found = self._get_or_none(
            f"reading Log Analytics workspace {name}", self.logs.workspaces.get, self.group, name
        )
        return None if found is None else Existing(found.location, dict(found.tags or {}))

    def environment(self, name: str) -> Environment | None:
        found = self._get_or_none(
            f"reading environment {name}", self.apps.managed_environments.get, self.group, name
        )
        if found is None:
            return None
        properties = getattr(found, "properties", None) or found
        profiles = tuple(
            (str(p.name), str(p.workload_profile_type))
            for p in (getattr(properties, "workload_profiles", None) or [])
        )
        return Environment(found.location, dict(found.tags or {}), profiles)

    def environment_storage_exists(self, environment: str, name: str) -> bool:
        found = self._get_or_none(
            f"reading environment storage {name}",
            self.apps.managed_environments_storages.get,
            self.group,
            environment,
            name,
        )
        return found is not None

    def app(self, name: str) -> Existing | None:
        found = self._get_or_none(
            f"reading container app {name}", self.apps.container_apps.get, self.group, name
        )
        return None if found is None else Existing(found.location, dict(found.tags or {}))

    def app_secrets(self, name: str) -> dict[str, str]:
        with azure_errors(f"reading the secrets of container app {name}"):
            secrets = self.apps.container_apps.list_secrets(self.group, name)
        return {str(s.name): str(s.value) for s in secrets.value if s.value is not None}

    def offered_profile_types(self, location: str) -> set[str]:
        with azure_errors(f"listing the workload profiles offered in {location}"):
            return {str(p.name) for p in self.apps.available_workload_profiles.get(location)}

    def usages(self, location: str) -> list[Usage]:
        with azure_errors(f"reading Container Apps quotas in {location}"):
            return [
                Usage(str(u.name.value), float(u.current_value), float(u.limit))
                for u in self.apps.usages.list(location)
            ]

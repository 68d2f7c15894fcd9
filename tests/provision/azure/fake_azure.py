"""An in-memory AzureApi for preflight's decisions (the SDK adapter is tested via the double)."""

from __future__ import annotations

from dataclasses import dataclass, field

from provision.azure.preflight import PROVIDERS, Environment, Existing, Usage
from provision.errors import OperationError, PrerequisiteError


@dataclass
class FakeAzure:
    signed_in: bool = True
    registered: set[str] = field(default_factory=lambda: set(PROVIDERS))
    group: Existing | None = None
    accounts: dict[str, Existing] = field(default_factory=dict)
    shares: set[tuple[str, str]] = field(default_factory=set)
    taken_names: set[str] = field(default_factory=set)
    workspaces: dict[str, Existing] = field(default_factory=dict)
    environments: dict[str, Environment] = field(default_factory=dict)
    environment_storages: set[tuple[str, str]] = field(default_factory=set)
    apps: dict[str, Existing] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    offered: dict[str, set[str]] = field(default_factory=dict)
    quota: dict[str, list[Usage]] = field(default_factory=dict)
    registrations: list[str] = field(default_factory=list)

    def check_credential(self) -> None:
        if not self.signed_in:
            raise PrerequisiteError("no usable Azure credential: sign in with `az login`")

    def provider_registered(self, namespace: str) -> bool:
        return namespace in self.registered

    def register_provider(self, namespace: str) -> None:
        self.registrations.append(namespace)
        self.registered.add(namespace)

    def resource_group(self) -> Existing | None:
        return self.group

    def storage_account(self, name: str) -> Existing | None:
        return self.accounts.get(name)

    def file_share_exists(self, account: str, share: str) -> bool:
        return (account, share) in self.shares

    def storage_name_available(self, name: str) -> tuple[bool, str]:
        if name in self.taken_names:
            return False, f"The storage account named {name} is already taken."
        return True, ""

    def workspace(self, name: str) -> Existing | None:
        return self.workspaces.get(name)

    def environment(self, name: str) -> Environment | None:
        return self.environments.get(name)

    def environment_storage_exists(self, environment: str, name: str) -> bool:
        return (environment, name) in self.environment_storages

    def app(self, name: str) -> Existing | None:
        return self.apps.get(name)

    def app_secrets(self, name: str) -> dict[str, str]:
        return self.secrets.get(name, {})

    def offered_profile_types(self, location: str) -> set[str]:
        if location not in self.offered:
            raise OperationError(f"location {location} is not available to this subscription")
        return self.offered[location]

    def usages(self, location: str) -> list[Usage]:
        return self.quota.get(location, [])

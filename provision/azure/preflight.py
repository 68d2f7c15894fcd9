"""Checks with the SDK before anything is created, and the decisions they lead to.

Existing resources are referenced (`useExisting*`), never re-PUT: a fine-tuning run's storage
account, share, environment and workspace stay exactly as they are. Each failed check raises
one error (exit 2, 3 or 4) before the first write; the only writes here are provider
registrations, which change no resource.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from provision.azure.profiles import BY_SIZE, CPU_ONLY, PROFILE_TYPES, nearby_regions
from provision.azure.request import ProvisionRequest
from provision.errors import InputError, OperationError

PROVIDERS = ("Microsoft.App", "Microsoft.Storage", "Microsoft.OperationalInsights")
CREATED_BY_TAG = "created-by"
CREATED_BY = "aca-infer"
QUOTA_HELP = "https://learn.microsoft.com/azure/container-apps/quotas"


@dataclass(frozen=True)
class Existing:
    location: str
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Environment(Existing):
    profiles: tuple[tuple[str, str], ...] = ()  # (name, type)


@dataclass(frozen=True)
class Usage:
    name: str
    current: float
    limit: float


class AzureApi(Protocol):
    """What preflight asks Azure, for one subscription and resource group."""

    def check_credential(self) -> None: ...
    def provider_registered(self, namespace: str) -> bool: ...
    def register_provider(self, namespace: str) -> None: ...
    def resource_group(self) -> Existing | None: ...
    def storage_account(self, name: str) -> Existing | None: ...
    def file_share_exists(self, account: str, share: str) -> bool: ...
    def storage_name_available(self, name: str) -> tuple[bool, str]: ...
    def workspace(self, name: str) -> Existing | None: ...
    def environment(self, name: str) -> Environment | None: ...
    def environment_storage_exists(self, environment: str, name: str) -> bool: ...
    def app(self, name: str) -> Existing | None: ...
    def app_secrets(self, name: str) -> dict[str, str]: ...
    def offered_profile_types(self, location: str) -> set[str]: ...
    def usages(self, location: str) -> list[Usage]: ...


@dataclass(frozen=True)
class Preflight:
    """What the deployment needs beyond the request: switches, profile, location, who made what."""

    overrides: Mapping[str, Any]
    location: str
    group_exists: bool
    app_exists: bool
    reused: tuple[str, ...]
    created: tuple[str, ...]
    updated: tuple[str, ...]  # made by an earlier provision: the template manages them again
    notes: tuple[str, ...]


def run_preflight(
    api: AzureApi, request: ProvisionRequest, progress: Callable[[str], None]
) -> Preflight:
    api.check_credential()
    for namespace in PROVIDERS:
        if not api.provider_registered(namespace):
            progress(f"registering resource provider {namespace} (first use in this subscription)")
            api.register_provider(namespace)

    value = request.value
    group = api.resource_group()
    location = _location(request, group)
    overrides: dict[str, Any] = {"location": location}
    reused: list[str] = []
    created: list[str] = []
    updated: list[str] = []
    notes: list[str] = []

    account, share = value("storageAccountName"), value("fileShareName")
    existing_account = api.storage_account(account)
    if _ours(existing_account):
        overrides["useExistingStorageAccount"] = False
        updated += [f"storage account {account}", f"file share {share}"]
    elif existing_account is not None:
        if not api.file_share_exists(account, share):
            raise InputError(
                f"fileShareName {share!r}: storage account {account!r} exists but has no such "
                "share; name one of its shares, or a new storageAccountName"
            )
        overrides["useExistingStorageAccount"] = True
        reused += [f"storage account {account}", f"file share {share}"]
    else:
        available, reason = api.storage_name_available(account)
        if not available:
            raise InputError(
                f"storageAccountName {account!r}: {reason or 'the name is taken'} (storage "
                "account names are global); choose another with --set storageAccountName=..."
            )
        overrides["useExistingStorageAccount"] = False
        created += [f"storage account {account}", f"file share {share}"]

    environment_name = value("acaEnvironmentName")
    environment = api.environment(environment_name)
    workspace = value("acaLogAnalyticsName")
    if environment is not None and not _ours(environment):
        overrides.update(_reuse_environment(api, request, environment, location))
        overrides["location"] = environment.location
        reused += [
            f"environment {environment_name}",
            f"environment storage {value('acaEnvironmentStorageName')}",
        ]
        overrides["useExistingLogAnalytics"] = api.workspace(workspace) is not None
    else:
        if environment is None:
            _check_profile_offered(api, request.profile_type, location)
        overrides["useExistingEnvironment"] = False
        (updated if environment else created).append(f"environment {environment_name}")
        existing_workspace = api.workspace(workspace)
        if _ours(existing_workspace):
            overrides["useExistingLogAnalytics"] = False
            updated.append(f"Log Analytics workspace {workspace}")
        elif existing_workspace is not None:
            overrides["useExistingLogAnalytics"] = True
            reused.append(f"Log Analytics workspace {workspace}")
        else:
            overrides["useExistingLogAnalytics"] = False
            created.append(f"Log Analytics workspace {workspace}")

    profile_type = str(overrides.get("gpuProfileType", request.profile_type))
    app_name = value("acaAppName")
    app = api.app(app_name)
    reused_dedicated = environment is not None and PROFILE_TYPES[profile_type].dedicated
    if app is None and not reused_dedicated:  # a dedicated profile's nodes already hold quota
        _check_quota(api, profile_type, overrides["location"])
    if app is None:
        created.append(f"container app {app_name}")
    elif not _ours(app):
        notes.append(f"container app {app_name} exists and was not made by aca-infer: replacing it")
    else:
        updated.append(f"container app {app_name}")

    tags = dict(value("tags") or {})
    tags[CREATED_BY_TAG] = CREATED_BY  # only created resources get tags: reused ones are not PUT
    overrides["tags"] = tags
    return Preflight(
        overrides=overrides,
        location=str(overrides["location"]),
        group_exists=group is not None,
        app_exists=app is not None,
        reused=tuple(reused),
        created=tuple(created),
        updated=tuple(updated),
        notes=tuple(notes),
    )


def _ours(resource: Existing | None) -> bool:
    """Made by an earlier provision: managed by the template again, not merely referenced."""
    return resource is not None and resource.tags.get(CREATED_BY_TAG) == CREATED_BY


def _location(request: ProvisionRequest, group: Existing | None) -> str:
    if request.scope.location:
        return request.scope.location
    if group is not None:
        return group.location
    raise InputError(
        f"resource group {request.scope.resource_group!r} does not exist: give --location "
        "(or AZURE_LOCATION) to create it there"
    )


def _reuse_environment(
    api: AzureApi, request: ProvisionRequest, environment: Environment, location: str
) -> dict[str, Any]:
    """The existing environment's GPU profile, found by type and used by its own name."""
    name = request.value("acaEnvironmentName")
    storage = request.value("acaEnvironmentStorageName")
    if not api.environment_storage_exists(name, storage):
        raise InputError(
            f"acaEnvironmentStorageName {storage!r}: environment {name!r} has no such storage "
            "entry (aca-infer never modifies an existing environment); name its entry for the "
            "share, or a new acaEnvironmentName"
        )
    if request.given_by_user("location") and location != environment.location:
        raise InputError(
            f"location {location!r}: environment {name!r} is in {environment.location!r}, and an "
            "app runs in its environment's location; drop location or use a new environment"
        )
    gpu_profiles = [(n, t) for n, t in environment.profiles if t != CPU_ONLY]
    wanted = request.profile_type if request.given_by_user("gpuProfileType") else None
    if wanted == CPU_ONLY:
        return {"useExistingEnvironment": True, "gpuProfileType": CPU_ONLY}
    if wanted is None and gpu_profiles:
        profile_name, profile_type = gpu_profiles[0]
        return {
            "useExistingEnvironment": True,
            "workloadProfileName": profile_name,
            "gpuProfileType": profile_type,
        }
    wanted = wanted or request.profile_type
    for profile_name, profile_type in gpu_profiles:
        if profile_type == wanted:
            return {
                "useExistingEnvironment": True,
                "workloadProfileName": profile_name,
                "gpuProfileType": profile_type,
            }
    has = ", ".join(f"{n} ({t})" for n, t in gpu_profiles) or "no GPU profile"
    if PROFILE_TYPES[wanted].dedicated:
        raise InputError(
            f"gpuProfileType {wanted!r}: environment {name!r} has {has}, and a dedicated GPU "
            "profile can only be added when an environment is created; use a type it has, a "
            "serverless GPU type, or a new environment with --set acaEnvironmentName=<new name>"
        )
    raise InputError(
        f"gpuProfileType {wanted!r}: environment {name!r} has {has} and aca-infer never modifies "
        f"an existing environment; add it with `az containerapp env workload-profile add "
        f"-g {request.scope.resource_group} -n {name} --workload-profile-name gpu "
        f"--workload-profile-type {wanted}`, or use a new environment with "
        "--set acaEnvironmentName=<new name>"
    )


def _check_profile_offered(api: AzureApi, profile_type: str, location: str) -> None:
    if profile_type == CPU_ONLY or profile_type in api.offered_profile_types(location):
        return
    offering: list[str] = []
    for region in nearby_regions(location):
        if len(offering) == 3:
            break
        try:
            if profile_type in api.offered_profile_types(region):
                offering.append(region)
        except OperationError:
            continue  # a region this subscription cannot use: not a candidate
    where = ", ".join(offering) if offering else "no nearby region we know of"
    raise InputError(
        f"gpuProfileType {profile_type!r} is not offered in {location}; regions that offer it: "
        f"{where} (set --location, with a new resource group, or another gpuProfileType)"
    )


def _gpu_quota(usages: list[Usage], profile_type: str) -> Usage | None:
    profile = PROFILE_TYPES[profile_type]
    kind = "dedicated" if profile.dedicated else "consumption"
    matches = [
        u
        for u in usages
        if profile.quota_hint.lower() in u.name.lower() and "gpu" in u.name.lower()
    ]
    preferred = [usage for usage in matches if kind in usage.name.lower()]
    found = preferred or matches
    return found[0] if found else None


def _left(usage: Usage) -> float:
    return usage.limit - usage.current


def _check_quota(api: AzureApi, profile_type: str, location: str) -> None:
    profile = PROFILE_TYPES[profile_type]
    if not profile.gpus:
        return
    usages = api.usages(location)
    usage = _gpu_quota(usages, profile_type)
    if usage is None or _left(usage) >= profile.gpus:
        return
    fitting = [
        other
        for other in BY_SIZE
        if other != profile_type
        and PROFILE_TYPES[other].gpus <= profile.gpus
        and (quota := _gpu_quota(usages, other)) is not None
        and _left(quota) >= PROFILE_TYPES[other].gpus
    ]
    instead = f" or use --set gpuProfileType={fitting[0]}" if fitting else ""
    raise OperationError(
        f"GPU quota {usage.name!r} in {location}: {max(_left(usage), 0):g} of {usage.limit:g} "
        f"left, {profile_type} needs {profile.gpus}; request more ({QUOTA_HELP}){instead}"
    )

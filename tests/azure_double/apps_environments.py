"""Managed environments of the double's Microsoft.App: workload profiles with ACA's rules,
environment storages (Azure Files, key checked against the storage account), and per location the
available workload profile types and usages, with the `config` switches that take a profile
type out of a location (`unavailable_profiles`) or set quota limits (`quota`).

ACA's rules (DESIGN.md "Azure facts"): every environment has the `Consumption` profile;
serverless GPU profiles take no node counts (ACA's WorkloadProfilePropertyNotSupported);
dedicated GPU profiles need them and can only be added when the environment is created.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.azure_double.apps_common import (
    APP_TYPE,
    ENVIRONMENT_TYPE,
    MODELS,
    NAMESPACE,
    Invalid,
    bad,
    merge_patch,
    missing,
    not_found,
    start_operation,
    without,
)
from tests.azure_double.http import Request, Response, arm_error
from tests.azure_double.models import body_problem, model_class
from tests.azure_double.replicas import random_suffix

if TYPE_CHECKING:
    from tests.azure_double.server import AzureDouble

ENVIRONMENT_READ_ONLY = (
    "provisioningState",
    "deploymentErrors",
    "defaultDomain",
    "staticIp",
    "eventStreamEndpoint",
)
SERVERLESS_GPU = {"Consumption-GPU-NC8as-T4", "Consumption-GPU-NC24-A100"}
DEDICATED_GPU = {"NC24-A100", "NC48-A100", "NC96-A100"}


@dataclass(frozen=True)
class ProfileType:
    name: str
    category: str
    cores: int
    memory_gib: int
    gpus: int
    display_name: str
    quota_usage: str  # the usage (per location) that this profile's capacity counts against


PROFILE_TYPES = {
    p.name: p
    for p in (
        ProfileType(
            "Consumption",
            "Consumption",
            4,
            8,
            0,
            "Consumption",
            "ManagedEnvironmentConsumptionCores",
        ),
        ProfileType(
            "D4",
            "GeneralPurpose",
            4,
            16,
            0,
            "Dedicated-D4",
            "ManagedEnvironmentGeneralPurposeCores",
        ),
        ProfileType(
            "D8",
            "GeneralPurpose",
            8,
            32,
            0,
            "Dedicated-D8",
            "ManagedEnvironmentGeneralPurposeCores",
        ),
        ProfileType(
            "D16",
            "GeneralPurpose",
            16,
            64,
            0,
            "Dedicated-D16",
            "ManagedEnvironmentGeneralPurposeCores",
        ),
        ProfileType(
            "E4",
            "MemoryOptimized",
            4,
            32,
            0,
            "Dedicated-E4",
            "ManagedEnvironmentMemoryOptimizedCores",
        ),
        ProfileType(
            "Consumption-GPU-NC8as-T4",
            "GPU",
            8,
            56,
            1,
            "Consumption-GPU-NC8as-T4",
            "ManagedEnvironmentConsumptionT4Gpus",
        ),
        ProfileType(
            "Consumption-GPU-NC24-A100",
            "GPU",
            24,
            220,
            1,
            "Consumption-GPU-NC24-A100",
            "ManagedEnvironmentConsumptionA100Gpus",
        ),
        ProfileType(
            "NC24-A100",
            "GPU",
            24,
            220,
            1,
            "Dedicated-NC24-A100",
            "ManagedEnvironmentDedicatedA100Gpus",
        ),
        ProfileType(
            "NC48-A100",
            "GPU",
            48,
            440,
            2,
            "Dedicated-NC48-A100",
            "ManagedEnvironmentDedicatedA100Gpus",
        ),
        ProfileType(
            "NC96-A100",
            "GPU",
            96,
            880,
            4,
            "Dedicated-NC96-A100",
            "ManagedEnvironmentDedicatedA100Gpus",
        ),
    )
}
# Default limits per location (a fresh subscription's; `config.quota[location]` overrides).
DEFAULT_QUOTA = {
    "ManagedEnvironmentCount": 15,
    "ManagedEnvironmentConsumptionCores": 100,
    "ManagedEnvironmentGeneralPurposeCores": 100,
    "ManagedEnvironmentMemoryOptimizedCores": 100,
    "ManagedEnvironmentConsumptionT4Gpus": 4,
    "ManagedEnvironmentConsumptionA100Gpus": 4,
    "ManagedEnvironmentDedicatedA100Gpus": 4,
}
PROFILE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,14}$")


class Environments:
    """Managed environments, their storages, and the location-level reads."""

    def __init__(self, double: AzureDouble, event_stream_base: Callable[[], str]) -> None:
        self.double = double
        self.store = double.store
        self._event_stream_base = event_stream_base
        # Environment storage id -> the account key it was given (write-only, never returned).
        self._storage_keys: dict[str, str] = {}

    def _quota(self, location: str) -> dict[str, int]:
        overrides = (getattr(self.double.config, "quota", {}) or {}).get(location.lower(), {})
        return {**DEFAULT_QUOTA, **overrides}

    def _unavailable(self, location: str) -> set[str]:
        table = getattr(self.double.config, "unavailable_profiles", {}) or {}
        return {t.lower() for t in table.get(location.lower(), [])}

    def list_all(self, prefix: str) -> Response:
        items = [
            r
            for r in self.store.list(prefix)
            if str(r.get("type", "")).lower() == ENVIRONMENT_TYPE.lower()
        ]
        return Response.of_json(200, {"value": items})

    # ---- locations -------------------------------------------------------------------------
    def available_profiles(self, sub: str, location: str) -> Response:
        unavailable = self._unavailable(location)
        value = []
        for profile in PROFILE_TYPES.values():
            if profile.name.lower() in unavailable:
                continue
            value.append(
                {
                    "id": f"/subscriptions/{sub}/providers/{NAMESPACE}/locations/{location}"
                    f"/availableManagedEnvironmentsWorkloadProfileTypes/{profile.name}",
                    "name": profile.name,
                    "type": f"{NAMESPACE}/locations/"
                    "availableManagedEnvironmentsWorkloadProfileTypes",
                    "location": location,
                    "properties": {
                        "category": profile.category,
                        "applicability": "LocationDefault"
                        if profile.name == "Consumption"
                        else "Custom",
                        "cores": profile.cores,
                        "memoryGiB": profile.memory_gib,
                        "gpus": profile.gpus,
                        "displayName": profile.display_name,
                    },
                }
            )
        return Response.of_json(200, {"value": value})

    def _usage_counts(
        self, sub: str, location: str, environments: list[dict[str, Any]] | None = None
    ) -> dict[str, int]:
        envs = environments if environments is not None else self._environments_in(sub, location)
        counts = dict.fromkeys(DEFAULT_QUOTA, 0)
        counts["ManagedEnvironmentCount"] = len(envs)
        for env in envs:
            for profile in env.get("properties", {}).get("workloadProfiles", []):
                usage, amount = self._profile_demand(profile)
                if usage and profile.get("workloadProfileType") != "Consumption":
                    counts[usage] = counts.get(usage, 0) + amount
        return counts

    def _profile_demand(self, profile: dict[str, Any]) -> tuple[str | None, int]:
        """What one profile takes from its quota: a serverless GPU profile one GPU (enough for
        one replica), a dedicated one its nodes' GPUs (or cores) at maximumCount."""
        kind = PROFILE_TYPES.get(str(profile.get("workloadProfileType")))
        if kind is None:
            return None, 0
        nodes = int(profile.get("maximumCount") or 1)
        per_node = kind.gpus if kind.gpus else kind.cores
        return kind.quota_usage, per_node * nodes

    def _environments_in(self, sub: str, location: str) -> list[dict[str, Any]]:
        return [
            r
            for r in self.store.list(f"/subscriptions/{sub}/")
            if str(r.get("type", "")).lower() == ENVIRONMENT_TYPE.lower()
            and str(r.get("location", "")).lower() == location.lower()
        ]

    def location_usages(self, sub: str, location: str) -> Response:
        limits = self._quota(location)
        counts = self._usage_counts(sub, location)
        return Response.of_json(
            200, {"value": [self._usage(n, counts.get(n, 0), limit) for n, limit in limits.items()]}
        )

    @staticmethod
    def _usage(name: str, current: float, limit: float) -> dict[str, Any]:
        localized = re.sub(r"(?<!^)(?=[A-Z])", " ", name)
        return {
            "unit": "Count",
            "currentValue": current,
            "limit": limit,
            "name": {"value": name, "localizedValue": localized},
        }

    # ---- managed environments --------------------------------------------------------------
    def environments(
        self, request: Request, scope: str, rest: list[str], rest_lower: list[str]
    ) -> Response:
        method = request.method
        resource_group = scope.split("/")[4]
        if len(rest) == 1:
            if method == "GET":
                return self.list_all(scope + "/managedEnvironments/")
            return not_found(request)
        env_id = f"{scope}/managedEnvironments/{rest[1]}"
        existing = self.store.get(env_id)
        if len(rest) == 2:
            if method == "PUT":
                return self._put_environment(request, env_id, rest[1], existing)
            if method == "PATCH":
                if existing is None:
                    return missing("managedEnvironments", rest[1], resource_group)
                merged = merge_patch(existing, request.json() or {})
                return self._put_environment(request, env_id, rest[1], existing, merged)
            if existing is None:
                if method == "DELETE":
                    return Response(204)
                return missing("managedEnvironments", rest[1], resource_group)
            if method == "GET":
                return Response.of_json(200, existing)
            if method == "DELETE":
                return self._delete_environment(request, env_id, existing)
            return not_found(request)
        if existing is None:
            return missing("managedEnvironments", rest[1], resource_group)
        if rest_lower[2] == "storages":
            return self._storages(request, env_id, existing, rest[3:])
        if rest_lower[2] == "usages" and len(rest) == 3 and method == "GET":
            profiles = {"properties": existing.get("properties", {})}
            counts = self._usage_counts("", "", [profiles])
            limits = self._quota(existing.get("location", ""))
            value = [
                self._usage(n, counts.get(n, 0), limits[n])
                for n in limits
                if n != "ManagedEnvironmentCount"
            ]
            return Response.of_json(200, {"value": value})
        return not_found(request)

    def _put_environment(
        self,
        request: Request,
        env_id: str,
        name: str,
        existing: dict[str, Any] | None,
        body: Any = None,
    ) -> Response:
        body = without(request.json() if body is None else body, ENVIRONMENT_READ_ONLY)
        problem = body_problem(model_class(f"{MODELS}.ManagedEnvironment"), body)
        if problem is not None:
            return problem
        location = str(body.get("location") or (existing or {}).get("location") or "")
        if not location:
            return bad("LocationRequired", "The location property is required for this definition.")
        if existing is not None and existing.get("location", "").lower() != location.lower():
            return bad(
                "LocationNotAvailableForResourceType",
                f"The environment '{name}' exists in '{existing['location']}'; its location "
                "cannot change.",
            )
        properties = copy.deepcopy(body.get("properties") or {})
        profiles = self._checked_profiles(properties.get("workloadProfiles"), location, existing)
        properties["workloadProfiles"] = profiles
        if existing is None:
            self._check_quota(env_id.split("/")[2], location, profiles)
        logs = properties.get("appLogsConfiguration") or {}
        analytics = logs.get("logAnalyticsConfiguration")
        if isinstance(analytics, dict):
            analytics.pop("sharedKey", None)  # write-only: never returned
        kept = (existing or {}).get("properties", {})
        properties.update(
            {
                "provisioningState": "Succeeded",
                "defaultDomain": kept.get("defaultDomain")
                or f"{random_suffix(10)}.{location.lower()}.azurecontainerapps.io",
                "staticIp": "127.0.0.1",
                "eventStreamEndpoint": self._event_stream_base(),
            }
        )
        resource = {
            "id": env_id,
            "name": name,
            "type": ENVIRONMENT_TYPE,
            "location": location,
            "tags": body.get("tags", (existing or {}).get("tags", {})),
            "properties": properties,
        }
        self.store.put(env_id, resource)
        operation = start_operation(self.double, request, env_id, location, lambda _op: resource)
        return self.double.operations.accepted(operation, 200 if existing else 201, resource)

    def _checked_profiles(
        self, profiles: Any, location: str, existing: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        profiles = copy.deepcopy(profiles or [])
        if not isinstance(profiles, list):
            raise Invalid(bad("InvalidRequestContent", "workloadProfiles must be an array."))
        unavailable = self._unavailable(location)
        names: set[str] = set()
        for profile in profiles:
            name = str(profile.get("name", ""))
            kind = str(profile.get("workloadProfileType", ""))
            if not PROFILE_NAME.match(name):
                raise Invalid(
                    bad(
                        "WorkloadProfileNameInvalid",
                        f"Workload profile name '{name}' is invalid: 1 to 15 letters, digits and "
                        "hyphens, starting with a letter.",
                    )
                )
            if name.lower() in names:
                raise Invalid(
                    bad(
                        "WorkloadProfileNameDuplicated",
                        f"Workload profile name '{name}' is used twice.",
                    )
                )
            names.add(name.lower())
            if kind not in PROFILE_TYPES:
                raise Invalid(
                    bad("WorkloadProfileInvalidType", f"Workload profile type '{kind}' is invalid.")
                )
            if kind.lower() in unavailable:
                raise Invalid(
                    bad(
                        "WorkloadProfileInvalidType",
                        f"Workload profile type '{kind}' is not supported in location "
                        f"'{location}'.",
                    )
                )
            if kind == "Consumption" or kind in SERVERLESS_GPU:
                for key, label in (
                    ("minimumCount", "MinimumCount"),
                    ("maximumCount", "MaximumCount"),
                ):
                    if profile.get(key) is not None:
                        raise Invalid(
                            bad(
                                "WorkloadProfilePropertyNotSupported",
                                f"Workload Profile property '{label}' is not supported for "
                                f"{kind.replace('-', '_')}",
                            )
                        )
            else:
                low, high = profile.get("minimumCount"), profile.get("maximumCount")
                if high is None or low is None or not 0 <= int(low) <= int(high):
                    raise Invalid(
                        bad(
                            "WorkloadProfileCountInvalid",
                            f"Workload profile '{name}' of type '{kind}' needs minimumCount and "
                            "maximumCount with 0 <= minimumCount <= maximumCount.",
                        )
                    )
        if not any(p.get("workloadProfileType") == "Consumption" for p in profiles):
            # Every workload-profiles environment has the Consumption profile.
            profiles.insert(0, {"name": "Consumption", "workloadProfileType": "Consumption"})
        if existing is not None:
            before = {
                p["name"].lower(): p
                for p in existing.get("properties", {}).get("workloadProfiles", [])
            }
            for profile in profiles:
                kind = profile["workloadProfileType"]
                if kind in DEDICATED_GPU and profile["name"].lower() not in before:
                    raise Invalid(
                        bad(
                            "ManagedEnvironmentDedicatedProfileNotAddable",
                            f"Workload profile '{profile['name']}' of type '{kind}': dedicated GPU "
                            "profiles can only be added when the environment is created. Create a "
                            "new environment, or use a serverless GPU profile "
                            "(Consumption-GPU-NC8as-T4, Consumption-GPU-NC24-A100).",
                        )
                    )
        return list(profiles)

    def _check_quota(self, sub: str, location: str, profiles: list[dict[str, Any]]) -> None:
        limits = self._quota(location)
        counts = self._usage_counts(sub, location)
        if counts["ManagedEnvironmentCount"] + 1 > limits["ManagedEnvironmentCount"]:
            raise Invalid(
                bad(
                    "ManagedEnvironmentQuotaExceeded",
                    "The subscription has reached its limit of "
                    f"{limits['ManagedEnvironmentCount']} "
                    f"managed environments in location '{location}'.",
                )
            )
        for profile in profiles:
            usage, amount = self._profile_demand(profile)
            if usage is None or profile.get("workloadProfileType") == "Consumption":
                continue
            if counts.get(usage, 0) + amount > limits.get(usage, 0):
                raise Invalid(
                    bad(
                        "ManagedEnvironmentQuotaExceeded",
                        f"Workload profile '{profile['name']}' of type "
                        f"'{profile['workloadProfileType']}' needs {amount} of quota '{usage}' in "
                        f"location '{location}', where {counts.get(usage, 0)} of "
                        f"{limits.get(usage, 0)} are in use. Request more quota or pick another "
                        "location or profile type.",
                    )
                )

    def _delete_environment(
        self, request: Request, env_id: str, existing: dict[str, Any]
    ) -> Response:
        apps = [
            a
            for a in self.store.list(env_id.rsplit("/providers/", 1)[0] + "/")
            if str(a.get("type", "")).lower() == APP_TYPE.lower()
            and str(a.get("properties", {}).get("managedEnvironmentId", "")).lower()
            == env_id.lower()
        ]
        if apps:
            return arm_error(
                409,
                "ManagedEnvironmentHasContainerApps",
                f"The environment '{existing['name']}' still holds container apps "
                f"({', '.join(a['name'] for a in apps)}); delete them first.",
            )
        self.store.delete(env_id)
        for key in [k for k in self._storage_keys if k.lower().startswith(env_id.lower() + "/")]:
            del self._storage_keys[key]
        operation = start_operation(
            self.double, request, env_id, existing["location"], lambda _op: None
        )
        return self.double.operations.accepted(operation, 202)

    # ---- environment storages --------------------------------------------------------------
    def _storages(
        self, request: Request, env_id: str, env: dict[str, Any], rest: list[str]
    ) -> Response:
        method = request.method
        if not rest:
            if method != "GET":
                return not_found(request)
            items = self.store.list(env_id + "/storages/")
            return Response.of_json(200, {"value": items})
        name = rest[0]
        storage_id = f"{env_id}/storages/{name}"
        existing = self.store.get(storage_id)
        if method == "GET":
            if existing is None:
                return arm_error(
                    404, "ResourceNotFound", f"Environment storage '{name}' was not found."
                )
            return Response.of_json(200, existing)
        if method == "DELETE":
            self.store.delete(storage_id)
            self._storage_keys.pop(storage_id.lower(), None)
            return Response(200 if existing else 204)
        if method != "PUT":
            return not_found(request)
        body = request.json()
        problem = body_problem(model_class(f"{MODELS}.ManagedEnvironmentStorage"), body)
        if problem is not None:
            return problem
        azure_file = dict((body.get("properties") or {}).get("azureFile") or {})
        for key in ("accountName", "accountKey", "shareName", "accessMode"):
            if not azure_file.get(key):
                return bad(
                    "InvalidRequestContent",
                    f"properties.azureFile.{key} is required for an Azure Files storage.",
                    target=f"properties.azureFile.{key}",
                )
        if azure_file["accessMode"] not in ("ReadOnly", "ReadWrite"):
            return bad("InvalidRequestContent", "accessMode must be ReadOnly or ReadWrite.")
        try:
            keys = self.double.storage_account_keys(azure_file["accountName"])
        except KeyError:
            return bad(
                "ManagedEnvironmentStorageAccountNotFound",
                f"Storage account '{azure_file['accountName']}' was not found.",
            )
        if azure_file["accountKey"] not in keys:
            return bad(
                "ManagedEnvironmentStorageKeyInvalid",
                f"The account key given for storage account '{azure_file['accountName']}' is not "
                "one of its keys.",
            )
        self._storage_keys[storage_id.lower()] = azure_file.pop("accountKey")
        resource = {
            "id": storage_id,
            "name": name,
            "type": f"{ENVIRONMENT_TYPE}/storages",
            "properties": {"azureFile": azure_file},
        }
        self.store.put(storage_id, resource)
        return Response.of_json(200, resource)

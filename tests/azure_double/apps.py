"""Microsoft.App in the double: managed environments (workload profiles, storages), available
workload profile types and usages per location, container apps, revisions and replicas.

Container apps really run: a revision's replicas are processes (replicas.py), each app has its
own HTTPS ingress listener (ingress.py; `configuration.ingress.fqdn` = `127.0.0.1:<port>`), and
revisions roll out, restart, scale to zero and fail as ACA's do (apps_runtime.py). The console
of each replica is served by the log stream (apps_logstream.py), the way `az containerapp logs
show` reads it.

Error codes are ACA's where its answers are known (WorkloadProfilePropertyNotSupported,
WorkloadProfileInvalidType, ContainerAppOperationError "Failed to provision revision ...
Operation expired."); where ACA's exact code is not documented, the double's code says what
is wrong (`ManagedEnvironmentDedicatedProfileNotAddable`, `ManagedEnvironmentQuotaExceeded`,
`ManagedEnvironmentStorageKeyInvalid`, ...), always with ARM's envelope and a 4xx status.

Domain switches read from `double.config`: `unavailable_profiles[location]` (types not offered),
`quota[location][usage name]` (limits), `replica_crash` (replicas exit at start),
`scale_to_zero_idle_s`, and in `extra`: `probe_time_scale` (startup budgets are the template's
probe budget times this; default 1.0), `cold_start_wait_s` (how long a request waits for a
replica; default: the startup budget), `replica_stop_grace_s` (SIGTERM to SIGKILL, default 30).
"""

from __future__ import annotations

import copy
import datetime
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.azure_double import api_versions
from tests.azure_double.apps_runtime import AppRuntime
from tests.azure_double.http import Request, Response, arm_error, require_api_version
from tests.azure_double.ingress import IngressProxy
from tests.azure_double.lro import OperationFailed, Operations
from tests.azure_double.replicas import (
    CommandNotRunnable,
    Probe,
    ReplicaSpec,
    python_argv,
    random_suffix,
)

NAMESPACE = "Microsoft.App"
ENVIRONMENT_TYPE = "Microsoft.App/managedEnvironments"
APP_TYPE = "Microsoft.App/containerApps"
PROBE_INTERVAL_S = 0.05

# Workload profile types: (category, cores, memory GiB, gpus, display name, usage name, gpus per node).
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
APP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
REVISION_SUFFIX = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
PROBE_LIMITS = {"initialDelaySeconds": 60, "failureThreshold": 10, "periodSeconds": 240}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def _bad(code: str, message: str, target: str | None = None) -> Response:
    return arm_error(400, code, message, target)


class _Invalid(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__(response.body.decode(errors="replace"))
        self.response = response


def _merge_patch(target: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7396): objects merge, anything else replaces, null deletes."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge_patch(merged.get(key), value)
    return merged


@dataclass
class _App:
    id: str
    runtime: AppRuntime
    ingress: IngressProxy | None
    operation_done: threading.Event | None = None


class AppsProvider:
    """The Microsoft.App resource provider of one AzureDouble."""

    def __init__(self, double: Any) -> None:
        self.double = double
        self.store = double.store
        self._lock = threading.RLock()
        self._apps: dict[str, _App] = {}  # by lower-cased app id
        self._secrets: dict[str, dict[str, str]] = {}  # app id -> secret name -> value
        self._storage_keys: dict[str, str] = {}  # environment storage id -> account key
        self._auth_tokens: dict[str, str] = {}  # token -> app id (log stream)
        self._runtime_root = Path(double.state_dir) / "replicas"
        self._runtime_root.mkdir(parents=True, exist_ok=True)
        self.logstream: Any = None  # set by install()

    # ---- config ----------------------------------------------------------------------------
    def _extra(self, name: str, default: float) -> float:
        extra = getattr(self.double.config, "extra", {}) or {}
        return float(extra.get(name, default))

    def _idle_seconds(self) -> float:
        return float(getattr(self.double.config, "scale_to_zero_idle_s", 300.0))

    def _quota(self, location: str) -> dict[str, int]:
        overrides = (getattr(self.double.config, "quota", {}) or {}).get(location.lower(), {})
        return {**DEFAULT_QUOTA, **overrides}

    def _unavailable(self, location: str) -> set[str]:
        table = getattr(self.double.config, "unavailable_profiles", {}) or {}
        return {t.lower() for t in table.get(location.lower(), [])}

    # ---- dispatch --------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        problem = require_api_version(request, set(api_versions.accepted(NAMESPACE)))
        if problem is not None:
            return problem
        parts = [p for p in request.path.split("/") if p]
        try:
            return self._route(request, parts)
        except _Invalid as invalid:
            return invalid.response

    def _route(self, request: Request, parts: list[str]) -> Response:
        lower = [p.lower() for p in parts]
        method = request.method
        # /subscriptions/{s}/providers/Microsoft.App/...
        if len(parts) >= 4 and lower[2] == "providers":
            sub = parts[1]
            rest, rest_lower = parts[4:], lower[4:]
            if rest_lower[:1] == ["locations"] and len(rest) == 3:
                location, kind = rest[1], rest_lower[2]
                if kind == "availablemanagedenvironmentsworkloadprofiletypes" and method == "GET":
                    return self._available_profiles(sub, location)
                if kind == "usages" and method == "GET":
                    return self._location_usages(sub, location)
            if rest_lower == ["managedenvironments"] and method == "GET":
                return self._list(f"/subscriptions/{sub}/", ENVIRONMENT_TYPE)
            if rest_lower == ["containerapps"] and method == "GET":
                return self._list(f"/subscriptions/{sub}/", APP_TYPE)
            return self._not_found(request)
        # /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.App/{type}[/{name}[/...]]
        if len(parts) < 6 or lower[2] != "resourcegroups" or lower[4] != "providers":
            return self._not_found(request)
        scope = "/".join(["", *parts[:6]])
        rest, rest_lower = parts[6:], lower[6:]
        if not rest:
            return self._not_found(request)
        if rest_lower[0] == "managedenvironments":
            return self._environments(request, scope, rest, rest_lower)
        if rest_lower[0] == "containerapps":
            return self._container_apps(request, scope, rest, rest_lower)
        return self._not_found(request)

    def _not_found(self, request: Request) -> Response:
        return arm_error(
            404,
            "NotFound",
            f"No route for {request.method} {request.path} in the double's {NAMESPACE}.",
        )

    def _list(self, prefix: str, resource_type: str) -> Response:
        items = [
            r
            for r in self.store.list(prefix)
            if str(r.get("type", "")).lower() == resource_type.lower()
        ]
        return Response.of_json(200, {"value": [self._view(r) for r in items]})

    def _view(self, resource: dict[str, Any]) -> dict[str, Any]:
        if str(resource.get("type", "")).lower() == APP_TYPE.lower():
            return self._app_view(resource)
        return resource

    def _missing(self, kind: str, name: str, resource_group: str) -> Response:
        return arm_error(
            404,
            "ResourceNotFound",
            f"The Resource '{NAMESPACE}/{kind}/{name}' under resource group '{resource_group}' "
            "was not found.",
        )

    # ---- long-running operations -----------------------------------------------------------
    def _operations(self) -> Operations:
        return self.double.operations  # type: ignore[no-any-return]

    def _start_operation(
        self, request: Request, resource_id: str, location: str, work: Callable[[Any], Any]
    ) -> Any:
        sub = resource_id.split("/")[2]
        return self._operations().start(
            sub, NAMESPACE, location, request.query.get("api-version", ""), work
        )

    # ---- locations -------------------------------------------------------------------------
    def _available_profiles(self, sub: str, location: str) -> Response:
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
                    "type": f"{NAMESPACE}/locations/availableManagedEnvironmentsWorkloadProfileTypes",
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

    def _location_usages(self, sub: str, location: str) -> Response:
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
    def _environments(
        self, request: Request, scope: str, rest: list[str], rest_lower: list[str]
    ) -> Response:
        method = request.method
        resource_group = scope.split("/")[4]
        if len(rest) == 1:
            if method == "GET":
                return self._list(scope + "/managedEnvironments/", ENVIRONMENT_TYPE)
            return self._not_found(request)
        env_id = f"{scope}/managedEnvironments/{rest[1]}"
        existing = self.store.get(env_id)
        if len(rest) == 2:
            if method == "PUT":
                return self._put_environment(request, env_id, rest[1], existing)
            if method == "PATCH":
                if existing is None:
                    return self._missing("managedEnvironments", rest[1], resource_group)
                merged = _merge_patch(existing, request.json() or {})
                return self._put_environment(request, env_id, rest[1], existing, merged)
            if existing is None:
                if method == "DELETE":
                    return Response(204)
                return self._missing("managedEnvironments", rest[1], resource_group)
            if method == "GET":
                return Response.of_json(200, existing)
            if method == "DELETE":
                return self._delete_environment(request, env_id, existing)
            return self._not_found(request)
        if existing is None:
            return self._missing("managedEnvironments", rest[1], resource_group)
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
        return self._not_found(request)

    def _put_environment(
        self,
        request: Request,
        env_id: str,
        name: str,
        existing: dict[str, Any] | None,
        body: Any = None,
    ) -> Response:
        body = request.json() if body is None else body
        if not isinstance(body, dict):
            return _bad("InvalidRequestContent", "The request content was not an object.")
        location = str(body.get("location") or (existing or {}).get("location") or "")
        if not location:
            return _bad(
                "LocationRequired", "The location property is required for this definition."
            )
        if existing is not None and existing.get("location", "").lower() != location.lower():
            return _bad(
                "LocationNotAvailableForResourceType",
                f"The environment '{name}' exists in '{existing['location']}'; its location cannot change.",
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
        operation = self._start_operation(request, env_id, location, lambda _op: resource)
        return self._operations().accepted(operation, 200 if existing else 201, resource)

    def _checked_profiles(
        self, profiles: Any, location: str, existing: dict[str, Any] | None
    ) -> list[dict[str, Any]]:
        profiles = copy.deepcopy(profiles or [])
        if not isinstance(profiles, list):
            raise _Invalid(_bad("InvalidRequestContent", "workloadProfiles must be an array."))
        unavailable = self._unavailable(location)
        names: set[str] = set()
        for profile in profiles:
            name = str(profile.get("name", ""))
            kind = str(profile.get("workloadProfileType", ""))
            if not PROFILE_NAME.match(name):
                raise _Invalid(
                    _bad(
                        "WorkloadProfileNameInvalid",
                        f"Workload profile name '{name}' is invalid: 1 to 15 letters, digits and "
                        "hyphens, starting with a letter.",
                    )
                )
            if name.lower() in names:
                raise _Invalid(
                    _bad(
                        "WorkloadProfileNameDuplicated",
                        f"Workload profile name '{name}' is used twice.",
                    )
                )
            names.add(name.lower())
            if kind not in PROFILE_TYPES:
                raise _Invalid(
                    _bad(
                        "WorkloadProfileInvalidType", f"Workload profile type '{kind}' is invalid."
                    )
                )
            if kind.lower() in unavailable:
                raise _Invalid(
                    _bad(
                        "WorkloadProfileInvalidType",
                        f"Workload profile type '{kind}' is not supported in location '{location}'.",
                    )
                )
            if kind == "Consumption" or kind in SERVERLESS_GPU:
                for key, label in (
                    ("minimumCount", "MinimumCount"),
                    ("maximumCount", "MaximumCount"),
                ):
                    if profile.get(key) is not None:
                        raise _Invalid(
                            _bad(
                                "WorkloadProfilePropertyNotSupported",
                                f"Workload Profile property '{label}' is not supported for "
                                f"{kind.replace('-', '_')}",
                            )
                        )
            else:
                low, high = profile.get("minimumCount"), profile.get("maximumCount")
                if high is None or low is None or not 0 <= int(low) <= int(high):
                    raise _Invalid(
                        _bad(
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
                    raise _Invalid(
                        _bad(
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
            raise _Invalid(
                _bad(
                    "ManagedEnvironmentQuotaExceeded",
                    f"The subscription has reached its limit of {limits['ManagedEnvironmentCount']} "
                    f"managed environments in location '{location}'.",
                )
            )
        for profile in profiles:
            usage, amount = self._profile_demand(profile)
            if usage is None or profile.get("workloadProfileType") == "Consumption":
                continue
            if counts.get(usage, 0) + amount > limits.get(usage, 0):
                raise _Invalid(
                    _bad(
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
        operation = self._start_operation(request, env_id, existing["location"], lambda _op: None)
        return self._operations().accepted(operation, 202)

    # ---- environment storages --------------------------------------------------------------
    def _storages(
        self, request: Request, env_id: str, env: dict[str, Any], rest: list[str]
    ) -> Response:
        method = request.method
        if not rest:
            if method != "GET":
                return self._not_found(request)
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
            return self._not_found(request)
        body = request.json() or {}
        azure_file = dict((body.get("properties") or {}).get("azureFile") or {})
        for key in ("accountName", "accountKey", "shareName", "accessMode"):
            if not azure_file.get(key):
                return _bad(
                    "InvalidRequestContent",
                    f"properties.azureFile.{key} is required for an Azure Files storage.",
                    target=f"properties.azureFile.{key}",
                )
        if azure_file["accessMode"] not in ("ReadOnly", "ReadWrite"):
            return _bad("InvalidRequestContent", "accessMode must be ReadOnly or ReadWrite.")
        try:
            keys = self.double.storage_account_keys(azure_file["accountName"])
        except KeyError:
            return _bad(
                "ManagedEnvironmentStorageAccountNotFound",
                f"Storage account '{azure_file['accountName']}' was not found.",
            )
        if azure_file["accountKey"] not in keys:
            return _bad(
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

    # ---- container apps --------------------------------------------------------------------
    def _container_apps(
        self, request: Request, scope: str, rest: list[str], rest_lower: list[str]
    ) -> Response:
        method = request.method
        resource_group = scope.split("/")[4]
        if len(rest) == 1:
            if method == "GET":
                return self._list(scope + "/containerApps/", APP_TYPE)
            return self._not_found(request)
        app_id = f"{scope}/containerApps/{rest[1]}"
        existing = self.store.get(app_id)
        if len(rest) == 2:
            if method == "PUT":
                return self._put_app(request, app_id, rest[1], existing, request.json())
            if existing is None:
                if method == "DELETE":
                    return Response(204)
                return self._missing("containerApps", rest[1], resource_group)
            if method == "PATCH":
                stored = self._stored_app_body(existing)
                merged = _merge_patch(stored, self._strip_read_only(request.json() or {}))
                secrets_patch = ((request.json() or {}).get("properties") or {}).get(
                    "configuration", {}
                ) or {}
                if "secrets" not in secrets_patch:
                    merged.setdefault("properties", {}).setdefault("configuration", {})[
                        "secrets"
                    ] = [
                        {"name": k, "value": v}
                        for k, v in self._secrets.get(app_id.lower(), {}).items()
                    ]
                return self._put_app(request, app_id, rest[1], existing, merged, patch=True)
            if method == "GET":
                return Response.of_json(200, self._app_view(existing))
            if method == "DELETE":
                return self._delete_app(request, app_id, existing)
            return self._not_found(request)
        if existing is None:
            return self._missing("containerApps", rest[1], resource_group)
        action = rest_lower[2]
        if len(rest) == 3 and method == "POST":
            if action == "listsecrets":
                values = self._secrets.get(app_id.lower(), {})
                return Response.of_json(
                    200, {"value": [{"name": k, "value": v} for k, v in values.items()]}
                )
            if action == "stop":
                return self._stop_start(request, app_id, existing, stop=True)
            if action == "start":
                return self._stop_start(request, app_id, existing, stop=False)
            if action == "getauthtoken":
                return self._auth_token(app_id, existing)
        if action == "revisions":
            return self._revisions(request, app_id, existing, rest[3:])
        return self._not_found(request)

    def _strip_read_only(self, body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        for key in ("id", "name", "type", "systemData"):
            body.pop(key, None)
        properties = body.get("properties") or {}
        for key in (
            "provisioningState",
            "runningStatus",
            "latestRevisionName",
            "latestReadyRevisionName",
            "latestRevisionFqdn",
            "customDomainVerificationId",
            "outboundIpAddresses",
            "eventStreamEndpoint",
            "deploymentErrors",
        ):
            properties.pop(key, None)
        ingress = (properties.get("configuration") or {}).get("ingress") or {}
        ingress.pop("fqdn", None)
        return body

    def _stored_app_body(self, existing: dict[str, Any]) -> dict[str, Any]:
        """The client-settable part of a stored app (what a PUT body could say)."""
        return self._strip_read_only(
            {
                k: v
                for k, v in existing.items()
                if k in ("location", "tags", "properties", "identity")
            }
        )

    def _put_app(
        self,
        request: Request,
        app_id: str,
        name: str,
        existing: dict[str, Any] | None,
        body: Any,
        patch: bool = False,
    ) -> Response:
        if not isinstance(body, dict):
            return _bad("InvalidRequestContent", "The request content was not an object.")
        if existing is None and not APP_NAME.match(name):
            return _bad(
                "ContainerAppInvalidName",
                f"Invalid ContainerApp name '{name}'. A name must consist of lower case "
                "alphanumeric characters or '-', start with an alphabetic character, and end with "
                "an alphanumeric character and cannot have '--'. The length must not be more than "
                "32 characters.",
            )
        with self._lock:
            entry = self._apps.get(app_id.lower())
            if (
                entry is not None
                and entry.operation_done is not None
                and not entry.operation_done.is_set()
            ):
                return arm_error(
                    409,
                    "ContainerAppOperationInProgress",
                    f"Cannot modify container app '{name}' while a previous operation is in progress.",
                )
            body = self._strip_read_only(body)
            location = str(body.get("location") or (existing or {}).get("location") or "")
            if not location:
                return _bad(
                    "LocationRequired", "The location property is required for this definition."
                )
            properties = copy.deepcopy(body.get("properties") or {})
            env = self._app_environment(properties)
            configuration = properties.setdefault("configuration", {})
            configuration.setdefault("activeRevisionsMode", "Single")
            new_secrets = self._checked_secrets(configuration)
            template = properties.get("template") or {}
            self._check_template(template, env, new_secrets, properties)
            configuration["secrets"] = [{"name": n} for n in new_secrets]
            properties["managedEnvironmentId"] = env["id"]
            properties["environmentId"] = env["id"]
            old_props = (existing or {}).get("properties", {})
            template_changed = existing is None or self._normalized(template) != self._normalized(
                old_props.get("template") or {}
            )
            revision = None
            if template_changed:
                revision = self._revision_name(app_id, name, template)
            self._secrets[app_id.lower()] = new_secrets
            entry = self._app_entry(app_id, name, configuration)
            resource = {
                "id": app_id,
                "name": name,
                "type": APP_TYPE,
                "location": location,
                "tags": body.get("tags", (existing or {}).get("tags", {})),
                "properties": {
                    **properties,
                    "provisioningState": "InProgress" if revision else "Succeeded",
                    "runningStatus": old_props.get("runningStatus", "Running"),
                    "latestRevisionName": revision or old_props.get("latestRevisionName"),
                    "latestReadyRevisionName": old_props.get("latestReadyRevisionName"),
                    "outboundIpAddresses": ["127.0.0.1"],
                    "customDomainVerificationId": old_props.get("customDomainVerificationId")
                    or secrets.token_hex(32).upper(),
                    "eventStreamEndpoint": self._event_stream_base()
                    + self._app_stream_path(app_id),
                },
            }
            if "identity" in body:
                resource["identity"] = body["identity"]
            self.store.put(app_id, resource)
            done = threading.Event()
            entry.operation_done = done
            if revision:
                self._create_revision(app_id, revision, template)
            else:
                done.set()
        if revision:
            scale = template.get("scale") or {}
            min_replicas = int(
                scale.get("minReplicas", 0) if scale.get("minReplicas") is not None else 0
            )
            outcome: dict[str, Any] = {}

            def finished(ready: bool, details: str) -> None:
                outcome.update(ready=ready, details=details)
                self._finish_revision(app_id, name, revision, ready, details)
                done.set()

            entry.runtime.roll_out(revision, min_replicas, finished)
        else:
            outcome = {"ready": True}

        def work(_operation: Any) -> Any:
            done.wait()
            if not outcome.get("ready", True):
                raise OperationFailed(
                    {
                        "code": "ContainerAppOperationError",
                        "message": f"Failed to provision revision for container app '{name}'. "
                        f"Error details: Operation expired. {outcome.get('details', '')}".strip(),
                    }
                )
            current = self.store.get(app_id)
            return self._app_view(current) if current else None

        operation = self._start_operation(request, app_id, location, work)
        status = 200 if existing is not None else 201
        if patch:
            return self._operations().accepted(operation, 202)
        return self._operations().accepted(
            operation, status, self._app_view(self.store.get(app_id) or resource)
        )

    def _app_environment(self, properties: dict[str, Any]) -> dict[str, Any]:
        env_id = properties.get("managedEnvironmentId") or properties.get("environmentId")
        if not env_id:
            raise _Invalid(
                _bad(
                    "ManagedEnvironmentRequired",
                    "properties.managedEnvironmentId (or environmentId) is required.",
                    target="properties.managedEnvironmentId",
                )
            )
        env = self.store.get(str(env_id))
        if env is None:
            raise _Invalid(
                _bad("ManagedEnvironmentNotFound", f"Managed environment '{env_id}' was not found.")
            )
        wanted = properties.get("workloadProfileName")
        names = {p["name"].lower() for p in env["properties"].get("workloadProfiles", [])}
        if wanted and str(wanted).lower() not in names:
            raise _Invalid(
                _bad(
                    "WorkloadProfileNameNotFound",
                    f"Workload profile '{wanted}' does not exist in environment '{env['name']}' "
                    f"(it has {', '.join(sorted(names))}).",
                )
            )
        return env

    @staticmethod
    def _checked_secrets(configuration: dict[str, Any]) -> dict[str, str]:
        values: dict[str, str] = {}
        for secret in configuration.get("secrets") or []:
            name = str(secret.get("name", ""))
            if not re.match(r"^[a-z0-9][a-z0-9-.]*$", name) or len(name) > 253:
                raise _Invalid(
                    _bad(
                        "ContainerAppSecretInvalid",
                        f"Secret name '{name}' is invalid: lower case letters, digits, '-' and '.'.",
                    )
                )
            if secret.get("value") is None:
                raise _Invalid(
                    _bad(
                        "ContainerAppSecretInvalid",
                        f"Secret '{name}' has no value (read values with listSecrets and send them "
                        "back on update).",
                    )
                )
            if name in values:
                raise _Invalid(
                    _bad("ContainerAppSecretInvalid", f"Secret '{name}' is defined twice.")
                )
            values[name] = str(secret["value"])
        return values

    def _check_template(
        self,
        template: dict[str, Any],
        env: dict[str, Any],
        secret_values: dict[str, str],
        properties: dict[str, Any],
    ) -> None:
        containers = template.get("containers") or []
        if not containers:
            raise _Invalid(
                _bad(
                    "ContainerAppInvalidTemplate",
                    "template.containers needs at least one container.",
                )
            )
        volumes = {v.get("name"): v for v in template.get("volumes") or []}
        for volume in volumes.values():
            if volume.get("storageType") == "AzureFile":
                storage = self.store.get(f"{env['id']}/storages/{volume.get('storageName')}")
                if storage is None:
                    raise _Invalid(
                        _bad(
                            "ContainerAppVolumeStorageNotFound",
                            f"Volume '{volume.get('name')}' names storage '{volume.get('storageName')}', "
                            f"which environment '{env['name']}' does not have.",
                        )
                    )
        for container in containers:
            for variable in container.get("env") or []:
                ref = variable.get("secretRef")
                if ref is not None and ref not in secret_values:
                    raise _Invalid(
                        _bad(
                            "ContainerAppSecretRefNotFound",
                            f"Environment variable '{variable.get('name')}' of container "
                            f"'{container.get('name')}' refers to secret '{ref}', which is not "
                            "defined in configuration.secrets.",
                        )
                    )
            for mount in container.get("volumeMounts") or []:
                if mount.get("volumeName") not in volumes:
                    raise _Invalid(
                        _bad(
                            "ContainerAppVolumeMountInvalid",
                            f"Volume mount '{mount.get('mountPath')}' names volume "
                            f"'{mount.get('volumeName')}', which the template does not define.",
                        )
                    )
            for probe in container.get("probes") or []:
                for key, limit in PROBE_LIMITS.items():
                    if probe.get(key) is not None and not 1 <= int(probe[key]) <= limit:
                        raise _Invalid(
                            _bad(
                                "ContainerAppProbeInvalid",
                                f"Probe '{probe.get('type')}' of container '{container.get('name')}': "
                                f"{key} must be between 1 and {limit}.",
                            )
                        )
        scale = template.get("scale") or {}
        low, high = scale.get("minReplicas"), scale.get("maxReplicas")
        if low is not None and high is not None and int(low) > int(high):
            raise _Invalid(
                _bad("ContainerAppScaleInvalid", "template.scale.minReplicas exceeds maxReplicas.")
            )
        suffix = template.get("revisionSuffix")
        if suffix and not REVISION_SUFFIX.match(str(suffix)):
            raise _Invalid(
                _bad("ContainerAppInvalidRevisionSuffix", f"Revision suffix '{suffix}' is invalid.")
            )

    @staticmethod
    def _normalized(template: dict[str, Any]) -> Any:
        return {k: v for k, v in template.items() if v not in (None, [], {})}

    def _revision_name(self, app_id: str, name: str, template: dict[str, Any]) -> str:
        suffix = template.get("revisionSuffix")
        if suffix:
            revision = f"{name}--{suffix}"
            if self.store.get(f"{app_id}/revisions/{revision}") is not None:
                raise _Invalid(
                    _bad(
                        "ContainerAppRevisionSuffixConflict",
                        f"Revision '{revision}' already exists; a new template needs a new "
                        "revisionSuffix (or none, for a generated one).",
                    )
                )
            return revision
        return f"{name}--{random_suffix(7)}"

    # ---- the app's runtime -----------------------------------------------------------------
    def _app_entry(self, app_id: str, name: str, configuration: dict[str, Any]) -> _App:
        entry = self._apps.get(app_id.lower())
        if entry is None:
            single = configuration.get("activeRevisionsMode", "Single") == "Single"
            runtime = AppRuntime(
                name,
                single,
                lambda revision: self._replica_spec(app_id, revision),
                self._runtime_root,
                self._idle_seconds,
                lambda: self._publish(app_id),
            )
            ingress = None
            if configuration.get("ingress"):
                ingress = IngressProxy(
                    name,
                    lambda: runtime.route(self._cold_start_wait(app_id)),
                    self.double.server_ssl_context(),
                )
            entry = _App(app_id, runtime, ingress)
            self._apps[app_id.lower()] = entry
        return entry

    def _cold_start_wait(self, app_id: str) -> float:
        extra = getattr(self.double.config, "extra", {}) or {}
        if "cold_start_wait_s" in extra:
            return float(extra["cold_start_wait_s"])
        app = self.store.get(app_id)
        latest = (app or {}).get("properties", {}).get("latestReadyRevisionName")
        revision = self.store.get(f"{app_id}/revisions/{latest}") if latest else None
        template = (revision or app or {}).get("properties", {}).get("template") or {}
        return self._startup_budget(template)

    def _startup_budget(self, template: dict[str, Any]) -> float:
        containers = template.get("containers") or [{}]
        probes = containers[0].get("probes") or []
        # ACA's default startup probe: TCP, 1 s initial delay, 240 failures one second apart.
        budget = 241.0
        for probe in probes:
            if probe.get("type") == "Startup":
                budget = float(probe.get("initialDelaySeconds", 1)) + float(
                    probe.get("periodSeconds", 10)
                ) * float(probe.get("failureThreshold", 3))
        return budget * self._extra("probe_time_scale", 1.0)

    def _replica_spec(self, app_id: str, revision: str) -> ReplicaSpec:
        """Built at each replica start, so a restart sees the app's current secret values."""
        stored = self.store.get(f"{app_id}/revisions/{revision}") or {}
        template = stored.get("properties", {}).get("template") or {}
        app = self.store.get(app_id) or {}
        env_id = app.get("properties", {}).get("managedEnvironmentId", "")
        container = (template.get("containers") or [{}])[0]
        volumes = {v.get("name"): v for v in template.get("volumes") or []}
        mounts: dict[str, Path] = {}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount.get("volumeName"), {})
            storage = self.store.get(f"{env_id}/storages/{volume.get('storageName')}") or {}
            azure_file = storage.get("properties", {}).get("azureFile") or {}
            mounts[str(mount["mountPath"])] = Path(
                self.double.share_root(
                    azure_file.get("accountName", ""), azure_file.get("shareName", "")
                )
            )
        values = self._secrets.get(app_id.lower(), {})
        env = {}
        for variable in container.get("env") or []:
            if variable.get("secretRef") is not None:
                env[variable["name"]] = values.get(variable["secretRef"], "")
            else:
                env[variable["name"]] = str(variable.get("value", ""))
        command = [*(container.get("command") or []), *(container.get("args") or [])]
        try:
            argv = python_argv(command)
        except CommandNotRunnable as error:
            argv = [command[0] if command else "none", str(error)]
        probes = {p.get("type"): p for p in container.get("probes") or []}
        chosen = probes.get("Readiness") or probes.get("Startup")
        ready_probe = None
        if chosen and chosen.get("httpGet"):
            ready_probe = Probe(
                path=str(chosen["httpGet"].get("path", "/")),
                initial_delay_s=float(chosen.get("initialDelaySeconds", 0)),
                period_s=float(chosen.get("periodSeconds", 10)),
                failure_threshold=int(chosen.get("failureThreshold", 3)),
            )
        return ReplicaSpec(
            container_name=str(container.get("name", "")),
            argv=argv,
            env=env,
            mounts=mounts,
            ready_probe=ready_probe,
            startup_budget_s=self._startup_budget(template),
            probe_interval_s=PROBE_INTERVAL_S,
            stop_grace_s=self._extra("replica_stop_grace_s", 30.0),
            crash_at_start=bool(getattr(self.double.config, "replica_crash", False)),
        )

    # ---- revisions -------------------------------------------------------------------------
    def _create_revision(self, app_id: str, revision: str, template: dict[str, Any]) -> None:
        stored_template = copy.deepcopy(template)
        stored_template.setdefault("revisionSuffix", revision.split("--", 1)[1])
        self.store.put(
            f"{app_id}/revisions/{revision}",
            {
                "id": f"{app_id}/revisions/{revision}",
                "name": revision,
                "type": f"{APP_TYPE}/revisions",
                "properties": {
                    "createdTime": _now(),
                    "template": stored_template,
                    "provisioningState": "Provisioning",
                    "provisioningError": None,
                },
            },
        )

    def _finish_revision(
        self, app_id: str, name: str, revision: str, ready: bool, details: str
    ) -> None:
        revision_id = f"{app_id}/revisions/{revision}"
        stored = self.store.get(revision_id)
        if stored is not None:
            stored["properties"]["provisioningState"] = "Provisioned" if ready else "Failed"
            if not ready:
                stored["properties"]["provisioningError"] = details
            self.store.put(revision_id, stored)
        app = self.store.get(app_id)
        if app is not None:
            if ready:
                app["properties"]["latestReadyRevisionName"] = revision
            app["properties"]["provisioningState"] = "Succeeded" if ready else "Failed"
            self.store.put(app_id, app)
        self._publish(app_id)

    def _revisions(
        self, request: Request, app_id: str, app: dict[str, Any], rest: list[str]
    ) -> Response:
        method = request.method
        if not rest:
            if method != "GET":
                return self._not_found(request)
            items = [
                self._revision_view(app_id, r)
                for r in self.store.list(app_id + "/revisions/")
                if str(r.get("type", "")).lower() == f"{APP_TYPE}/revisions".lower()
            ]
            return Response.of_json(200, {"value": items})
        revision = rest[0]
        stored = self.store.get(f"{app_id}/revisions/{revision}")
        if stored is None:
            return arm_error(
                404, "ContainerAppRevisionNotFound", f"Revision '{revision}' was not found."
            )
        entry = self._apps[app_id.lower()]
        if len(rest) == 1 and method == "GET":
            return Response.of_json(200, self._revision_view(app_id, stored))
        if len(rest) == 2 and method == "POST":
            action = rest[1].lower()
            if action == "restart":
                if not self._is_active(entry, stored["name"]):
                    return _bad(
                        "ContainerAppRevisionNotActive",
                        f"Revision '{revision}' is not active; activate it first.",
                    )
                entry.runtime.restart(stored["name"])
                return Response(200)
            if action == "activate":
                entry.runtime.activate(stored["name"])
                return Response(200)
            if action == "deactivate":
                entry.runtime.deactivate(stored["name"])
                return Response(200)
        if len(rest) >= 2 and rest[1].lower() == "replicas" and method == "GET":
            replicas = entry.runtime.all_replicas(stored["name"])
            views = [self._replica_view(app_id, stored["name"], r) for r in replicas]
            if len(rest) == 2:
                return Response.of_json(200, {"value": views})
            found = [v for v in views if v["name"].lower() == rest[2].lower()]
            if len(rest) == 3 and found:
                return Response.of_json(200, found[0])
            return arm_error(
                404, "ContainerAppReplicaNotFound", f"Replica '{rest[-1]}' was not found."
            )
        return self._not_found(request)

    @staticmethod
    def _is_active(entry: _App, revision: str) -> bool:
        runtime = entry.runtime.revisions.get(revision)
        return runtime is not None and runtime.active

    def _revision_view(self, app_id: str, stored: dict[str, Any]) -> dict[str, Any]:
        view = copy.deepcopy(stored)
        entry = self._apps.get(app_id.lower())
        properties = view["properties"]
        runtime = entry.runtime.revisions.get(stored["name"]) if entry else None
        replicas = entry.runtime.all_replicas(stored["name"]) if entry else []
        ready = [r for r in replicas if r.ready]
        taking_traffic = (
            entry is not None
            and entry.runtime.traffic == stored["name"]
            and not entry.runtime.stopped
        )
        active = runtime.active if runtime else False
        failed = properties.get("provisioningState") == "Failed"
        if failed:
            running, health = "Failed", "Unhealthy"
        elif not active or (entry and entry.runtime.stopped):
            running, health = "Stopped", "None"
        elif ready:
            running, health = "Running", "Healthy"
        elif replicas:
            running, health = "Processing", "None"
        else:
            running, health = "Running", "Healthy"  # scaled to zero: ACA still says Running
        properties.update(
            {
                "active": active,
                "replicas": len(replicas),
                "trafficWeight": 100 if taking_traffic else 0,
                "healthState": health,
                "runningState": running,
                "lastActiveTime": _now() if active else properties.get("createdTime"),
                "fqdn": entry.ingress.fqdn if entry and entry.ingress else "",
            }
        )
        if failed:
            properties["runningStateDetails"] = properties.get("provisioningError") or ""
        if properties.get("provisioningError") is None:
            properties.pop("provisioningError", None)
        return view

    def _replica_view(self, app_id: str, revision: str, replica: Any) -> dict[str, Any]:
        running = replica.ready
        state = "Running" if running else "Waiting" if replica.state == "Starting" else "Terminated"
        container_name = replica.spec.container_name
        return {
            "id": f"{app_id}/revisions/{revision}/replicas/{replica.name}",
            "name": replica.name,
            "type": f"{APP_TYPE}/revisions/replicas",
            "properties": {
                "createdTime": replica.created,
                "runningState": "Running" if running else "NotRunning",
                "runningStateDetails": replica.state_details,
                "containers": [
                    {
                        "name": container_name,
                        "containerId": f"pid-{replica.pid}",
                        "ready": running,
                        "started": replica.pid is not None,
                        "restartCount": replica.restart_count,
                        "runningState": state,
                        "runningStateDetails": replica.state_details,
                        "logStreamEndpoint": self._log_stream_url(
                            app_id, revision, replica.name, container_name
                        ),
                        "execEndpoint": "",
                    }
                ],
            },
        }

    # ---- views, publishing -----------------------------------------------------------------
    def _app_view(self, stored: dict[str, Any]) -> dict[str, Any]:
        view = copy.deepcopy(stored)
        entry = self._apps.get(stored["id"].lower())
        properties = view["properties"]
        ingress = (properties.get("configuration") or {}).get("ingress")
        if ingress is not None and entry is not None and entry.ingress is not None:
            ingress["fqdn"] = entry.ingress.fqdn
            latest = properties.get("latestRevisionName")
            properties["latestRevisionFqdn"] = entry.ingress.fqdn if latest else ""
        if entry is not None:
            properties["runningStatus"] = "Stopped" if entry.runtime.stopped else "Running"
        return view

    def _publish(self, app_id: str) -> None:
        """Nothing to copy: views are computed on read. Kept as the runtime's change hook so a
        change made by a background thread (scale-in, readiness) shows at the next GET."""

    # ---- delete, stop/start, auth token ----------------------------------------------------
    def _delete_app(self, request: Request, app_id: str, existing: dict[str, Any]) -> Response:
        with self._lock:
            entry = self._apps.pop(app_id.lower(), None)
            self._secrets.pop(app_id.lower(), None)
            self.store.delete(app_id)

        def work(_operation: Any) -> None:
            if entry is not None:
                entry.runtime.close()
                if entry.ingress is not None:
                    entry.ingress.stop()
            return None

        operation = self._start_operation(request, app_id, existing["location"], work)
        return self._operations().accepted(operation, 202)

    def _stop_start(
        self, request: Request, app_id: str, existing: dict[str, Any], stop: bool
    ) -> Response:
        entry = self._apps[app_id.lower()]

        def work(_operation: Any) -> Any:
            if stop:
                entry.runtime.stop_app()
            else:
                entry.runtime.start_app()
            current = self.store.get(app_id)
            return self._app_view(current) if current else None

        operation = self._start_operation(request, app_id, existing["location"], work)
        return self._operations().accepted(operation, 202)

    def _auth_token(self, app_id: str, existing: dict[str, Any]) -> Response:
        token = secrets.token_urlsafe(32)
        self._auth_tokens[token] = app_id.lower()
        expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=6)
        return Response.of_json(
            200,
            {
                "id": f"{app_id}/getAuthtoken",
                "name": existing["name"],
                "type": f"{APP_TYPE}/getAuthtoken",
                "location": existing["location"],
                "properties": {
                    "token": token,
                    "expires": expires.isoformat().replace("+00:00", "Z"),
                },
            },
        )

    # ---- log stream hooks (apps_logstream.py) ---------------------------------------------
    def _event_stream_base(self) -> str:
        return self.logstream.base_url if self.logstream is not None else ""

    @staticmethod
    def _app_stream_path(app_id: str) -> str:
        parts = app_id.split("/")
        return f"/subscriptions/{parts[2]}/resourceGroups/{parts[4]}/containerApps/{parts[8]}/eventstream"

    def _log_stream_url(self, app_id: str, revision: str, replica: str, container: str) -> str:
        parts = app_id.split("/")
        return (
            f"{self._event_stream_base()}/subscriptions/{parts[2]}/resourceGroups/{parts[4]}"
            f"/containerApps/{parts[8]}/revisions/{revision}/replicas/{replica}"
            f"/containers/{container}/logstream"
        )

    def app_for_token(self, token: str) -> str | None:
        return self._auth_tokens.get(token)

    def replicas_for_log(self, app_id: str, revision: str) -> list[Any]:
        entry = self._apps.get(app_id.lower())
        return entry.runtime.logged_replicas(revision) if entry else []

    def app_id_of(self, sub: str, resource_group: str, name: str) -> str | None:
        for key, entry in self._apps.items():
            if (
                key
                == f"/subscriptions/{sub}/resourcegroups/{resource_group}/providers/{NAMESPACE}/containerapps/{name}".lower()
            ):
                return entry.id
        return None

    # ---- shutdown --------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop every replica and ingress listener (the double is stopping)."""
        with self._lock:
            entries = list(self._apps.values())
            self._apps.clear()
        for entry in entries:
            entry.runtime.close()
            if entry.ingress is not None:
                entry.ingress.stop()
        if self.logstream is not None:
            self.logstream.stop()


def install(double: Any) -> AppsProvider:
    """Register Microsoft.App with the double; `shutdown()` of the result stops every replica."""
    from tests.azure_double.apps_logstream import LogStream

    provider = AppsProvider(double)
    provider.logstream = LogStream(provider, double.server_ssl_context())
    double.register_provider_handler(NAMESPACE, provider.handle)
    double.on_stop(provider.shutdown)
    return provider

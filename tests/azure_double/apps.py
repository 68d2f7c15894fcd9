"""Microsoft.App in the double: the handler registered for the namespace (`install`), container
apps, revisions and replicas. Environments, storages and location reads are apps_environments.py.

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
from typing import TYPE_CHECKING, Any

from tests.azure_double import api_versions
from tests.azure_double.apps_common import (
    APP_TYPE,
    MODELS,
    NAMESPACE,
    Invalid,
    bad,
    merge_patch,
    missing,
    not_found,
    now,
    start_operation,
    without,
)
from tests.azure_double.apps_environments import Environments
from tests.azure_double.apps_runtime import AppRuntime
from tests.azure_double.http import Request, Response, arm_error, require_api_version
from tests.azure_double.ingress import IngressProxy
from tests.azure_double.lro import OperationFailed, Operations
from tests.azure_double.models import body_problem, model_class
from tests.azure_double.replicas import (
    CommandNotRunnable,
    ConsoleLine,
    Probe,
    Replica,
    ReplicaSpec,
    python_argv,
    random_suffix,
)

if TYPE_CHECKING:
    from tests.azure_double.server import AzureDouble

PROBE_INTERVAL_S = 0.05
APP_READ_ONLY = (
    "provisioningState",
    "runningStatus",
    "latestRevisionName",
    "latestReadyRevisionName",
    "latestRevisionFqdn",
    "customDomainVerificationId",
    "outboundIpAddresses",
    "eventStreamEndpoint",
    "deploymentErrors",
)
APP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
REVISION_SUFFIX = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
PROBE_LIMITS = {"initialDelaySeconds": 60, "failureThreshold": 10, "periodSeconds": 240}


@dataclass
class _App:
    id: str
    runtime: AppRuntime
    ingress: IngressProxy | None
    operation_done: threading.Event | None = None


class AppsProvider:
    """The Microsoft.App resource provider of one AzureDouble."""

    def __init__(self, double: AzureDouble) -> None:
        self.double = double
        self.store = double.store
        self._lock = threading.RLock()
        self._apps: dict[str, _App] = {}  # by lower-cased app id
        self._secrets: dict[str, dict[str, str]] = {}  # app id -> secret name -> value
        self._auth_tokens: dict[str, str] = {}  # token -> app id (log stream)
        self._runtime_root = Path(double.state_dir) / "replicas"
        self._runtime_root.mkdir(parents=True, exist_ok=True)
        self.logstream: Any = None  # set by install()
        self.environments = Environments(double, self._event_stream_base)

    # ---- config ----------------------------------------------------------------------------
    def _extra(self, name: str, default: float) -> float:
        extra = getattr(self.double.config, "extra", {}) or {}
        return float(extra.get(name, default))

    def _idle_seconds(self) -> float:
        return float(getattr(self.double.config, "scale_to_zero_idle_s", 300.0))

    # ---- dispatch --------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        problem = require_api_version(request, set(api_versions.accepted(NAMESPACE)))
        if problem is not None:
            return problem
        parts = [p for p in request.path.split("/") if p]
        try:
            return self._route(request, parts)
        except Invalid as invalid:
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
                    return self.environments.available_profiles(sub, location)
                if kind == "usages" and method == "GET":
                    return self.environments.location_usages(sub, location)
            if rest_lower == ["managedenvironments"] and method == "GET":
                return self.environments.list_all(f"/subscriptions/{sub}/")
            if rest_lower == ["containerapps"] and method == "GET":
                return self._list(f"/subscriptions/{sub}/", APP_TYPE)
            return not_found(request)
        # /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.App/{type}[/{name}[/...]]
        if len(parts) < 6 or lower[2] != "resourcegroups" or lower[4] != "providers":
            return not_found(request)
        scope = "/".join(["", *parts[:6]])
        rest, rest_lower = parts[6:], lower[6:]
        if not rest:
            return not_found(request)
        if rest_lower[0] == "managedenvironments":
            return self.environments.environments(request, scope, rest, rest_lower)
        if rest_lower[0] == "containerapps":
            return self._container_apps(request, scope, rest, rest_lower)
        return not_found(request)

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
        return self.double.operations

    def _start_operation(
        self, request: Request, resource_id: str, location: str, work: Callable[[Any], Any]
    ) -> Any:
        sub = resource_id.split("/")[2]
        return self.double.operations.start(
            sub, NAMESPACE, location, request.query.get("api-version", ""), work
        )

    # ---- container apps --------------------------------------------------------------------
    def _container_apps(
        self, request: Request, scope: str, rest: list[str], rest_lower: list[str]
    ) -> Response:
        method = request.method
        resource_group = scope.split("/")[4]
        if len(rest) == 1:
            if method == "GET":
                return self._list(scope + "/containerApps/", APP_TYPE)
            return not_found(request)
        app_id = f"{scope}/containerApps/{rest[1]}"
        existing = self.store.get(app_id)
        if len(rest) == 2:
            if method == "PUT":
                return self._put_app(request, app_id, rest[1], existing, request.json())
            if existing is None:
                if method == "DELETE":
                    return Response(204)
                return missing("containerApps", rest[1], resource_group)
            if method == "PATCH":
                return self._patch_app(request, app_id, rest[1], existing)
            if method == "GET":
                return Response.of_json(200, self._app_view(existing))
            if method == "DELETE":
                return self._delete_app(request, app_id, existing)
            return not_found(request)
        if existing is None:
            return missing("containerApps", rest[1], resource_group)
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
        return not_found(request)

    def _patch_app(
        self, request: Request, app_id: str, name: str, existing: dict[str, Any]
    ) -> Response:
        """JSON merge patch over the stored app. Secrets: the patch's list replaces the app's,
        and a listed secret without a value keeps its current one (what a GET returns has no
        values, so a get-modify-update round trip keeps them)."""
        patch = request.json()
        if not isinstance(patch, dict):
            return bad("InvalidRequestContent", "The request content was not an object.")
        merged = merge_patch(self._stored_app_body(existing), self._strip_read_only(patch))
        current = self._secrets.get(app_id.lower(), {})
        configuration = merged.setdefault("properties", {}).setdefault("configuration", {})
        listed = ((patch.get("properties") or {}).get("configuration") or {}).get("secrets")
        configuration["secrets"] = [
            {
                "name": s.get("name"),
                "value": s["value"]
                if s.get("value") is not None
                else current.get(str(s.get("name"))),
            }
            for s in (listed if listed is not None else [{"name": k} for k in current])
        ]
        return self._put_app(request, app_id, name, existing, merged, patch=True)

    @staticmethod
    def _strip_read_only(body: dict[str, Any]) -> dict[str, Any]:
        body = without(body, APP_READ_ONLY)
        configuration = (body.get("properties") or {}).get("configuration") or {}
        if isinstance(configuration.get("ingress"), dict):
            configuration["ingress"].pop("fqdn", None)
        return dict(body)

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
            return bad("InvalidRequestContent", "The request content was not an object.")
        if existing is None and not APP_NAME.match(name):
            return bad(
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
                    f"Cannot modify container app '{name}' while a previous operation is in "
                    "progress.",
                )
            body = self._strip_read_only(body)
            problem = body_problem(model_class(f"{MODELS}.ContainerApp"), body)
            if problem is not None:
                return problem
            location = str(body.get("location") or (existing or {}).get("location") or "")
            if not location:
                return bad(
                    "LocationRequired", "The location property is required for this definition."
                )
            properties = copy.deepcopy(body.get("properties") or {})
            env = self._app_environment(properties)
            configuration = properties.setdefault("configuration", {})
            configuration.setdefault("activeRevisionsMode", "Single")
            new_secrets = self._checked_secrets(configuration)
            template = properties.get("template") or {}
            self._check_template(template, env, new_secrets)
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
            min_replicas = int(scale.get("minReplicas") or 0)
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

        operation = start_operation(self.double, request, app_id, location, work)
        status = 200 if existing is not None else 201
        if patch:
            return self.double.operations.accepted(operation, 202)
        return self.double.operations.accepted(
            operation, status, self._app_view(self.store.get(app_id) or resource)
        )

    def _app_environment(self, properties: dict[str, Any]) -> dict[str, Any]:
        env_id = properties.get("managedEnvironmentId") or properties.get("environmentId")
        if not env_id:
            raise Invalid(
                bad(
                    "ManagedEnvironmentRequired",
                    "properties.managedEnvironmentId (or environmentId) is required.",
                    target="properties.managedEnvironmentId",
                )
            )
        env = self.store.get(str(env_id))
        if env is None:
            raise Invalid(
                bad("ManagedEnvironmentNotFound", f"Managed environment '{env_id}' was not found.")
            )
        wanted = properties.get("workloadProfileName")
        names = {p["name"].lower() for p in env["properties"].get("workloadProfiles", [])}
        if wanted and str(wanted).lower() not in names:
            raise Invalid(
                bad(
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
                raise Invalid(
                    bad(
                        "ContainerAppSecretInvalid",
                        f"Secret name '{name}' is invalid: lower case letters, digits, '-' "
                        "and '.'.",
                    )
                )
            if secret.get("value") is None:
                raise Invalid(
                    bad(
                        "ContainerAppSecretInvalid",
                        f"Secret '{name}' has no value (read values with listSecrets and send them "
                        "back on update).",
                    )
                )
            if name in values:
                raise Invalid(
                    bad("ContainerAppSecretInvalid", f"Secret '{name}' is defined twice.")
                )
            values[name] = str(secret["value"])
        return values

    def _check_template(
        self,
        template: dict[str, Any],
        env: dict[str, Any],
        secret_values: dict[str, str],
    ) -> None:
        containers = template.get("containers") or []
        if not containers:
            raise Invalid(
                bad(
                    "ContainerAppInvalidTemplate",
                    "template.containers needs at least one container.",
                )
            )
        volumes = {v.get("name"): v for v in template.get("volumes") or []}
        for volume in volumes.values():
            if volume.get("storageType") == "AzureFile":
                storage = self.store.get(f"{env['id']}/storages/{volume.get('storageName')}")
                if storage is None:
                    raise Invalid(
                        bad(
                            "ContainerAppVolumeStorageNotFound",
                            f"Volume '{volume.get('name')}' names storage "
                            f"'{volume.get('storageName')}', "
                            f"which environment '{env['name']}' does not have.",
                        )
                    )
        for container in containers:
            for variable in container.get("env") or []:
                ref = variable.get("secretRef")
                if ref is not None and ref not in secret_values:
                    raise Invalid(
                        bad(
                            "ContainerAppSecretRefNotFound",
                            f"Environment variable '{variable.get('name')}' of container "
                            f"'{container.get('name')}' refers to secret '{ref}', which is not "
                            "defined in configuration.secrets.",
                        )
                    )
            for mount in container.get("volumeMounts") or []:
                if mount.get("volumeName") not in volumes:
                    raise Invalid(
                        bad(
                            "ContainerAppVolumeMountInvalid",
                            f"Volume mount '{mount.get('mountPath')}' names volume "
                            f"'{mount.get('volumeName')}', which the template does not define.",
                        )
                    )
            for probe in container.get("probes") or []:
                for key, limit in PROBE_LIMITS.items():
                    if probe.get(key) is not None and not 1 <= int(probe[key]) <= limit:
                        raise Invalid(
                            bad(
                                "ContainerAppProbeInvalid",
                                f"Probe '{probe.get('type')}' of container "
                                f"'{container.get('name')}': "
                                f"{key} must be between 1 and {limit}.",
                            )
                        )
        scale = template.get("scale") or {}
        low, high = scale.get("minReplicas"), scale.get("maxReplicas")
        if low is not None and high is not None and int(low) > int(high):
            raise Invalid(
                bad("ContainerAppScaleInvalid", "template.scale.minReplicas exceeds maxReplicas.")
            )
        suffix = template.get("revisionSuffix")
        if suffix and not REVISION_SUFFIX.match(str(suffix)):
            raise Invalid(
                bad("ContainerAppInvalidRevisionSuffix", f"Revision suffix '{suffix}' is invalid.")
            )

    @staticmethod
    def _normalized(template: dict[str, Any]) -> Any:
        return {k: v for k, v in template.items() if v not in (None, [], {})}

    def _revision_name(self, app_id: str, name: str, template: dict[str, Any]) -> str:
        suffix = template.get("revisionSuffix")
        if suffix:
            revision = f"{name}--{suffix}"
            if self.store.get(f"{app_id}/revisions/{revision}") is not None:
                raise Invalid(
                    bad(
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
        argv, start_error = [], ""
        try:
            argv = python_argv(command)
        except CommandNotRunnable as error:
            start_error = str(error)
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
            restart_backoff_s=10.0 * self._extra("probe_time_scale", 1.0),
            restart_backoff_cap_s=300.0 * self._extra("probe_time_scale", 1.0),
            crash_at_start=bool(getattr(self.double.config, "replica_crash", False)),
            start_error=start_error,
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
                    "createdTime": now(),
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

    def _revisions(
        self, request: Request, app_id: str, app: dict[str, Any], rest: list[str]
    ) -> Response:
        method = request.method
        if not rest:
            if method != "GET":
                return not_found(request)
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
                    return bad(
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
        return not_found(request)

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
        if runtime is not None:  # a failed revision activated later may still get ready
            properties["provisioningState"] = runtime.provisioning
            properties["provisioningError"] = runtime.failure or None
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
                "lastActiveTime": now() if active else properties.get("createdTime"),
                "fqdn": entry.ingress.fqdn if entry and entry.ingress else "",
            }
        )
        if failed:
            properties["runningStateDetails"] = properties.get("provisioningError") or ""
        if properties.get("provisioningError") is None:
            properties.pop("provisioningError", None)
        return view

    def _replica_view(self, app_id: str, revision: str, replica: Replica) -> dict[str, Any]:
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

        operation = start_operation(self.double, request, app_id, existing["location"], work)
        return self.double.operations.accepted(operation, 202)

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

        operation = start_operation(self.double, request, app_id, existing["location"], work)
        return self.double.operations.accepted(operation, 202)

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
        return (
            f"/subscriptions/{parts[2]}/resourceGroups/{parts[4]}/containerApps/{parts[8]}"
            "/eventstream"
        )

    def _log_stream_url(self, app_id: str, revision: str, replica: str, container: str) -> str:
        parts = app_id.split("/")
        return (
            f"{self._event_stream_base()}/subscriptions/{parts[2]}/resourceGroups/{parts[4]}"
            f"/containerApps/{parts[8]}/revisions/{revision}/replicas/{replica}"
            f"/containers/{container}/logstream"
        )

    def app_for_token(self, token: str) -> str | None:
        return self._auth_tokens.get(token)

    def replicas_for_log(self, app_id: str, revision: str) -> list[Replica]:
        entry = self._apps.get(app_id.lower())
        return entry.runtime.logged_replicas(revision) if entry else []

    def console_of(self, name: str) -> list[ConsoleLine]:
        """Every console line of every revision's replicas of the apps named `name`."""
        with self._lock:
            entries = [e for e in self._apps.values() if e.id.lower().endswith(f"/{name}")]
        return [
            line
            for entry in entries
            for revision in list(entry.runtime.revisions)
            for replica in entry.runtime.logged_replicas(revision)
            for line in replica.console_lines()
        ]

    def app_id_of(self, sub: str, resource_group: str, name: str) -> str | None:
        key = f"/subscriptions/{sub}/resourceGroups/{resource_group}/providers/{NAMESPACE}"
        entry = self._apps.get(f"{key}/containerApps/{name}".lower())
        return entry.id if entry else None

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


def install(double: AzureDouble) -> AppsProvider:
    """Register Microsoft.App with the double; `shutdown()` of the result stops every replica."""
    from tests.azure_double.apps_logstream import LogStream

    provider = AppsProvider(double)
    provider.logstream = LogStream(provider, double.server_ssl_context())
    double.register_provider_handler(NAMESPACE, provider.handle)
    double.on_stop(provider.shutdown)
    return provider

"""ARM deployments at resource-group scope: validate, what-if, create-or-update as a long-running
operation, operations list, outputs, failure with nested error.details, delete.

Parameters are checked against the template's declared parameters as ARM does (unknown names,
missing required values, type, allowedValues, min/maxValue, min/maxLength). The double is a
double of ARM for this project's template, not a template engine: for `inference.bicep`
(template metadata name 'aca-infer inference') it creates what the template declares through
`internal_request`, so each resource goes through its provider's validation and side effects.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.azure_double import api_versions
from tests.azure_double.arm import parse_path
from tests.azure_double.expressions import ExpressionError, evaluate
from tests.azure_double.http import Request, Response, arm_error, require_api_version
from tests.azure_double.lro import Operation, OperationFailed
from tests.azure_double.resources import checked_body, method_not_allowed, no_route, now_iso

if TYPE_CHECKING:
    from tests.azure_double.server import AzureDouble

NAMESPACE = "Microsoft.Resources"
DEPLOYMENT_TYPE = "Microsoft.Resources/deployments"
INFERENCE_TEMPLATE = "aca-infer inference"
TERMINAL_STATES = {"succeeded", "failed", "canceled"}
RESOURCE_WAIT_S = 900.0

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "securestring": (str,),
    "int": (int,),
    "bool": (bool,),
    "object": (dict,),
    "secureobject": (dict,),
    "array": (list,),
}


def install(double: AzureDouble) -> None:
    double.register_provider_handler(NAMESPACE, Deployments(double).handle)


def _invalid_template(message: str) -> dict[str, Any]:
    return {
        "code": "InvalidTemplate",
        "message": f"Deployment template validation failed: '{message}'.",
    }


def check_parameters(template: dict[str, Any], given: dict[str, Any]) -> str | None:
    """ARM's parameter checks; None when the given values fit the declarations."""
    declared: dict[str, Any] = template.get("parameters") or {}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        return (
            f"The template parameters '{', '.join(unknown)}' in the parameters file are not "
            "valid; they are not present in the original template and can therefore not be "
            "provided at deployment time. The only supported parameters for this template are "
            f"'{', '.join(declared)}'"
        )
    for name, declaration in declared.items():
        if name not in given:
            if "defaultValue" not in declaration:
                return (
                    f"The value for the template parameter '{name}' is not provided. Please see "
                    "https://aka.ms/arm-create-parameter-file for usage details"
                )
            continue
        value = given[name]
        kind = str(declaration.get("type", "")).lower()
        accepted = _TYPES.get(kind, (object,))
        if not isinstance(value, accepted) or (kind == "int" and isinstance(value, bool)):
            return (
                f"Template parameter '{name}' was provided an invalid value. Expected a value of "
                f"type '{declaration.get('type')}', but received a value of type "
                f"'{type(value).__name__}'"
            )
        allowed = declaration.get("allowedValues")
        if allowed is not None and value not in allowed:
            return (
                f"The provided value '{value}' for the template parameter '{name}' is not valid. "
                "The parameter value is not part of the allowed value(s): "
                f"'{','.join(map(str, allowed))}'"
            )
        if isinstance(value, int) and not isinstance(value, bool):
            if "minValue" in declaration and value < declaration["minValue"]:
                return (
                    f"The provided value '{value}' for the template parameter '{name}' is not "
                    "valid. The value should be greater than or equal to "
                    f"'{declaration['minValue']}'"
                )
            if "maxValue" in declaration and value > declaration["maxValue"]:
                return (
                    f"The provided value '{value}' for the template parameter '{name}' is not "
                    f"valid. The value should be less than or equal to '{declaration['maxValue']}'"
                )
        if isinstance(value, str | list):
            if "minLength" in declaration and len(value) < declaration["minLength"]:
                return (
                    f"The provided value for the template parameter '{name}' is not valid. Length "
                    f"of the value should be greater than or equal to '{declaration['minLength']}'"
                )
            if "maxLength" in declaration and len(value) > declaration["maxLength"]:
                return (
                    f"The provided value for the template parameter '{name}' is not valid. Length "
                    f"of the value should be less than or equal to '{declaration['maxLength']}'"
                )
    return None


@dataclass
class Run:
    """One deployment's resource operations, in the order they ran."""

    deployment_id: str
    operations: list[dict[str, Any]] = field(default_factory=list)

    def record(
        self, resource_id: str, resource_type: str, response: Response, started: float
    ) -> None:
        failed = response.status >= 400
        body = response.json() if response.body else None
        entry: dict[str, Any] = {
            "id": f"{self.deployment_id}/operations/{uuid.uuid4().hex.upper()[:16]}",
            "properties": {
                "provisioningOperation": "Create",
                "provisioningState": "Failed" if failed else "Succeeded",
                "timestamp": now_iso(),
                "duration": f"PT{time.monotonic() - started:.3f}S",
                "trackingId": str(uuid.uuid4()),
                "statusCode": str(response.status),
                "targetResource": {
                    "id": resource_id,
                    "resourceType": resource_type,
                    "resourceName": resource_id.rsplit("/", 1)[-1],
                },
            },
        }
        entry["operationId"] = entry["id"].rsplit("/", 1)[-1]
        if failed and isinstance(body, dict):
            entry["properties"]["statusMessage"] = body
        self.operations.append(entry)


class Deployments:
    def __init__(self, double: AzureDouble) -> None:
        self.double = double
        self.runs: dict[str, Run] = {}

    # ---- routing ---------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        target = parse_path(request.path)
        rest = [p.lower() for p in target.rest]
        if target.namespace is None:  # .../resourcegroups/{rg}/deployments/{name}/operations
            rest = [p.lower() for p in request.path.split("/") if p][4:]
        bad = self._api_version(request)
        if bad:
            return bad
        if target.resource_group is None or not rest or rest[0] != "deployments":
            return no_route(request)
        group_id = target.resource_group_id
        if len(rest) == 1:
            if request.method != "GET":
                return method_not_allowed(request)
            listed = [
                d
                for d in self.double.store.list(group_id + "/providers/")
                if d.get("type") == DEPLOYMENT_TYPE
            ]
            return Response.of_json(200, {"value": listed})
        name = target.rest[1] if target.namespace else [p for p in request.path.split("/") if p][5]
        deployment_id = f"{group_id}/providers/{DEPLOYMENT_TYPE}/{name}"
        action = rest[2] if len(rest) > 2 else ""
        if action == "" and request.method == "PUT":
            return self.create(request, deployment_id, name)
        if action == "" and request.method == "GET":
            found = self.double.store.get(deployment_id)
            return Response.of_json(200, found) if found else _not_found(name)
        if action == "" and request.method == "HEAD":
            return Response(204 if self.double.store.get(deployment_id) else 404)
        if action == "" and request.method == "DELETE":
            if self.double.store.get(deployment_id) is None:
                return Response(204)
            self.double.store.delete(deployment_id)
            self.runs.pop(deployment_id.lower(), None)
            return Response(200)
        if action == "validate" and request.method == "POST":
            return self.validate(request, deployment_id, name)
        if action == "whatif" and request.method == "POST":
            return self.what_if(request, deployment_id, name)
        if action == "operations" and request.method == "GET":
            if self.double.store.get(deployment_id) is None:
                return _not_found(name)
            run = self.runs.get(deployment_id.lower())
            return Response.of_json(200, {"value": run.operations if run else []})
        if action == "cancel" and request.method == "POST":
            return arm_error(
                409,
                "DeploymentCannotBeCancelled",
                f"The deployment '{name}' cannot be cancelled: it is not running.",
            )
        return no_route(request)

    def _api_version(self, request: Request) -> Response | None:
        return require_api_version(request, set(api_versions.accepted(DEPLOYMENT_TYPE)))

    # ---- the checks every verb shares ------------------------------------------------------

    def _prepare(
        self, request: Request, name: str, model: str = "Deployment"
    ) -> tuple[dict[str, Any], dict[str, Any], Response | None]:
        """The request body and the resolved parameter values, or ARM's 400."""
        body, problem = checked_body(request, f"azure.mgmt.resource.deployments.models.{model}")
        if problem:
            return body, {}, problem
        properties = body["properties"]
        template = properties.get("template")
        if not isinstance(template, dict):
            return (
                body,
                {},
                arm_error(
                    400,
                    "InvalidRequestContent",
                    "The double accepts inline templates only (properties.template); templateLink "
                    "needs a reachable URL.",
                ),
            )
        given = {
            key: entry.get("value")
            for key, entry in (properties.get("parameters") or {}).items()
            if isinstance(entry, dict) and entry.get("value") is not None
        }
        message = check_parameters(template, given)
        if message:
            return body, {}, Response.of_json(400, {"error": _invalid_template(message)})
        try:
            values = self._resolve(template, given, name, request)
        except (ExpressionError, KeyError, TypeError) as error:
            return body, {}, Response.of_json(400, {"error": _invalid_template(str(error))})
        return body, values, None

    def _scope(self, request: Request, name: str) -> dict[str, Any]:
        target = parse_path(request.path)
        group = self.double.store.get(target.resource_group_id) or {}
        subscription = self.double.arm.subscription_body()
        return {
            "resourceGroup": lambda: {
                "id": target.resource_group_id,
                "name": group.get("name", target.resource_group),
                "location": group.get("location"),
                "type": "Microsoft.Resources/resourceGroups",
            },
            "subscription": lambda: subscription,
            "deployment": lambda: {"name": name},
        }

    def _resolve(
        self, template: dict[str, Any], given: dict[str, Any], name: str, request: Request
    ) -> dict[str, Any]:
        scope = self._scope(request, name)
        for param, declaration in (template.get("parameters") or {}).items():
            scope[param] = (
                given[param] if param in given else evaluate(declaration["defaultValue"], scope)
            )
        return {param: scope[param] for param in template.get("parameters") or {}}

    def _deployment_body(
        self,
        deployment_id: str,
        name: str,
        body: dict[str, Any],
        values: dict[str, Any],
        state: str,
    ) -> dict[str, Any]:
        template = body["properties"]["template"]
        declared = template.get("parameters") or {}
        shown = {
            key: {"type": declared[key].get("type", "String").capitalize()}
            | ({} if "secure" in str(declared[key].get("type", "")).lower() else {"value": value})
            for key, value in values.items()
        }
        return {
            "id": deployment_id,
            "name": name,
            "type": DEPLOYMENT_TYPE,
            "properties": {
                "provisioningState": state,
                "mode": body["properties"].get("mode", "Incremental"),
                "timestamp": now_iso(),
                "correlationId": str(uuid.uuid4()),
                "parameters": shown,
                "templateHash": str(abs(hash(str(template))) % 10**19),
                "outputs": {},
                "outputResources": [],
            },
        }

    # ---- verbs -----------------------------------------------------------------------------

    def validate(self, request: Request, deployment_id: str, name: str) -> Response:
        body, values, problem = self._prepare(request, name)
        if problem:
            return problem
        result = self._deployment_body(deployment_id, name, body, values, "Succeeded")
        plan = self._plan(body, values, deployment_id)
        result["properties"]["validatedResources"] = [{"id": step.resource_id} for step in plan]
        return Response.of_json(200, result)

    def what_if(self, request: Request, deployment_id: str, name: str) -> Response:
        body, values, problem = self._prepare(request, name, "DeploymentWhatIf")
        if problem:
            return problem

        def changes(_: Operation) -> dict[str, Any]:
            listed = []
            for step in self._plan(body, values, deployment_id):
                before = self.double.store.get(step.resource_id)
                change = "Create" if before is None else ("Ignore" if step.existing else "Modify")
                if step.existing and before is None:
                    change = "Unsupported"
                listed.append(
                    {
                        "resourceId": step.resource_id,
                        "changeType": change,
                        "before": before,
                        "after": step.body,
                    }
                )
            return {"status": "Succeeded", "properties": {"changes": listed}}

        operation = self.double.operations.start(
            self.double.subscription_id, NAMESPACE, "global", request.query["api-version"], changes
        )
        response = self.double.operations.accepted(operation)
        del response.headers["Azure-AsyncOperation"]  # what-if polls Location
        return response

    def create(self, request: Request, deployment_id: str, name: str) -> Response:
        body, values, problem = self._prepare(request, name)
        if problem:
            return problem
        existing = self.double.store.get(deployment_id)
        if existing and existing["properties"]["provisioningState"] in ("Accepted", "Running"):
            return arm_error(
                409,
                "DeploymentActive",
                f"The deployment '{name}' is already running; wait for it or cancel it.",
            )
        deployment = self._deployment_body(deployment_id, name, body, values, "Accepted")
        self.double.store.put(deployment_id, deployment)
        run = Run(deployment_id)
        self.runs[deployment_id.lower()] = run

        def work(_: Operation) -> None:
            self._run(deployment_id, body, values, run, request, name)

        operation = self.double.operations.start(
            self.double.subscription_id,
            NAMESPACE,
            "global",
            request.query["api-version"],
            work,
        )
        return self.double.operations.accepted(operation, 200 if existing else 201, deployment)

    # ---- what the template declares ---------------------------------------------------------

    def _plan(self, body: dict[str, Any], values: dict[str, Any], deployment_id: str) -> list[Step]:
        template = body["properties"]["template"]
        if (template.get("metadata") or {}).get("name") != INFERENCE_TEMPLATE:
            return []
        return inference_plan(values, parse_path(deployment_id).resource_group_id)

    def _run(
        self,
        deployment_id: str,
        body: dict[str, Any],
        values: dict[str, Any],
        run: Run,
        request: Request,
        name: str,
    ) -> None:
        def finish(
            state: str, outputs: dict[str, Any] | None = None, error: dict[str, Any] | None = None
        ) -> None:
            deployment = self.double.store.get(deployment_id)
            if deployment is None:
                return
            deployment["properties"]["provisioningState"] = state
            deployment["properties"]["timestamp"] = now_iso()
            if outputs is not None:
                deployment["properties"]["outputs"] = outputs
            deployment["properties"]["outputResources"] = [
                {"id": op["properties"]["targetResource"]["id"]}
                for op in run.operations
                if op["properties"]["provisioningState"] == "Succeeded"
            ]
            if error is not None:
                deployment["properties"]["error"] = error
            self.double.store.put(deployment_id, deployment)

        finish("Running")
        injected = self.double.config.deployment_failure
        if injected is not None:
            error = {
                "code": "DeploymentFailed",
                "message": "At least one resource deployment operation failed. Please list "
                "deployment operations for details. Please see "
                "https://aka.ms/arm-deployment-operations for usage details.",
                "details": [injected],
            }
            finish("Failed", error=error)
            raise OperationFailed(error)
        module_outputs: dict[str, Any] = {}
        for step in self._plan(body, values, deployment_id):
            started = time.monotonic()
            response = step.execute(self.double)
            run.record(step.resource_id, step.resource_type, response, started)
            if response.status >= 400:
                detail = (response.json() or {}).get("error") or {
                    "code": str(response.status),
                    "message": response.body.decode(errors="replace"),
                }
                error = {
                    "code": "DeploymentFailed",
                    "message": "At least one resource deployment operation failed. Please list "
                    "deployment operations for details. Please see "
                    "https://aka.ms/arm-deployment-operations for usage details.",
                    "target": deployment_id,
                    "details": [detail],
                }
                finish("Failed", error=error)
                raise OperationFailed(error)
            if step.outputs is not None:
                module_outputs.update(step.outputs(response.json() or {}))
        scope = {**self._scope(request, name), **values, **module_outputs}
        outputs = {}
        for key, declaration in (body["properties"]["template"].get("outputs") or {}).items():
            try:
                value = evaluate(declaration["value"], scope)
            except (ExpressionError, KeyError, TypeError) as error:
                failure = _invalid_template(f"output {key}: {error}")
                finish("Failed", error=failure)
                raise OperationFailed(failure) from error
            outputs[key] = {
                "type": str(declaration.get("type", "string")).capitalize(),
                "value": value,
            }
        finish("Succeeded", outputs=outputs)


def _not_found(name: str) -> Response:
    return arm_error(404, "DeploymentNotFound", f"Deployment '{name}' could not be found.")


@dataclass
class Step:
    """One resource operation of the deployment: PUT the body (or, for an `existing` reference,
    only check the resource is there), then wait until the resource is provisioned."""

    resource_id: str
    resource_type: str
    api_version: str
    body: dict[str, Any] | None
    existing: bool = False
    outputs: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    prepare: Callable[[AzureDouble, dict[str, Any]], None] | None = None

    def execute(self, double: AzureDouble) -> Response:
        if self.existing:
            return double.internal_request("GET", self.resource_id, self.api_version, None)
        body = dict(self.body or {})
        if self.prepare is not None:
            self.prepare(double, body)
        response = double.internal_request("PUT", self.resource_id, self.api_version, body)
        if response.status >= 400:
            return response
        return self._wait(double, response)

    def _wait(self, double: AzureDouble, response: Response) -> Response:
        """Follow the resource's own long-running protocol, then answer with the resource."""
        deadline = time.monotonic() + RESOURCE_WAIT_S
        status_url = response.headers.get("Azure-AsyncOperation")
        while status_url and time.monotonic() < deadline:
            path, _, query = status_url.split("://", 1)[1].partition("/")[2].partition("?")
            version = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get(
                "api-version", self.api_version
            )
            status = double.internal_request("GET", "/" + path, version, None)
            state = str((status.json() or {}).get("status", "")).lower()
            if status.status >= 400 or state in TERMINAL_STATES:
                if state != "succeeded":
                    error = (status.json() or {}).get("error") or {
                        "code": "ResourceOperationFailure",
                        "message": f"The resource operation completed with state '{state}'.",
                    }
                    return Response.of_json(
                        400 if status.status < 400 else status.status, {"error": error}
                    )
                break
            time.sleep(0.05)
        while time.monotonic() < deadline:
            current = double.internal_request("GET", self.resource_id, self.api_version, None)
            if current.status >= 400:
                return current
            state = str(
                ((current.json() or {}).get("properties") or {}).get(
                    "provisioningState", "Succeeded"
                )
            )
            if state.lower() in TERMINAL_STATES:
                if state.lower() != "succeeded":
                    return Response.of_json(
                        400,
                        {
                            "error": {
                                "code": "ResourceDeploymentFailure",
                                "message": f"The resource '{self.resource_id}' ended in "
                                f"provisioning state '{state}'.",
                            }
                        },
                    )
                return current
            time.sleep(0.05)
        return Response.of_json(
            500,
            {
                "error": {
                    "code": "ResourceDeploymentTimeout",
                    "message": f"{self.resource_id} timed out.",
                }
            },
        )


def _version(namespace: str, template_version: str) -> str:
    accepted = api_versions.accepted(namespace)
    return template_version if template_version in accepted else max(accepted)


def inference_plan(p: dict[str, Any], group_id: str) -> list[Step]:
    """What infra/provision/inference.bicep and its modules declare, in dependency order."""
    storage_v = _version("Microsoft.Storage", "2025-06-01")
    logs_v = _version("Microsoft.OperationalInsights", "2025-07-01")
    app_v = _version("Microsoft.App", "2025-07-01")
    account_id = f"{group_id}/providers/Microsoft.Storage/storageAccounts/{p['storageAccountName']}"
    workspace_id = (
        f"{group_id}/providers/Microsoft.OperationalInsights/workspaces/{p['acaLogAnalyticsName']}"
    )
    environment_id = (
        f"{group_id}/providers/Microsoft.App/managedEnvironments/{p['acaEnvironmentName']}"
    )
    app_id = f"{group_id}/providers/Microsoft.App/containerApps/{p['acaAppName']}"
    location, tags = p["location"], p["tags"]
    steps: list[Step] = []
    if p["useExistingStorageAccount"]:
        steps.append(
            Step(account_id, "Microsoft.Storage/storageAccounts", storage_v, None, existing=True)
        )
    else:
        steps += [
            Step(
                account_id,
                "Microsoft.Storage/storageAccounts",
                storage_v,
                {
                    "location": location,
                    "tags": tags,
                    "kind": "StorageV2",
                    "sku": {"name": "Standard_LRS"},
                    "properties": {
                        "accessTier": "Hot",
                        "allowBlobPublicAccess": False,
                        "allowCrossTenantReplication": False,
                        "allowSharedKeyAccess": True,
                        "largeFileSharesState": "Enabled",
                        "minimumTlsVersion": "TLS1_2",
                        "publicNetworkAccess": "Enabled",
                        "supportsHttpsTrafficOnly": True,
                        "networkAcls": {"bypass": "AzureServices", "defaultAction": "Allow"},
                    },
                },
            ),
            Step(
                f"{account_id}/fileServices/default",
                "Microsoft.Storage/storageAccounts/fileServices",
                storage_v,
                {"properties": {"shareDeleteRetentionPolicy": {"enabled": True, "days": 7}}},
            ),
            Step(
                f"{account_id}/fileServices/default/shares/{p['fileShareName']}",
                "Microsoft.Storage/storageAccounts/fileServices/shares",
                storage_v,
                {
                    "properties": {
                        "accessTier": "TransactionOptimized",
                        "enabledProtocols": "SMB",
                        "shareQuota": p["fileShareQuotaGiB"],
                    }
                },
            ),
        ]
    creates_environment = not p["useExistingEnvironment"]
    if creates_environment and not p["useExistingLogAnalytics"]:
        steps.append(
            Step(
                workspace_id,
                "Microsoft.OperationalInsights/workspaces",
                logs_v,
                {
                    "location": location,
                    "tags": tags,
                    "properties": {
                        "sku": {"name": "PerGB2018"},
                        "retentionInDays": p["logRetentionInDays"],
                        "workspaceCapping": {"dailyQuotaGb": -1},
                        "features": {"enableLogAccessUsingOnlyResourcePermissions": True},
                        "publicNetworkAccessForIngestion": "Enabled",
                        "publicNetworkAccessForQuery": "Enabled",
                    },
                },
            )
        )
    if creates_environment:
        profile_type = p["gpuProfileType"]
        consumption = {"name": "Consumption", "workloadProfileType": "Consumption"}
        gpu: dict[str, Any] = {
            "name": p["workloadProfileName"],
            "workloadProfileType": profile_type,
        }
        if profile_type.startswith("NC"):
            gpu |= {
                "minimumCount": p["minimumInstanceCount"],
                "maximumCount": p["maximumInstanceCount"],
            }

        def with_log_keys(double: AzureDouble, body: dict[str, Any]) -> None:
            workspace = double.internal_request("GET", workspace_id, logs_v, None).json() or {}
            keys = (
                double.internal_request("POST", f"{workspace_id}/sharedKeys", logs_v, None).json()
                or {}
            )
            body["properties"]["appLogsConfiguration"] = {
                "destination": "log-analytics",
                "logAnalyticsConfiguration": {
                    "customerId": (workspace.get("properties") or {}).get("customerId", ""),
                    "sharedKey": keys.get("primarySharedKey", ""),
                },
            }

        def with_account_key(double: AzureDouble, body: dict[str, Any]) -> None:
            keys = (
                double.internal_request("POST", f"{account_id}/listKeys", storage_v, None).json()
                or {}
            )
            body["properties"]["azureFile"]["accountKey"] = (keys.get("keys") or [{}])[0].get(
                "value", ""
            )

        steps += [
            Step(
                environment_id,
                "Microsoft.App/managedEnvironments",
                app_v,
                {
                    "location": location,
                    "tags": tags,
                    "properties": {
                        "publicNetworkAccess": "Enabled",
                        "zoneRedundant": False,
                        "workloadProfiles": [consumption]
                        if profile_type == "Consumption"
                        else [consumption, gpu],
                    },
                },
                prepare=with_log_keys,
            ),
            Step(
                f"{environment_id}/storages/{p['acaEnvironmentStorageName']}",
                "Microsoft.App/managedEnvironments/storages",
                app_v,
                {
                    "properties": {
                        "azureFile": {
                            "accountName": p["storageAccountName"],
                            "shareName": p["fileShareName"],
                            "accessMode": p["fileShareAccessMode"],
                        }
                    }
                },
                prepare=with_account_key,
            ),
        ]
    else:
        steps.append(
            Step(environment_id, "Microsoft.App/managedEnvironments", app_v, None, existing=True)
        )
    steps.append(
        Step(
            app_id,
            "Microsoft.App/containerApps",
            app_v,
            container_app_body(p, environment_id),
            outputs=lambda app: {
                "app": {
                    "outputs": {
                        "name": app.get("name"),
                        "endpoint": "https://"
                        + str(
                            (
                                ((app.get("properties") or {}).get("configuration") or {}).get(
                                    "ingress"
                                )
                                or {}
                            ).get("fqdn")
                        ),
                    }
                }
            },
        )
    )
    return steps


REPLICA_RESOURCES = {
    "Consumption": (4.0, "8Gi"),
    "Consumption-GPU-NC8as-T4": (8.0, "56Gi"),
    "Consumption-GPU-NC24-A100": (24.0, "220Gi"),
    "NC24-A100": (24.0, "220Gi"),
    "NC48-A100": (48.0, "440Gi"),
    "NC96-A100": (96.0, "880Gi"),
}


def container_app_body(p: dict[str, Any], environment_id: str) -> dict[str, Any]:
    """modules/app.bicep's container app."""
    port, mount = 7860, "/mount"
    command = (
        ["python", "/mount/app/bootstrap.py"]
        if not p["defaultCommands"]
        else ["/bin/bash", "-c", "; ".join(p["defaultCommands"])]
    )
    cpu, memory = REPLICA_RESOURCES[p["gpuProfileType"]]

    def probe(
        kind: str, path: str, period: int, failures: int, delay: int | None = None
    ) -> dict[str, Any]:
        found: dict[str, Any] = {
            "type": kind,
            "httpGet": {"path": path, "port": port, "scheme": "HTTP"},
            "periodSeconds": period,
            "failureThreshold": failures,
            "timeoutSeconds": 5,
        }
        if delay is not None:
            found["initialDelaySeconds"] = delay
        return found

    return {
        "location": p["location"],
        "tags": p["tags"],
        "properties": {
            "environmentId": environment_id,
            "workloadProfileName": "Consumption"
            if p["gpuProfileType"] == "Consumption"
            else p["workloadProfileName"],
            "configuration": {
                "activeRevisionsMode": "Single",
                "ingress": {
                    "external": True,
                    "targetPort": port,
                    "transport": "auto",
                    "allowInsecure": False,
                    "traffic": [{"latestRevision": True, "weight": 100}],
                },
                "secrets": [
                    {"name": "api-key-primary", "value": p["apiKeyPrimary"]},
                    {"name": "api-key-secondary", "value": p["apiKeySecondary"]},
                ],
            },
            "template": {
                "containers": [
                    {
                        "name": "inference",
                        "image": p["containerImage"],
                        "command": command,
                        "env": [
                            {"name": "ACA_INFER_MOUNT_ROOT", "value": mount},
                            {"name": "ACA_INFER_MODEL_PATH", "value": p["modelPath"]},
                            {"name": "ACA_INFER_ADAPTER_PATH", "value": p["adapterPath"]},
                            {"name": "ACA_INFER_PORT", "value": str(port)},
                            {"name": "ACA_INFER_API_KEY_PRIMARY", "secretRef": "api-key-primary"},
                            {
                                "name": "ACA_INFER_API_KEY_SECONDARY",
                                "secretRef": "api-key-secondary",
                            },
                            {"name": "HF_HUB_OFFLINE", "value": "1"},
                            {"name": "GRADIO_ANALYTICS_ENABLED", "value": "False"},
                        ],
                        "resources": {"cpu": cpu, "memory": memory},
                        "probes": [
                            probe(
                                "Startup",
                                "/ready",
                                p["startupProbePeriodSeconds"],
                                p["startupProbeFailureThreshold"],
                                p["startupProbeInitialDelaySeconds"],
                            ),
                            probe("Liveness", "/health", 30, 3),
                            probe("Readiness", "/ready", 10, 3),
                        ],
                        "volumeMounts": [{"volumeName": "model-share", "mountPath": mount}],
                    }
                ],
                "scale": {
                    "minReplicas": p["minimumInstanceCount"],
                    "maxReplicas": p["maximumInstanceCount"],
                    "rules": [
                        {
                            "name": "http-concurrency",
                            "http": {
                                "metadata": {"concurrentRequests": str(p["concurrentRequests"])}
                            },
                        }
                    ],
                },
                "volumes": [
                    {
                        "name": "model-share",
                        "storageType": "AzureFile",
                        "storageName": p["acaEnvironmentStorageName"],
                    }
                ],
            },
        },
    }

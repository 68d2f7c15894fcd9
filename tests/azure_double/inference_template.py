"""What infra/provision/inference.bicep declares, module by module, as the ARM requests its
deployment makes. The double is a double of ARM for this template, not a template engine: this
mirrors the .bicep files (tests/infra checks them against the SDK models; a change there shows
up as a difference here in tests/azure_double/test_arm.py).

Each module is a nested deployment (`<deployment>-storage`, ...), as ARM runs Bicep modules;
`existing` references only read the resource they name (a missing one fails the module that
uses it, as `listKeys()` or `.properties` would)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.azure_double import api_versions
from tests.azure_double.http import Response

if TYPE_CHECKING:
    from tests.azure_double.server import AzureDouble

TEMPLATE_NAME = "aca-infer inference"  # the template's `metadata name`
TERMINAL_STATES = {"succeeded", "failed", "canceled"}
RESOURCE_WAIT_S = 900.0
POLL_S = 0.05

# Fills in what the template reads from other resources (keys, ids); an error stops the step.
Prepare = Callable[["AzureDouble", dict[str, Any]], Response | None]


def _failure(code: str, message: str, status: int = 400) -> Response:
    return Response.of_json(status, {"error": {"code": code, "message": message}})


@dataclass
class Step:
    """One resource of a module: PUT its body, then follow the resource's own long-running
    protocol until it is provisioned; answer with the resource (or the error)."""

    resource_id: str
    resource_type: str
    api_version: str
    body: dict[str, Any]
    prepare: Prepare | None = None

    def execute(self, double: AzureDouble) -> Response:
        body = {key: value for key, value in self.body.items()}
        if self.prepare is not None:
            problem = self.prepare(double, body)
            if problem is not None:
                return problem
        response = double.internal_request("PUT", self.resource_id, self.api_version, body)
        if response.status >= 400:
            return response
        return self._wait(double, response)

    def _wait(self, double: AzureDouble, response: Response) -> Response:
        deadline = time.monotonic() + RESOURCE_WAIT_S

        def waiting() -> bool:
            return time.monotonic() < deadline and not double.stopping.wait(POLL_S)

        status_url = response.headers.get("Azure-AsyncOperation")
        while status_url and waiting():
            path, _, query = status_url.split("://", 1)[1].partition("/")[2].partition("?")
            version = dict(p.split("=", 1) for p in query.split("&") if "=" in p).get(
                "api-version", self.api_version
            )
            status = double.internal_request("GET", "/" + path, version, None)
            state = str((status.json() or {}).get("status", "")).lower()
            if status.status >= 400:
                return status
            if state in TERMINAL_STATES:
                if state != "succeeded":
                    error = (status.json() or {}).get("error") or {
                        "code": "ResourceDeploymentFailure",
                        "message": f"The resource operation completed with terminal "
                        f"provisioning state '{state}'.",
                    }
                    return Response.of_json(400, {"error": error})
                break
        while waiting():
            current = double.internal_request("GET", self.resource_id, self.api_version, None)
            if current.status >= 400:
                return current
            properties = (current.json() or {}).get("properties") or {}
            state = str(properties.get("provisioningState", "Succeeded")).lower()
            if state in TERMINAL_STATES:
                if state != "succeeded":
                    return _failure(
                        "ResourceDeploymentFailure",
                        f"The resource '{self.resource_id}' ended in provisioning state '{state}'.",
                    )
                return current
        return _failure(
            "ResourceDeploymentTimeout",
            f"'{self.resource_id}' was not provisioned in time (or the double stopped).",
            500,
        )


@dataclass
class Module:
    """A Bicep module: a nested deployment named `<deployment>-<suffix>` with its resources."""

    suffix: str
    steps: list[Step]
    # Outputs the main template reads as `<symbol>.outputs.<name>`, from the last resource.
    symbol: str = ""
    outputs: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda _: {})

    def deployment_name(self, parent: str) -> str:
        return f"{parent}-{self.suffix}"[:64]


def _version(namespace: str, template_version: str) -> str:
    accepted = api_versions.accepted(namespace)
    return template_version if template_version in accepted else max(accepted)


def _read(double: AzureDouble, method: str, resource_id: str, version: str) -> Response:
    return double.internal_request(method, resource_id, version, None)


def plan(p: dict[str, Any], group_id: str) -> list[Module]:
    """The modules inference.bicep deploys for these parameter values, in dependency order."""
    storage_v = _version("Microsoft.Storage", "2025-06-01")
    logs_v = _version("Microsoft.OperationalInsights", "2025-07-01")
    app_v = _version("Microsoft.App", "2025-07-01")
    providers = f"{group_id}/providers"
    account_id = f"{providers}/Microsoft.Storage/storageAccounts/{p['storageAccountName']}"
    workspace_id = (
        f"{providers}/Microsoft.OperationalInsights/workspaces/{p['acaLogAnalyticsName']}"
    )
    environment_id = f"{providers}/Microsoft.App/managedEnvironments/{p['acaEnvironmentName']}"
    app_id = f"{providers}/Microsoft.App/containerApps/{p['acaAppName']}"
    location, tags = p["location"], p["tags"]
    modules: list[Module] = []

    if not p["useExistingStorageAccount"]:
        modules.append(
            Module(
                "storage",
                [
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
                                "networkAcls": {
                                    "bypass": "AzureServices",
                                    "defaultAction": "Allow",
                                },
                            },
                        },
                    ),
                    Step(
                        f"{account_id}/fileServices/default",
                        "Microsoft.Storage/storageAccounts/fileServices",
                        storage_v,
                        {
                            "properties": {
                                "shareDeleteRetentionPolicy": {"enabled": True, "days": 7}
                            }
                        },
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
                ],
            )
        )

    creates_environment = not p["useExistingEnvironment"]
    if creates_environment and not p["useExistingLogAnalytics"]:
        modules.append(
            Module(
                "monitoring",
                [
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
                ],
            )
        )

    if creates_environment:

        def with_log_analytics(double: AzureDouble, body: dict[str, Any]) -> Response | None:
            # workspace.properties.customerId and workspace.listKeys() of an `existing` reference
            workspace = _read(double, "GET", workspace_id, logs_v)
            if workspace.status >= 400:
                return workspace
            keys = _read(double, "POST", f"{workspace_id}/sharedKeys", logs_v)
            if keys.status >= 400:
                return keys
            body["properties"] = {
                **body["properties"],
                "appLogsConfiguration": {
                    "destination": "log-analytics",
                    "logAnalyticsConfiguration": {
                        "customerId": workspace.json()["properties"]["customerId"],
                        "sharedKey": keys.json()["primarySharedKey"],
                    },
                },
            }
            return None

        def with_account_key(double: AzureDouble, body: dict[str, Any]) -> Response | None:
            # storageAccount.listKeys().keys[0].value of an `existing` reference
            keys = _read(double, "POST", f"{account_id}/listKeys", storage_v)
            if keys.status >= 400:
                return keys
            azure_file = {
                **body["properties"]["azureFile"],
                "accountKey": keys.json()["keys"][0]["value"],
            }
            body["properties"] = {"azureFile": azure_file}
            return None

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
        modules.append(
            Module(
                "environment",
                [
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
                                "workloadProfiles": (
                                    [consumption]
                                    if profile_type == "Consumption"
                                    else [consumption, gpu]
                                ),
                            },
                        },
                        prepare=with_log_analytics,
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
                ],
            )
        )

    def app_outputs(app: dict[str, Any]) -> dict[str, Any]:
        ingress = ((app.get("properties") or {}).get("configuration") or {}).get("ingress") or {}
        return {"name": app.get("name"), "endpoint": f"https://{ingress.get('fqdn')}"}

    modules.append(
        Module(
            "app",
            [
                Step(
                    app_id,
                    "Microsoft.App/containerApps",
                    app_v,
                    container_app_body(p, environment_id),
                )
            ],
            symbol="app",
            outputs=app_outputs,
        )
    )
    return modules


REPLICA_RESOURCES = {
    "Consumption": (4.0, "8Gi"),
    "Consumption-GPU-NC8as-T4": (8.0, "56Gi"),
    "Consumption-GPU-NC24-A100": (24.0, "220Gi"),
    "NC24-A100": (24.0, "220Gi"),
    "NC48-A100": (48.0, "440Gi"),
    "NC96-A100": (96.0, "880Gi"),
}
APP_PORT = 7860
MOUNT_ROOT = "/mount"


def _probe(
    kind: str, path: str, period: int, failures: int, delay: int | None = None
) -> dict[str, Any]:
    probe: dict[str, Any] = {
        "type": kind,
        "httpGet": {"path": path, "port": APP_PORT, "scheme": "HTTP"},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 5,
    }
    if delay is not None:
        probe["initialDelaySeconds"] = delay
    return probe


def container_app_body(p: dict[str, Any], environment_id: str) -> dict[str, Any]:
    """modules/app.bicep's container app."""
    command = (
        ["/bin/bash", "-c", "; ".join(p["defaultCommands"])]
        if p["defaultCommands"]
        else ["python", f"{MOUNT_ROOT}/app/bootstrap.py"]
    )
    cpu, memory = REPLICA_RESOURCES[p["gpuProfileType"]]
    cpu_only = p["gpuProfileType"] == "Consumption"
    return {
        "location": p["location"],
        "tags": p["tags"],
        "properties": {
            "environmentId": environment_id,
            "workloadProfileName": "Consumption" if cpu_only else p["workloadProfileName"],
            "configuration": {
                "activeRevisionsMode": "Single",
                "ingress": {
                    "external": True,
                    "targetPort": APP_PORT,
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
                            {"name": "ACA_INFER_MOUNT_ROOT", "value": MOUNT_ROOT},
                            {"name": "ACA_INFER_MODEL_PATH", "value": p["modelPath"]},
                            {"name": "ACA_INFER_ADAPTER_PATH", "value": p["adapterPath"]},
                            {"name": "ACA_INFER_PORT", "value": str(APP_PORT)},
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
                            _probe(
                                "Startup",
                                "/ready",
                                p["startupProbePeriodSeconds"],
                                p["startupProbeFailureThreshold"],
                                p["startupProbeInitialDelaySeconds"],
                            ),
                            _probe("Liveness", "/health", 30, 3),
                            _probe("Readiness", "/ready", 10, 3),
                        ],
                        "volumeMounts": [{"volumeName": "model-share", "mountPath": MOUNT_ROOT}],
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

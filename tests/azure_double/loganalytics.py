"""Microsoft.OperationalInsights workspaces: create/get/list/delete and sharedKeys (the
environment module reads the workspace's customerId and primary shared key), and the Log
Analytics query API (`POST /v1/workspaces/{customerId}/query`, served on the ARM listener, which
the launcher's ACA_INFER_LOGS_ENDPOINT points at) answering from the replicas' consoles."""

from __future__ import annotations

import base64
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from tests.azure_double.apps_logstream import SYSTEM_PREFIX
from tests.azure_double.http import Request, Response, arm_error
from tests.azure_double.resources import (
    api_version_problem,
    checked_body,
    child_id,
    deleted,
    location_problem,
    method_not_allowed,
    no_route,
    not_found,
    now_iso,
    target_of,
)

if TYPE_CHECKING:
    from tests.azure_double.server import AzureDouble

NAMESPACE = "Microsoft.OperationalInsights"
WORKSPACE_TYPE = "Microsoft.OperationalInsights/workspaces"
WORKSPACE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{2,61}[A-Za-z0-9]")


def install(double: AzureDouble) -> None:
    double.register_provider_handler(NAMESPACE, Workspaces(double).handle)


class Workspaces:
    def __init__(self, double: AzureDouble) -> None:
        self.double = double
        self.shared_keys: dict[str, dict[str, str]] = {}

    def handle(self, request: Request) -> Response:
        bad = api_version_problem(request, NAMESPACE)
        if bad:
            return bad
        target = target_of(request)
        rest = [p.lower() for p in target.rest]
        if rest == ["workspaces"] and request.method == "GET":
            prefix = (
                target.resource_group_id
                if target.resource_group
                else f"/subscriptions/{self.double.subscription_id}/resourceGroups/"
            )
            found = [w for w in self.double.store.list(prefix) if w.get("type") == WORKSPACE_TYPE]
            return Response.of_json(200, {"value": found})
        if target.resource_group is None or len(rest) < 2 or rest[0] != "workspaces":
            return no_route(request)
        workspace_id = child_id(target, 1)
        name = target.rest[1]
        existing = self.double.store.get(workspace_id)
        if rest[2:] == ["sharedkeys"] and request.method == "POST":
            if existing is None:
                return not_found(WORKSPACE_TYPE, name, target.resource_group)
            return Response.of_json(200, self.shared_keys[workspace_id.lower()])
        if len(rest) != 2:
            return no_route(request)
        if request.method == "GET":
            if existing is None:
                return not_found(WORKSPACE_TYPE, name, target.resource_group)
            return Response.of_json(200, existing)
        if request.method == "PUT":
            return self.put(request, workspace_id, name, existing)
        if request.method == "DELETE":
            return deleted(
                self.double,
                workspace_id,
                existing,
                lambda: self.shared_keys.pop(workspace_id.lower(), None),
            )
        return method_not_allowed(request)

    def put(
        self, request: Request, workspace_id: str, name: str, existing: dict[str, Any] | None
    ) -> Response:
        if not WORKSPACE_NAME.fullmatch(name):
            return arm_error(
                400,
                "InvalidWorkspaceName",
                f"Workspace name '{name}' is invalid: 4-63 letters, digits and hyphens, "
                "starting and ending with a letter or digit.",
            )
        body, problem = checked_body(request, "azure.mgmt.loganalytics.models.Workspace")
        if problem:
            return problem
        bad = location_problem(self.double, body["location"], WORKSPACE_TYPE)
        if bad:
            return bad
        properties: dict[str, Any] = {
            **(existing["properties"] if existing else {}),
            **(body.get("properties") or {}),
            "provisioningState": "Succeeded",
        }
        properties.setdefault("customerId", str(uuid.uuid4()))
        properties.setdefault("createdDate", now_iso())
        properties.setdefault("retentionInDays", 30)
        properties.setdefault("sku", {"name": "PerGB2018"})
        properties["modifiedDate"] = now_iso()
        workspace = {
            "id": workspace_id,
            "name": name,
            "type": WORKSPACE_TYPE,
            "location": body["location"].replace(" ", "").lower(),
            "tags": body.get("tags") or {},
            "properties": properties,
        }
        self.double.store.put(workspace_id, workspace)
        self.shared_keys.setdefault(
            workspace_id.lower(),
            {
                "primarySharedKey": base64.b64encode(secrets.token_bytes(64)).decode(),
                "secondarySharedKey": base64.b64encode(secrets.token_bytes(64)).decode(),
            },
        )
        return Response.of_json(200 if existing else 201, workspace)


# ---- the query API (api.loganalytics.io) ---------------------------------------------------

QUERY_PATH = re.compile(r"^/v1/workspaces/(?P<workspace>[^/]+)/query$", re.IGNORECASE)
# Only the KQL aca-infer sends: one table, the app-name filter, ago(), time order, two columns.
KQL = re.compile(
    r"^(?P<table>ContainerAppConsoleLogs_CL|ContainerAppSystemLogs_CL)"
    r" \| where ContainerAppName_s == '(?P<app>[a-z0-9-]+)'"
    r" \| where TimeGenerated > ago\((?P<amount>\d+)(?P<unit>[smhd])\)"
    r" \| order by TimeGenerated asc"
    r" \| project TimeGenerated, Log_s$"
)
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
SYSTEM_TABLE = "ContainerAppSystemLogs_CL"
PARTIAL_ERROR = "logs_partial_error"


def query_error(status: int, code: str, message: str) -> Response:
    return Response.of_json(status, {"error": {"code": code, "message": message}})


def answer_query(double: AzureDouble, request: Request) -> Response:
    """POST /v1/workspaces/{customerId}/query: the app's console (or system) lines of the
    replicas the apps module runs, as tables/columns/rows."""
    match = QUERY_PATH.match(request.path)
    if match is None or request.method != "POST":
        return query_error(404, "PathNotFoundError", f"No route {request.method} {request.path}.")
    workspaces = [
        w
        for w in double.store.list(f"/subscriptions/{double.subscription_id}/resourceGroups/")
        if w.get("type") == WORKSPACE_TYPE
        and w["properties"].get("customerId") == match["workspace"]
    ]
    if not workspaces:
        return query_error(404, "WorkspaceNotFoundError", "The workspace could not be found.")
    body = request.json() or {}
    kql = KQL.match(str(body.get("query", "")).strip())
    if kql is None:
        return query_error(400, "BadArgumentError", "The double answers only aca-infer's query.")
    cutoff = datetime.now(UTC) - timedelta(seconds=int(kql["amount"]) * UNIT_S[kql["unit"]])
    lines = double.apps.console_of(kql["app"]) if double.apps is not None else []
    system = kql["table"] == SYSTEM_TABLE
    rows = sorted(
        [line.time, line.text.removeprefix(SYSTEM_PREFIX)]
        for line in lines
        if line.text.startswith(SYSTEM_PREFIX) == system
        and datetime.fromisoformat(line.time.replace("Z", "+00:00")) > cutoff
    )
    columns = [{"name": "TimeGenerated", "type": "datetime"}, {"name": "Log_s", "type": "string"}]
    answer: dict[str, Any] = {
        "tables": [{"name": "PrimaryResult", "columns": columns, "rows": rows}]
    }
    # config.extra["logs_partial_error"]: answer as Log Analytics does when a query ran out of
    # limits, with the rows it has and an error beside them.
    partial = (double.config.extra or {}).get(PARTIAL_ERROR)
    if partial:
        answer["error"] = {"code": "PartialError", "message": str(partial)}
    return Response.of_json(200, answer)

"""What the double's Microsoft.App modules share: names, ARM error helpers, body helpers."""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.azure_double.http import Request, Response, arm_error

if TYPE_CHECKING:
    from tests.azure_double.lro import Operation
    from tests.azure_double.server import AzureDouble

NAMESPACE = "Microsoft.App"
ENVIRONMENT_TYPE = "Microsoft.App/managedEnvironments"
APP_TYPE = "Microsoft.App/containerApps"
MODELS = "azure.mgmt.appcontainers.models"


class Invalid(Exception):
    """Raised while checking a request: the handler answers with `response`."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.body.decode(errors="replace"))
        self.response = response


def now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def bad(code: str, message: str, target: str | None = None) -> Response:
    return arm_error(400, code, message, target)


def not_found(request: Request) -> Response:
    return arm_error(
        404,
        "NotFound",
        f"No route for {request.method} {request.path} in the double's {NAMESPACE}.",
    )


def missing(kind: str, name: str, resource_group: str) -> Response:
    return arm_error(
        404,
        "ResourceNotFound",
        f"The Resource '{NAMESPACE}/{kind}/{name}' under resource group '{resource_group}' "
        "was not found.",
    )


def start_operation(
    double: AzureDouble,
    request: Request,
    resource_id: str,
    location: str,
    work: Callable[[Any], Any],
) -> Operation:
    """An ARM long-running operation of this namespace running `work` in the background."""
    subscription = resource_id.split("/")[2]
    return double.operations.start(
        subscription, NAMESPACE, location, request.query.get("api-version", ""), work
    )


def without(body: Any, read_only: tuple[str, ...]) -> Any:
    """The body less the read-only properties a GET returned (ARM ignores those on a PUT, so a
    get-modify-put round trip works); everything else is checked against the SDK's model."""
    if not isinstance(body, dict):
        return body
    body = copy.deepcopy(body)
    for key in ("id", "name", "type", "systemData"):
        body.pop(key, None)
    properties = body.get("properties")
    if isinstance(properties, dict):
        for key in read_only:
            properties.pop(key, None)
    return body


def merge_patch(target: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7396): objects merge, anything else replaces, null deletes."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged

"""Small pieces every resource provider handler of the double shares."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tests.azure_double import api_versions
from tests.azure_double.arm import ArmPath, parse_path
from tests.azure_double.http import Request, Response, arm_error, require_api_version
from tests.azure_double.models import body_problem, model_class

if TYPE_CHECKING:
    from tests.azure_double.server import AzureDouble


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


def new_etag() -> str:
    return f'"{uuid.uuid4().hex}"'


def provider_prefix(target: ArmPath) -> str:
    """`/subscriptions/{sub}/resourceGroups/{rg}/providers/{ns}` as sent."""
    return f"{target.resource_group_id}/providers/{target.namespace}"


def child_id(target: ArmPath, depth: int) -> str:
    """The id of the resource named by the first `depth` type/name pairs of the path."""
    return "/".join([provider_prefix(target), *target.rest[: depth * 2]])


def not_found(resource_type: str, name: str, group: str | None) -> Response:
    return arm_error(
        404,
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}' under resource group '{group}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def deleted(
    double: AzureDouble,
    resource_id: str,
    existing: dict[str, Any] | None,
    forget: Callable[[], object],
) -> Response:
    """A synchronous DELETE as ARM answers it: 204 when nothing was there, else 200 once the
    resource and what the double keeps beside it (`forget`: keys, the share's folder) are gone."""
    if existing is None:
        return Response(204)
    double.store.delete(resource_id)
    forget()
    return Response(200)


def api_version_problem(request: Request, namespace: str) -> Response | None:
    return require_api_version(request, set(api_versions.accepted(namespace)))


def checked_body(request: Request, model: str) -> tuple[dict[str, Any], Response | None]:
    try:
        body = request.json()
    except ValueError:
        return {}, arm_error(400, "InvalidRequestContent", "The request content is not JSON.")
    problem = body_problem(model_class(model), body)
    return (body if isinstance(body, dict) else {}), problem


def location_problem(double: AzureDouble, location: str, resource_type: str) -> Response | None:
    if location.replace(" ", "").lower() not in double.config.locations:
        return arm_error(
            400,
            "LocationNotAvailableForResourceType",
            f"The provided location '{location}' is not available for resource type "
            f"'{resource_type}'. List of available regions for the resource type is "
            f"'{','.join(double.config.locations)}'.",
        )
    return None


def target_of(request: Request) -> ArmPath:
    return parse_path(request.path)


def method_not_allowed(request: Request) -> Response:
    return arm_error(
        405,
        "MethodNotAllowed",
        f"The requested resource does not support http method '{request.method}'.",
    )


def no_route(request: Request) -> Response:
    return arm_error(
        400,
        "InvalidResourceType",
        f"The resource type of '{request.path}' could not be found in the namespace.",
    )

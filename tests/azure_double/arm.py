"""ARM's own surface: path parsing, subscriptions, resource groups, providers, operation status,
and the routing of `/providers/<namespace>/` paths to the provider handlers."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.azure_double import api_versions
from tests.azure_double.http import Request, Response, arm_error, require_api_version
from tests.azure_double.models import body_problem, model_class

if TYPE_CHECKING:
    from tests.azure_double.server import AzureDouble

Handler = Callable[[Request], Response]

# Resource types each provider namespace offers (for provider GET; the types the project uses).
PROVIDER_TYPES: dict[str, tuple[str, ...]] = {
    "Microsoft.Resources": ("resourceGroups", "deployments", "deployments/operations"),
    "Microsoft.Storage": (
        "storageAccounts",
        "storageAccounts/fileServices",
        "storageAccounts/fileServices/shares",
        "checkNameAvailability",
    ),
    "Microsoft.OperationalInsights": ("workspaces",),
    "Microsoft.App": (
        "managedEnvironments",
        "managedEnvironments/storages",
        "containerApps",
        "containerApps/revisions",
        "containerApps/revisions/replicas",
        "locations/availableManagedEnvironmentsWorkloadProfileTypes",
        "locations/usages",
    ),
}


@dataclass(frozen=True)
class ArmPath:
    """`/subscriptions/{sub}[/resourceGroups/{rg}][/providers/{ns}/{rest...}]`, names as sent."""

    subscription: str | None
    resource_group: str | None
    namespace: str | None
    rest: tuple[str, ...]

    @property
    def resource_group_id(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"


def parse_path(path: str) -> ArmPath:
    parts = [p for p in path.split("/") if p]
    subscription = resource_group = namespace = None
    index = 0
    if len(parts) >= 2 and parts[0].lower() == "subscriptions":
        subscription, index = parts[1], 2
        if len(parts) >= 4 and parts[2].lower() == "resourcegroups":
            resource_group, index = parts[3], 4
    if len(parts) > index + 1 and parts[index].lower() == "providers":
        namespace, index = parts[index + 1], index + 2
    return ArmPath(subscription, resource_group, namespace, tuple(parts[index:]))


def canonical_namespace(namespace: str) -> str:
    for known in PROVIDER_TYPES:
        if known.lower() == namespace.lower():
            return known
    return namespace


def arm_id(*parts: str) -> str:
    return "/" + "/".join(p.strip("/") for p in parts)


class Arm:
    """Routes one ARM request. Auth, faults and the request log are the server's job."""

    def __init__(self, double: AzureDouble) -> None:
        self.double = double
        self.handlers: dict[str, Handler] = {}
        self.registration: dict[str, str] = {}

    # ---- routing ---------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        target = parse_path(request.path)
        head = [p.lower() for p in request.path.split("/") if p]
        if head == ["subscriptions"]:
            return self._subscriptions(request)
        if target.subscription is None:
            return arm_error(404, "NotFound", f"No route for '{request.path}'.")
        if target.subscription.lower() != self.double.subscription_id.lower():
            return arm_error(
                404,
                "SubscriptionNotFound",
                f"The subscription '{target.subscription}' could not be found.",
            )
        status = self._operation_status(request, target)
        if status is not None:
            return status
        if target.namespace is None:
            if target.resource_group is None and len(head) == 2:
                return self._subscription(request)
            if target.resource_group is None and head[2:] == ["resourcegroups"]:
                return self._list_resource_groups(request)
            if target.resource_group is not None and len(head) == 4:
                return self._resource_group(request, target)
            if target.resource_group is not None and head[4] == "deployments":
                # Deployment operations are addressed outside /providers/.
                if self.double.store.get(target.resource_group_id) is None:
                    return _group_not_found(target.resource_group)
                return self.handlers["microsoft.resources"](request)
            if target.resource_group is None and head[2:] == ["providers"]:
                return self._list_providers(request)
            return arm_error(404, "NotFound", f"No route for '{request.path}'.")
        if target.resource_group is None and (
            not target.rest or target.rest[0].lower() in ("register", "unregister")
        ):
            return self._provider(request, target)
        if (
            target.resource_group is not None
            and self.double.store.get(target.resource_group_id) is None
        ):
            return arm_error(
                404,
                "ResourceGroupNotFound",
                f"Resource group '{target.resource_group}' could not be found.",
            )
        namespace = canonical_namespace(target.namespace)
        if namespace != "Microsoft.Resources" and not self.provider_registered(namespace):
            return arm_error(
                409,
                "MissingSubscriptionRegistration",
                f"The subscription is not registered to use namespace '{namespace}'. "
                "See https://aka.ms/rps-not-found for how to register subscriptions.",
            )
        handler = self.handlers.get(namespace.lower())
        if handler is None:
            return arm_error(
                400,
                "NoRegisteredProviderFound",
                f"No registered resource provider found for namespace '{target.namespace}'.",
            )
        return handler(request)

    def _operation_status(self, request: Request, target: ArmPath) -> Response | None:
        rest = [p.lower() for p in target.rest]
        if target.namespace is None or len(rest) != 4 or rest[0] != "locations":
            return None
        operations = self.double.operations
        if operations.get(target.rest[3]) is None:
            return None  # not one of the core's: the provider handler may know it
        if rest[2] == "operationstatuses":
            return operations.status_response(target.rest[3])
        if rest[2] == "operationresults":
            return operations.result_response(target.rest[3])
        return None

    # ---- subscriptions ---------------------------------------------------------------------

    def subscription_body(self) -> dict[str, Any]:
        sub = self.double.subscription_id
        return {
            "id": f"/subscriptions/{sub}",
            "subscriptionId": sub,
            "tenantId": self.double.tenant_id,
            "displayName": "aca-infer Azure double",
            "state": "Enabled",
            "authorizationSource": "RoleBased",
            "subscriptionPolicies": {
                "locationPlacementId": "Public_2014-09-01",
                "quotaId": "PayAsYouGo_2014-09-01",
                "spendingLimit": "Off",
            },
        }

    def _subscriptions(self, request: Request) -> Response:
        return self._only_get(request) or Response.of_json(
            200, {"value": [self.subscription_body()]}
        )

    def _subscription(self, request: Request) -> Response:
        return self._only_get(request) or Response.of_json(200, self.subscription_body())

    def _only_get(self, request: Request) -> Response | None:
        bad = require_api_version(request, set(api_versions.accepted("Microsoft.Resources")))
        if bad:
            return bad
        if request.method != "GET":
            return _method_not_allowed(request)
        return None

    # ---- resource groups -------------------------------------------------------------------

    def _list_resource_groups(self, request: Request) -> Response:
        bad = self._only_get(request)
        if bad:
            return bad
        prefix = f"/subscriptions/{self.double.subscription_id}/resourceGroups/"
        groups = [
            g
            for g in self.double.store.list(prefix)
            if g.get("type") == "Microsoft.Resources/resourceGroups"
        ]
        return Response.of_json(200, {"value": groups})

    def _resource_group(self, request: Request, target: ArmPath) -> Response:
        bad = require_api_version(request, set(api_versions.accepted("Microsoft.Resources")))
        if bad:
            return bad
        group_id = target.resource_group_id
        existing = self.double.store.get(group_id)
        name = target.resource_group or ""
        if request.method == "HEAD":
            return Response(204 if existing else 404)
        if request.method == "GET":
            if existing is None:
                return _group_not_found(name)
            return Response.of_json(200, existing)
        if request.method == "PUT":
            return self._put_resource_group(request, group_id, name, existing)
        if request.method == "DELETE":
            if existing is None:
                return _group_not_found(name)
            return self._delete_resource_group(request, group_id)
        return _method_not_allowed(request)

    def _put_resource_group(
        self, request: Request, group_id: str, name: str, existing: dict[str, Any] | None
    ) -> Response:
        if not re.fullmatch(r"[-\w._()]{1,90}", name) or name.endswith("."):
            return arm_error(
                400,
                "InvalidResourceGroupName",
                f"The resource group name '{name}' is invalid: up to 90 letters, digits, "
                "underscores, hyphens, periods and parentheses, not ending in a period.",
            )
        body = request.json()
        problem = body_problem(
            model_class("azure.mgmt.resource.resources.models.ResourceGroup"), body
        )
        if problem:
            return problem
        location = str(body["location"]).replace(" ", "").lower()
        if location not in self.double.config.locations:
            return arm_error(
                400,
                "LocationNotAvailableForResourceGroup",
                f"The provided location '{body['location']}' is not available for resource "
                f"group. List of available regions is '{','.join(self.double.config.locations)}'.",
            )
        if existing is not None and existing["location"] != location:
            return arm_error(
                409,
                "InvalidResourceGroupLocation",
                f"Invalid resource group location '{location}'. The Resource group already "
                f"exists in location '{existing['location']}'.",
            )
        group = {
            "id": existing["id"] if existing else group_id,
            "name": existing["name"] if existing else name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": location,
            "tags": body.get("tags") or {},
            "properties": {"provisioningState": "Succeeded"},
        }
        if body.get("managedBy"):
            group["managedBy"] = body["managedBy"]
        self.double.store.put(group_id, group)
        return Response.of_json(200 if existing else 201, group)

    def _delete_resource_group(self, request: Request, group_id: str) -> Response:
        group = self.double.store.get(group_id) or {}
        group["properties"] = {"provisioningState": "Deleting"}
        self.double.store.put(group_id, group)

        def delete(_: Any) -> None:
            # Newest first, so apps go before the environments they run in.
            for resource in reversed(self.double.store.list(group_id + "/providers/")):
                path = parse_path(resource["id"])
                if len(path.rest) != 2 or path.namespace is None:
                    continue  # children go with their parent
                namespace = canonical_namespace(path.namespace)
                versions = api_versions.accepted(namespace)
                if versions:
                    self.double.internal_request("DELETE", resource["id"], max(versions), None)
            self.double.store.delete(group_id)

        operation = self.double.operations.start(
            self.double.subscription_id,
            "Microsoft.Resources",
            group.get("location", "global"),
            request.query["api-version"],
            delete,
        )
        response = self.double.operations.accepted(operation)
        del response.headers["Azure-AsyncOperation"]  # resource group delete polls Location only
        return response

    # ---- providers -------------------------------------------------------------------------

    def provider_registered(self, namespace: str) -> bool:
        state = self.registration.get(namespace.lower())
        if state is not None:
            return state in ("Registered", "Registering")
        return self.double.config.provider_registered(namespace)

    def provider_body(self, namespace: str) -> dict[str, Any]:
        state = self.registration.get(namespace.lower())
        if state is None:
            state = "Registered" if self.provider_registered(namespace) else "NotRegistered"
        return {
            "id": f"/subscriptions/{self.double.subscription_id}/providers/{namespace}",
            "namespace": namespace,
            "registrationState": state,
            "registrationPolicy": "RegistrationRequired",
            "resourceTypes": [
                {
                    "resourceType": resource_type,
                    "locations": list(self.double.config.locations),
                    "apiVersions": sorted(api_versions.accepted(namespace), reverse=True),
                }
                for resource_type in PROVIDER_TYPES.get(namespace, ())
            ],
        }

    def _list_providers(self, request: Request) -> Response:
        bad = self._only_get(request)
        if bad:
            return bad
        return Response.of_json(200, {"value": [self.provider_body(n) for n in PROVIDER_TYPES]})

    def _provider(self, request: Request, target: ArmPath) -> Response:
        bad = require_api_version(request, set(api_versions.accepted("Microsoft.Resources")))
        if bad:
            return bad
        namespace = canonical_namespace(target.namespace or "")
        if namespace not in PROVIDER_TYPES:
            return arm_error(
                404,
                "InvalidResourceNamespace",
                f"The resource namespace '{target.namespace}' is invalid.",
            )
        action = target.rest[0].lower() if target.rest else ""
        key = namespace.lower()
        if action == "" and request.method == "GET":
            if self.registration.get(key) == "Registering":
                # Registration completes between one call and the next (minutes on ARM).
                self.registration[key] = "Registered"
            return Response.of_json(200, self.provider_body(namespace))
        if action == "register" and request.method == "POST":
            self.registration[key] = (
                "Registered" if self.provider_registered(namespace) else "Registering"
            )
            return Response.of_json(200, self.provider_body(namespace))
        if action == "unregister" and request.method == "POST":
            self.registration[key] = "NotRegistered"
            return Response.of_json(200, self.provider_body(namespace))
        return _method_not_allowed(request)


def _group_not_found(name: str) -> Response:
    return arm_error(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")


def _method_not_allowed(request: Request) -> Response:
    return arm_error(
        405,
        "MethodNotAllowed",
        f"The requested resource does not support http method '{request.method}'.",
    )

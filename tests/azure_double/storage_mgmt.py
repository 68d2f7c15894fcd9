"""Microsoft.Storage management: storage accounts (create/get/list/update/delete, listKeys,
regenerateKey, checkNameAvailability across the whole double), the file service and file shares
as ARM resources. A share created here is a folder under `share_root`, which is what the Files
data plane serves and the replicas mount."""

from __future__ import annotations

import re
import shutil
from typing import TYPE_CHECKING, Any

from tests.azure_double.http import Request, Response, arm_error
from tests.azure_double.resources import (
    api_version_problem,
    checked_body,
    child_id,
    deleted,
    location_problem,
    method_not_allowed,
    new_etag,
    no_route,
    not_found,
    now_iso,
    target_of,
)

if TYPE_CHECKING:
    from tests.azure_double.server import AzureDouble

NAMESPACE = "Microsoft.Storage"
ACCOUNT_TYPE = "Microsoft.Storage/storageAccounts"
ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")
SHARE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
MODELS = "azure.mgmt.storage.models."


def install(double: AzureDouble) -> None:
    double.register_provider_handler(NAMESPACE, StorageProvider(double).handle)


class StorageProvider:
    def __init__(self, double: AzureDouble) -> None:
        self.double = double

    def handle(self, request: Request) -> Response:
        bad = api_version_problem(request, NAMESPACE)
        if bad:
            return bad
        target = target_of(request)
        rest = [p.lower() for p in target.rest]
        if target.resource_group is None:
            if rest == ["checknameavailability"] and request.method == "POST":
                return self.check_name(request)
            if rest == ["storageaccounts"] and request.method == "GET":
                prefix = f"/subscriptions/{self.double.subscription_id}/resourceGroups/"
                return Response.of_json(200, {"value": self._accounts(prefix)})
            return no_route(request)
        if rest == ["storageaccounts"] and request.method == "GET":
            return Response.of_json(200, {"value": self._accounts(target.resource_group_id)})
        if len(rest) < 2 or rest[0] != "storageaccounts":
            return no_route(request)
        account_id = child_id(target, 1)
        name = target.rest[1]
        if len(rest) == 2:
            return self.account(request, account_id, name, target.resource_group)
        account = self.double.store.get(account_id)
        if account is None:
            return not_found(ACCOUNT_TYPE, name, target.resource_group)
        if rest[2:] == ["listkeys"] and request.method == "POST":
            return Response.of_json(200, {"keys": self._keys(name)})
        if rest[2:] == ["regeneratekey"] and request.method == "POST":
            return self.regenerate_key(request, name)
        if rest[2:4] == ["fileservices", "default"]:
            if len(rest) == 4:
                return self.file_service(request, f"{account_id}/fileServices/default")
            if rest[4:5] == ["shares"]:
                return self.shares(request, account_id, name, target.rest[5:])
        return no_route(request)

    # ---- accounts --------------------------------------------------------------------------

    def _accounts(self, prefix: str) -> list[dict[str, Any]]:
        return [r for r in self.double.store.list(prefix) if r.get("type") == ACCOUNT_TYPE]

    def _taken(self, name: str) -> dict[str, Any] | None:
        prefix = f"/subscriptions/{self.double.subscription_id}/resourceGroups/"
        return next((a for a in self._accounts(prefix) if a["name"] == name), None)

    def check_name(self, request: Request) -> Response:
        body, problem = checked_body(
            request, MODELS + "StorageAccountCheckNameAvailabilityParameters"
        )
        if problem:
            return problem
        name = body["name"]
        if not ACCOUNT_NAME.fullmatch(name):
            return Response.of_json(
                200,
                {
                    "nameAvailable": False,
                    "reason": "AccountNameInvalid",
                    "message": f"{name} is not a valid storage account name. Storage account "
                    "name must be between 3 and 24 characters in length and use numbers and "
                    "lower-case letters only.",
                },
            )
        if self._taken(name):
            return Response.of_json(
                200,
                {
                    "nameAvailable": False,
                    "reason": "AlreadyExists",
                    "message": f"The storage account named {name} is already taken.",
                },
            )
        return Response.of_json(200, {"nameAvailable": True})

    def account(self, request: Request, account_id: str, name: str, group: str | None) -> Response:
        existing = self.double.store.get(account_id)
        if request.method == "GET":
            return (
                Response.of_json(200, existing)
                if existing
                else not_found(ACCOUNT_TYPE, name, group)
            )
        if request.method == "PUT":
            return self.create_account(request, account_id, name, existing)
        if request.method == "PATCH":
            if existing is None:
                return not_found(ACCOUNT_TYPE, name, group)
            body, problem = checked_body(request, MODELS + "StorageAccountUpdateParameters")
            if problem:
                return problem
            existing["properties"].update(body.get("properties") or {})
            for key in ("tags", "sku", "kind"):
                if key in body:
                    existing[key] = body[key]
            self.double.store.put(account_id, existing)
            return Response.of_json(200, existing)
        if request.method == "DELETE":
            return deleted(self.double, account_id, existing, lambda: self._forget_account(name))
        return method_not_allowed(request)

    def _forget_account(self, name: str) -> None:
        """What the double keeps beside a deleted account: its keys and its shares' files."""
        self.double.forget_storage_account_keys(name)
        shutil.rmtree(self.double.state_dir / "files" / name, ignore_errors=True)

    def create_account(
        self, request: Request, account_id: str, name: str, existing: dict[str, Any] | None
    ) -> Response:
        if not ACCOUNT_NAME.fullmatch(name):
            return arm_error(
                400,
                "AccountNameInvalid",
                f"{name} is not a valid storage account name. Storage account name must be "
                "between 3 and 24 characters in length and use numbers and lower-case "
                "letters only.",
            )
        body, problem = checked_body(request, MODELS + "StorageAccountCreateParameters")
        if problem:
            return problem
        taken = self._taken(name)
        if taken and taken["id"].lower() != account_id.lower():
            return arm_error(
                409,
                "StorageAccountAlreadyTaken",
                f"The storage account named {name} is already taken.",
            )
        bad = location_problem(self.double, body["location"], ACCOUNT_TYPE)
        if bad:
            return bad
        location = body["location"].replace(" ", "").lower()
        if existing and existing["location"] != location:
            return arm_error(
                409,
                "StorageAccountAlreadyExists",
                f"The storage account named {name} already exists in location "
                f"{existing['location']}; its location cannot change.",
            )
        properties = {
            **(existing["properties"] if existing else {}),
            **(body.get("properties") or {}),
            "provisioningState": "Succeeded",
            "primaryEndpoints": {"file": self.double.files_endpoint(name)},
            "primaryLocation": location,
            "statusOfPrimary": "available",
        }
        properties.setdefault("creationTime", now_iso())
        sku = dict(body["sku"])
        sku["tier"] = "Premium" if sku["name"].startswith("Premium") else "Standard"
        account = {
            "id": account_id,
            "name": name,
            "type": ACCOUNT_TYPE,
            "location": location,
            "kind": body["kind"],
            "sku": sku,
            "tags": body.get("tags") or {},
            "properties": properties,
        }
        self.double.store.put(account_id, account)
        if existing is None:
            self.double.create_storage_account_keys(name)
            (self.double.state_dir / "files" / name).mkdir(parents=True, exist_ok=True)
            # A new account is a long-running creation on ARM: 202, then poll.
            operation = self.double.operations.start(
                self.double.subscription_id,
                NAMESPACE,
                location,
                request.query["api-version"],
                lambda _: self.double.store.get(account_id),  # Location answers the account
            )
            response = self.double.operations.accepted(operation)
            del response.headers["Azure-AsyncOperation"]  # storage polls Location
            return response
        return Response.of_json(200, account)

    def _keys(self, name: str) -> list[dict[str, Any]]:
        return [
            {"keyName": f"key{i + 1}", "value": value, "permissions": "FULL"}
            for i, value in enumerate(self.double.storage_account_keys(name))
        ]

    def regenerate_key(self, request: Request, name: str) -> Response:
        body, problem = checked_body(request, MODELS + "StorageAccountRegenerateKeyParameters")
        if problem:
            return problem
        names = {"key1": 0, "key2": 1}
        if body["keyName"] not in names:
            return arm_error(400, "InvalidKeyName", f"Key name '{body['keyName']}' is invalid.")
        self.double.regenerate_storage_account_key(name, names[body["keyName"]])
        return Response.of_json(200, {"keys": self._keys(name)})

    # ---- file service and shares -----------------------------------------------------------

    def file_service(self, request: Request, service_id: str) -> Response:
        existing = self.double.store.get(service_id) or {
            "id": service_id,
            "name": "default",
            "type": "Microsoft.Storage/storageAccounts/fileServices",
            "properties": {},
        }
        if request.method == "GET":
            return Response.of_json(200, existing)
        if request.method == "PUT":
            body, problem = checked_body(request, MODELS + "FileServiceProperties")
            if problem:
                return problem
            existing["properties"].update(body.get("properties") or {})
            self.double.store.put(service_id, existing)
            return Response.of_json(200, existing)
        return method_not_allowed(request)

    def shares(
        self, request: Request, account_id: str, account: str, rest: tuple[str, ...]
    ) -> Response:
        shares_prefix = f"{account_id}/fileServices/default/shares"
        if not rest:
            if request.method != "GET":
                return method_not_allowed(request)
            return Response.of_json(
                200,
                {
                    "value": self.double.store.children(
                        f"{account_id}/fileServices/default", "shares"
                    )
                },
            )
        if len(rest) != 1:
            return no_route(request)
        name = rest[0]
        share_id = f"{shares_prefix}/{name}"
        existing = self.double.store.get(share_id)
        folder = self.double.share_root(account, name)
        if existing is None and folder.is_dir():
            # Created through the data plane: ARM sees it as a share too.
            existing = self._share_resource(share_id, name, {"shareQuota": 102400})
        if request.method == "GET":
            if existing is None:
                return not_found(
                    "Microsoft.Storage/storageAccounts/fileServices/shares", name, None
                )
            return Response.of_json(200, existing)
        if request.method in ("PUT", "PATCH"):
            if not SHARE_NAME.fullmatch(name):
                return arm_error(
                    400,
                    "InvalidResourceName",
                    f"The share name '{name}' is invalid: 3-63 lowercase letters, digits and "
                    "single hyphens, starting and ending with a letter or digit.",
                )
            body, problem = checked_body(request, MODELS + "FileShare")
            if problem:
                return problem
            if request.method == "PATCH" and existing is None:
                return not_found(
                    "Microsoft.Storage/storageAccounts/fileServices/shares", name, None
                )
            properties = {
                **(existing or {}).get("properties", {}),
                **(body.get("properties") or {}),
            }
            share = self._share_resource(share_id, name, properties)
            self.double.store.put(share_id, share)
            folder.mkdir(parents=True, exist_ok=True)
            return Response.of_json(200 if existing else 201, share)
        if request.method == "DELETE":
            return deleted(
                self.double, share_id, existing, lambda: shutil.rmtree(folder, ignore_errors=True)
            )
        return method_not_allowed(request)

    def _share_resource(
        self, share_id: str, name: str, properties: dict[str, Any]
    ) -> dict[str, Any]:
        properties = {"shareQuota": 102400, "enabledProtocols": "SMB", **properties}
        properties["lastModifiedTime"] = now_iso()
        return {
            "id": share_id,
            "name": name,
            "type": "Microsoft.Storage/storageAccounts/fileServices/shares",
            "etag": new_etag(),
            "properties": properties,
        }

"""The request and response values every handler of the double works with, and ARM's error shape."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    method: str  # "GET", "PUT", ...
    path: str  # URL path, percent-decoded, no query
    raw_path: str  # as sent (for signature canonicalisation)
    query: dict[str, str]  # keys lower-cased; last value wins
    headers: dict[str, str]  # keys lower-cased
    body: bytes
    listener: str  # "arm", "files", or an ingress name

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_json(cls, status: int, value: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(
            status,
            json.dumps(value).encode(),
            {"Content-Type": "application/json; charset=utf-8", **(headers or {})},
        )

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class DropConnection(Exception):
    """Raised by a handler: the server closes the socket without answering."""


def arm_error(
    status: int,
    code: str,
    message: str,
    target: str | None = None,
    details: list[dict[str, Any]] | None = None,
) -> Response:
    """ARM's error envelope: {"error": {"code", "message", "target"?, "details"?}}."""
    error: dict[str, Any] = {"code": code, "message": message}
    if target is not None:
        error["target"] = target
    if details:
        error["details"] = details
    return Response.of_json(status, {"error": error})


def require_api_version(request: Request, allowed: set[str]) -> Response | None:
    """None when the request's api-version is one the resource type accepts, else ARM's 400."""
    version = request.query.get("api-version")
    if not version:
        return arm_error(
            400,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        )
    if version not in allowed:
        return arm_error(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{version}' is invalid. The supported versions are "
            f"'{','.join(sorted(allowed, reverse=True))}'.",
        )
    return None

"""The double's core through the real SDK clients: TLS with the double's CA, bearer auth,
api-version and body checks, faults (and the SDK's own retries), control endpoints."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from typing import Any

import certifi
import httpx
import jwt
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)

from tests.azure_double.faults import Fault
from tests.azure_double.sdk import (
    deployments_client,
    log_analytics_client,
    resources_client,
    storage_client,
    use_double_env,
)
from tests.azure_double.server import AzureDouble


@pytest.fixture
def double(azure_double: AzureDouble) -> Iterator[AzureDouble]:
    azure_double.retry_after_s = 0
    with use_double_env(azure_double):
        yield azure_double


class StaticToken:
    """A credential that hands out one fixed token (to show what the double rejects)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


def _client_with_token(double: AzureDouble, token: str) -> Any:
    from azure.mgmt.resource.resources import ResourceManagementClient

    return ResourceManagementClient(
        StaticToken(token),
        double.subscription_id,
        base_url=double.arm_endpoint,
        credential_scopes=[f"{double.arm_endpoint}/.default"],
        connection_verify=str(double.ca_bundle),
        retry_total=0,
    )


def _token(key: str, **claims: Any) -> str:
    return jwt.encode({"exp": int(time.time()) + 600, **claims}, key, algorithm="HS256")


def _requests_to(double: AzureDouble, path_end: str) -> list[tuple[str, int]]:
    return [(r.method, r.status) for r in double.requests if r.path.lower().endswith(path_end)]


def test_the_arm_endpoint_is_served_with_a_certificate_of_the_doubles_own_ca(
    double: AzureDouble,
) -> None:
    port = int(double.arm_endpoint.rsplit(":", 1)[1])
    trusting = ssl.create_default_context(cafile=str(double.ca_bundle))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        trusting.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    with (
        pytest.raises(ssl.SSLCertVerificationError),
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ssl.create_default_context(cafile=certifi.where()).wrap_socket(
            raw, server_hostname="127.0.0.1"
        ),
    ):
        pass


def test_the_real_credential_chain_reaches_the_double(double: AzureDouble) -> None:
    group = resources_client(double).resource_groups.create_or_update(
        "rg-auth", {"location": "eastus"}
    )
    assert group.properties.provisioning_state == "Succeeded"


def test_a_request_without_a_token_gets_arms_401(double: AzureDouble) -> None:
    response = httpx.get(
        f"{double.arm_endpoint}/subscriptions/{double.subscription_id}/resourcegroups",
        params={"api-version": "2025-04-01"},
        verify=ssl.create_default_context(cafile=double.ca_bundle),
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "AuthenticationFailed"
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


@pytest.mark.parametrize(
    ("make_token", "code"),
    [
        (lambda d: _token(d.signing_key, tid="another-tenant"), "InvalidAuthenticationTokenTenant"),
        (
            lambda d: _token("not-the-doubles-key-" * 2, tid=d.tenant_id),
            "InvalidAuthenticationToken",
        ),
        (
            lambda d: _token(d.signing_key, tid=d.tenant_id, exp=int(time.time()) - 60),
            "ExpiredAuthenticationToken",
        ),
    ],
)
def test_tokens_the_double_did_not_issue_for_its_tenant_are_rejected(
    double: AzureDouble, make_token: Any, code: str
) -> None:
    client = _client_with_token(double, make_token(double))
    with pytest.raises(ClientAuthenticationError) as raised:
        list(client.resource_groups.list())
    assert raised.value.error is not None
    assert raised.value.error.code == code


@pytest.mark.parametrize(
    ("make_client", "call", "supported"),
    [
        (
            resources_client,
            lambda c: c.resource_groups.create_or_update("rg-old", {"location": "eastus"}),
            "2025-04-01",
        ),
        (
            deployments_client,
            lambda c: list(c.deployments.list_by_resource_group("rg-old")),
            "2026-06-01",
        ),
        (storage_client, lambda c: list(c.storage_accounts.list()), "2026-09-01"),
        (log_analytics_client, lambda c: list(c.workspaces.list()), "2025-07-01"),
    ],
)
def test_an_api_version_the_sdks_do_not_send_gets_invalid_api_version_parameter(
    double: AzureDouble, make_client: Any, call: Any, supported: str
) -> None:
    resources_client(double).resource_groups.create_or_update("rg-old", {"location": "eastus"})
    with pytest.raises(HttpResponseError) as raised:
        call(make_client(double, api_version="2019-01-01"))
    assert raised.value.status_code == 400
    assert raised.value.error is not None
    assert raised.value.error.code == "InvalidApiVersionParameter"
    assert supported in str(raised.value.error.message)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"location": "eastus", "colour": "blue"}, "Could not find member 'colour'"),
        ({"location": "eastus", "properties": {"provisioningState": "Succeeded"}}, "read-only"),
        ({"tags": {"a": "b"}}, "Required property 'location'"),
        ({"location": "eastus", "tags": ["not", "a", "map"]}, "Expected an object at 'tags'"),
    ],
)
def test_request_bodies_are_checked_against_the_sdk_models(
    double: AzureDouble, body: dict[str, Any], says: str
) -> None:
    with pytest.raises(HttpResponseError) as raised:
        resources_client(double).resource_groups.create_or_update("rg-body", body)
    assert raised.value.status_code == 400
    assert raised.value.error is not None
    assert raised.value.error.code == "InvalidRequestContent"
    assert says in str(raised.value.error.message)
    assert (
        double.store.get(f"/subscriptions/{double.subscription_id}/resourceGroups/rg-body") is None
    )


@pytest.mark.parametrize(
    ("status", "code"),
    [(429, "TooManyRequests"), (500, "InternalServerError"), (503, "ServiceUnavailable")],
)
def test_the_sdks_own_retry_policy_retries_throttling_and_transient_errors(
    double: AzureDouble, status: int, code: str
) -> None:
    client = resources_client(double)
    client.resource_groups.create_or_update("rg-retry", {"location": "eastus"})
    handle = double.faults.add(
        Fault(
            method="GET",
            path="/resourcegroups/rg-retry$",
            status=status,
            code=code,
            headers={"Retry-After": "1"},
            times=2,
        )
    )
    assert client.resource_groups.get("rg-retry").name == "rg-retry"
    assert handle.hits == 2
    assert _requests_to(double, "/rg-retry")[-3:] == [
        ("GET", status),
        ("GET", status),
        ("GET", 200),
    ]


def test_retries_give_up_after_the_sdks_retry_total(double: AzureDouble) -> None:
    client = resources_client(double, retry_total=1)
    double.faults.add(Fault(method="GET", path="/resourcegroups/rg-gone$", status=503, times=5))
    with pytest.raises(HttpResponseError) as raised:
        client.resource_groups.get("rg-gone")
    assert raised.value.status_code == 503
    assert _requests_to(double, "/rg-gone") == [("GET", 503), ("GET", 503)]


@pytest.mark.parametrize(
    ("status", "code", "error_type"),
    [
        (409, "Conflict", ResourceExistsError),
        (403, "AuthorizationFailed", HttpResponseError),
        (404, "ResourceGroupNotFound", ResourceNotFoundError),
        (401, "InvalidAuthenticationToken", ClientAuthenticationError),
    ],
)
def test_client_errors_reach_the_caller_with_arms_code_and_are_not_retried(
    double: AzureDouble, status: int, code: str, error_type: type[HttpResponseError]
) -> None:
    double.faults.add(Fault(method="PUT", path="/resourcegroups/rg-err$", status=status, code=code))
    with pytest.raises(error_type) as raised:
        resources_client(double).resource_groups.create_or_update("rg-err", {"location": "eastus"})
    assert raised.value.status_code == status
    assert raised.value.error is not None
    assert raised.value.error.code == code
    assert _requests_to(double, "/rg-err") == [("PUT", status)]


@pytest.mark.parametrize("read_bytes", [None, 5])
def test_a_dropped_connection_is_retried_by_the_sdk(
    double: AzureDouble, read_bytes: int | None
) -> None:
    double.faults.add(
        Fault(method="PUT", path="/resourcegroups/rg-drop$", drop=True, read_bytes=read_bytes)
    )
    group = resources_client(double).resource_groups.create_or_update(
        "rg-drop", {"location": "eastus"}
    )
    assert group.name == "rg-drop"
    assert _requests_to(double, "/rg-drop") == [("PUT", 0), ("PUT", 201)]
    dropped = next(r for r in double.requests if r.status == 0)
    assert dropped.body_size == (
        read_bytes if read_bytes is not None else len(b'{"location": "eastus"}')
    )


def test_faults_config_and_the_request_log_are_reachable_over_http(double: AzureDouble) -> None:
    control = httpx.Client(
        base_url=f"{double.arm_endpoint}/_double",
        verify=ssl.create_default_context(cafile=double.ca_bundle),
    )
    with control:
        armed = control.post(
            "/faults", json={"method": "GET", "path": "/resourcegroups/rg-http$", "status": 404}
        )
        assert armed.status_code == 201
        assert [f["path"] for f in control.get("/faults").json()] == ["/resourcegroups/rg-http$"]
        with pytest.raises(ResourceNotFoundError):
            resources_client(double).resource_groups.get("rg-http")
        logged = control.get("/requests").json()
        assert {"listener": "arm", "method": "GET", "status": 404}.items() <= logged[-1].items()
        assert control.post("/faults", json={"colour": "red"}).status_code == 400
        control.post("/faults", json={"path": "rg-http", "status": 500, "times": 9})
        assert control.delete("/faults").status_code == 204
        assert double.faults.active() == []
        assert control.post("/config", json={"replica_crash": True}).json()["replica_crash"]
        assert double.config.replica_crash is True
        assert control.post("/config", json={"colour": "red"}).status_code == 400

"""Entra-free bearer tokens: JWT-shaped (tid, oid, exp), signed with a key only the double and
its stand-in `az` know, so a token from anywhere else is rejected as it would be by ARM."""

from __future__ import annotations

import time
import uuid

import jwt

from tests.azure_double.http import Request, Response, arm_error

ALGORITHM = "HS256"
TOKEN_LIFETIME_S = 3600


def issue_token(signing_key: str, tenant_id: str, audience: str, object_id: str) -> tuple[str, int]:
    """A token for `audience` and its expiry (epoch seconds)."""
    now = int(time.time())
    expires_on = now + TOKEN_LIFETIME_S
    claims = {
        "aud": audience,
        "iss": f"https://sts.windows.net/{tenant_id}/",
        "iat": now,
        "nbf": now,
        "exp": expires_on,
        "tid": tenant_id,
        "oid": object_id,
        "uti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, signing_key, algorithm=ALGORITHM), expires_on


def _unauthorized(code: str, message: str) -> Response:
    response = arm_error(401, code, message)
    response.headers["WWW-Authenticate"] = (
        'Bearer authorization_uri="https://login.microsoftonline.com/common", '
        f'error="invalid_token", error_description="{message}"'
    )
    return response


def check_bearer(request: Request, signing_key: str, tenant_id: str) -> Response | None:
    """None when the request carries a valid token for this tenant, else ARM's 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return _unauthorized(
            "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
        )
    if scheme.lower() != "bearer" or not token:
        return _unauthorized(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
        )
    try:
        claims = jwt.decode(
            token,
            signing_key,
            algorithms=[ALGORITHM],
            options={"verify_aud": False, "require": ["exp", "tid"]},
        )
    except jwt.ExpiredSignatureError:
        return _unauthorized("ExpiredAuthenticationToken", "The access token expiry has passed.")
    except jwt.InvalidTokenError:
        return _unauthorized("InvalidAuthenticationToken", "The access token is invalid.")
    if claims.get("tid") != tenant_id:
        return _unauthorized(
            "InvalidAuthenticationTokenTenant",
            f"The access token is from the wrong issuer '{claims.get('iss')}'. It must match the "
            f"tenant 'https://sts.windows.net/{tenant_id}/' associated with this subscription.",
        )
    return None

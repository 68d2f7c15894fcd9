"""Who may call the Azure Files data plane: a SharedKey signature made with one of the account's
keys, or an Entra ID bearer token sent with `x-ms-file-request-intent: backup` (the service takes
OAuth on the Files REST API only with that intent).

The string to sign is the service's ("Shared Key authorization", version 2009-09-19 and later):
the verb, eleven standard headers, the canonicalised `x-ms-*` headers and the canonicalised
resource. With path-style URLs (an IP host, as here) the resource is `/<account>` followed by the
URL path as sent, which itself starts with `/<account>/`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

from tests.azure_double.files_xml import files_error
from tests.azure_double.http import Request, Response

# The standard headers in the order the string to sign lists them.
SIGNED_HEADERS = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
    "range",
)
# The service refuses requests dated further than this from its clock (replay protection).
MAX_CLOCK_SKEW = timedelta(minutes=15)


def _header_order(name: str) -> tuple[str, str]:
    """The service sorts `x-ms-*` names with a culture-aware comparison that ignores hyphens
    before it looks at them: compare without hyphens first, then as written."""
    return name.replace("-", ""), name


def string_to_sign(request: Request, account: str) -> str:
    headers = request.headers
    standard = []
    for name in SIGNED_HEADERS:
        value = headers.get(name, "")
        # Since version 2015-02-21 a zero Content-Length signs as empty.
        standard.append("" if name == "content-length" and value == "0" else value)
    canonical_headers = "".join(
        f"{name}:{value}\n"
        for name, value in sorted(
            ((n, v) for n, v in headers.items() if n.startswith("x-ms-")),
            key=lambda item: _header_order(item[0]),
        )
    )
    canonical_resource = f"/{account}{request.raw_path}" + "".join(
        f"\n{name}:{value}" for name, value in sorted(request.query.items())
    )
    return (
        request.method
        + "\n"
        + "".join(f"{v}\n" for v in standard)
        + (canonical_headers + canonical_resource)
    )


def sign(key: str, text: str) -> str:
    digest = hmac.new(base64.b64decode(key), text.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _auth_failed(detail: str) -> Response:
    return files_error(
        403,
        "AuthenticationFailed",
        "Server failed to authenticate the request. Make sure the value of Authorization header "
        "is formed correctly including the signature.",
        details={"AuthenticationErrorDetail": detail},
    )


def _check_date(request: Request) -> Response | None:
    raw = request.headers.get("x-ms-date") or request.headers.get("date")
    if not raw:
        return _auth_failed("Request date header not specified.")
    try:
        sent = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return _auth_failed(f"The date format '{raw}' is invalid.")
    if sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    if abs(datetime.now(UTC) - sent) > MAX_CLOCK_SKEW:
        return _auth_failed(f"Request date header too old or too far in the future: '{raw}'.")
    return None


def authenticate(
    request: Request,
    account: str,
    keys: list[str],
    bearer_valid: Callable[[Request], bool],
) -> Response | None:
    """None when the request may proceed, else the service's 403 AuthenticationFailed."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme == "SharedKey":
        name, _, signature = credentials.partition(":")
        if name != account:
            return _auth_failed(
                f"The Authorization header names account '{name}', not '{account}'."
            )
        problem = _check_date(request)
        if problem is not None:
            return problem
        text = string_to_sign(request, account)
        try:
            valid = any(hmac.compare_digest(sign(key, text), signature) for key in keys)
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            return _auth_failed(
                f"The MAC signature found in the HTTP request '{signature}' is not the same as any "
                f"computed signature. Server used following string to sign: '{text}'."
            )
        return None
    if scheme.lower() == "bearer":
        if request.headers.get("x-ms-file-request-intent", "").lower() != "backup":
            return _auth_failed(
                "A bearer token is accepted only with 'x-ms-file-request-intent: backup'."
            )
        if not bearer_valid(request):
            return _auth_failed("The bearer token is invalid or expired.")
        return None
    if not header and "sig" in request.query:
        return _auth_failed(
            "The double does not take shared access signatures: sign with an account key "
            "(SharedKey) or send a bearer token."
        )
    if not header:
        return _auth_failed("The Authorization header is missing.")
    return _auth_failed(f"The authorization scheme '{scheme}' is not supported.")

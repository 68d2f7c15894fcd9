"""API-key authentication as ASGI middleware, in front of every route but `/health` and `/ready`.

A caller presents the primary or the secondary key as `Authorization: Bearer <key>` or
`api-key: <key>`. Browsers cannot add headers, so the chat UI has a small login form (`/login`)
that takes the key and sets an HttpOnly session cookie holding an HMAC of it (never the key
itself); the cookie stops working when that key is rotated. A browser that opens `/ui` without
the cookie is redirected to the form; API clients get 401 in the OpenAI error shape.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

from inference_app.errors import error_body

PUBLIC_PATHS = frozenset({"/health", "/ready", "/login"})
SESSION_COOKIE = "aca_infer_session"
_SESSION_LABEL = b"aca-infer-ui-session"


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


class KeyChecker:
    """Holds only digests of the keys; compares in constant time."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._key_digests = [_digest(key) for key in keys if key]
        self._session_tokens = [
            hmac.new(key.encode(), _SESSION_LABEL, hashlib.sha256).hexdigest()
            for key in keys
            if key
        ]

    @property
    def enabled(self) -> bool:
        return bool(self._key_digests)

    def is_valid_key(self, presented: str) -> bool:
        candidate = _digest(presented)
        # Check every key (no early exit) so timing says nothing about which one matched.
        matches = [secrets.compare_digest(candidate, known) for known in self._key_digests]
        return any(matches)

    def session_token(self, key: str) -> str | None:
        """The cookie value for a valid key, or None."""
        if not self.is_valid_key(key):
            return None
        return hmac.new(key.encode(), _SESSION_LABEL, hashlib.sha256).hexdigest()

    def is_valid_session(self, token: str) -> bool:
        matches = [
            secrets.compare_digest(_digest(token), _digest(known)) for known in self._session_tokens
        ]
        return any(matches)


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    authorization = headers.get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    api_key = headers.get(b"api-key", b"").decode("latin-1").strip()
    return api_key or None


def session_cookie(headers: dict[bytes, bytes]) -> str | None:
    raw = headers.get(b"cookie", b"").decode("latin-1")
    if not raw:
        return None
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(raw)
    except Exception:  # a malformed cookie header is just "no session"
        return None
    morsel = cookie.get(SESSION_COOKIE)
    return morsel.value if morsel else None


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, checker: KeyChecker) -> None:
        self.app = app
        self.checker = checker

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"} or not self.checker.enabled:
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path in PUBLIC_PATHS or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        headers = dict(scope.get("headers", []))
        if _wants_html(scope, headers):
            target = quote(
                path + ("?" + scope["query_string"].decode() if scope.get("query_string") else "")
            )
            await _send(send, 303, b"", [(b"location", f"/login?next={target}".encode())])
            return
        message = (
            "Invalid API key"
            if presented_key(headers)
            else "Missing API key: send 'Authorization: Bearer <key>' or 'api-key: <key>'"
        )
        body = json.dumps(error_body(message, "invalid_request_error", None, "invalid_api_key"))
        await _send(
            send,
            401,
            body.encode(),
            [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
        )

    def _authorized(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers", []))
        key = presented_key(headers)
        if key is not None:
            return self.checker.is_valid_key(key)
        token = session_cookie(headers)
        return token is not None and self.checker.is_valid_session(token)


def _wants_html(scope: Scope, headers: dict[bytes, bytes]) -> bool:
    return (
        scope.get("method") == "GET"
        and scope.get("path", "").startswith("/ui")
        and b"text/html" in headers.get(b"accept", b"")
    )


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

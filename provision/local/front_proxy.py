"""The local target's front proxy: owns the public port and forwards to the live replica.

Why a proxy rather than `SO_REUSEPORT`: with a shared port the kernel spreads connections over
every listener, so a new replica would receive requests while it still loads its model; and the
server would have to set the socket option itself. The proxy instead routes every request to the
one replica it is told is live, so the next replica starts beside the running one on a private
port and takes over only once its `/ready` says so (DESIGN.md "Targets").

Bodies stream both ways chunk by chunk (Server-Sent Events pass through as they are produced).
A request whose backend refused the connection (nothing was sent) is retried once on the route
in force at that moment, which covers the instant of a switch. WebSockets are not proxied (the
server's UI streams over SSE).

Control: `GET|PUT /_aca-infer/front` with the header `x-aca-infer-front-token` (a random token
kept in the 0600 record `front.json`): GET answers the backend port and the requests in flight
per backend; PUT `{"backend": port}` switches the route. The take-over (start beside, switch,
drain, stop the old one) is `LocalReplica.roll_out`, used by deploy, rollback and a key change.

Run as `python -m provision.local.front_proxy` with ACA_INFER_FRONT_PORT, ACA_INFER_FRONT_TOKEN
and optionally ACA_INFER_FRONT_BACKEND in the environment.
"""

from __future__ import annotations

import json
import os
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import httpx

CONTROL_PATH = "/_aca-infer/front"
TOKEN_HEADER = "x-aca-infer-front-token"
# Hop-by-hop headers (RFC 9110 7.6.1) are the proxy's own business on each side. `Host` passes
# through, so the server builds its URLs (the UI's) with the public port, not its private one.
_HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"te",
    b"trailer",
    b"upgrade",
}

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class FrontProxy:
    def __init__(self, token: str, backend: int | None) -> None:
        self.token = token
        self.backend = backend
        self.in_flight: Counter[int] = Counter()
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # No timeout: a generation may stream for minutes; the client decides when to stop.
            self._client = httpx.AsyncClient(
                timeout=None, limits=httpx.Limits(max_keepalive_connections=32)
            )
        return self._client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            if scope["path"] == CONTROL_PATH:
                await self._control(scope, receive, send)
            else:
                await self._forward(scope, receive, send)
        else:  # websocket: refuse the handshake
            await send({"type": "websocket.close", "code": 1003})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._client is not None:
                    await self._client.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        given = headers.get(TOKEN_HEADER.encode(), b"").decode()
        if not secrets.compare_digest(given, self.token):
            await _json(send, 403, {"error": "bad control token"})
            return
        if scope["method"] == "PUT":
            body = json.loads(await _read_body(receive))
            self.backend = int(body["backend"])
        await _json(
            send,
            200,
            {"backend": self.backend, "in_flight": {str(p): n for p, n in self.in_flight.items()}},
        )

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)  # requests are small (JSON); responses stream
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP_BY_HOP]
        query = scope.get("query_string", b"")
        target = scope.get("raw_path") or scope["path"].encode()
        path = target.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
        for attempt in range(2):
            port = self.backend
            if port is None:
                await _json(send, 503, _error("no replica is live yet", "unavailable"))
                return
            self.in_flight[port] += 1
            try:
                request = self.client.build_request(
                    scope["method"], f"http://127.0.0.1:{port}{path}", headers=headers, content=body
                )
                try:
                    response = await self.client.send(request, stream=True)
                except httpx.ConnectError:
                    if attempt == 0:
                        continue  # nothing was sent: retry on the route in force now
                    await _json(send, 502, _error("the replica is not answering", "bad_gateway"))
                    return
                try:
                    await _relay(response, send)
                finally:
                    await response.aclose()
                return
            finally:
                self.in_flight[port] -= 1
                if not self.in_flight[port]:
                    del self.in_flight[port]


async def _relay(response: httpx.Response, send: Send) -> None:
    headers = [(k.lower(), v) for k, v in response.headers.raw if k.lower() not in _HOP_BY_HOP]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    chunks: AsyncIterator[bytes] = response.aiter_raw()
    async for chunk in chunks:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _read_body(receive: Receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _error(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": code, "param": None, "code": code}}


async def _json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})


def main() -> None:
    import uvicorn

    backend = os.environ.get("ACA_INFER_FRONT_BACKEND")
    proxy = FrontProxy(os.environ["ACA_INFER_FRONT_TOKEN"], int(backend) if backend else None)
    uvicorn.run(
        proxy,
        host="127.0.0.1",
        port=int(os.environ["ACA_INFER_FRONT_PORT"]),
        log_level="warning",
        # Streams may be long; uvicorn's graceful shutdown lets them finish on stop.
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()

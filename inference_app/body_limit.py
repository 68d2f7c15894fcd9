"""ASGI middleware: refuse a request body larger than the configured limit, before reading it.

A body that declares its length (every usual client does) is refused from the header alone; a
chunked one is read up to the limit and refused as soon as it passes it. Either way the answer is
413 in the OpenAI error shape and the route never sees the body, so a client cannot make the
server parse (and hold) megabytes it would refuse anyway.

FastAPI's own `max_body_size` (Starlette's `RequestBodyLimitMiddleware`) replaces the answer to
a body whose declared length is too large with a plain-text 413, whatever the app sends, so it
cannot give clients the error shape they parse.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference_app.errors import RequestTooLargeError


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None:
            if declared > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        # No declared length (chunked): read it here, up to the limit, then hand it on.
        buffered: list[Message] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away mid-body
                buffered.append(message)
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            buffered.append(message)
            more = bool(message.get("more_body", False))

        async def replay() -> Message:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await RequestTooLargeError(self.max_bytes).response()(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None

"""The app factory: settings + an engine in, a FastAPI app out (tests inject a fake engine)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inference_app import login, routes
from inference_app.auth import ApiKeyMiddleware, KeyChecker
from inference_app.body_limit import BodyLimitMiddleware
from inference_app.engine.base import Engine
from inference_app.errors import install_error_handlers
from inference_app.metrics import Metrics
from inference_app.request_context import RequestContextMiddleware
from inference_app.services import Services
from inference_app.settings import Settings

log = logging.getLogger(__name__)

# Routes counted under their own name in the requests metric; anything else is "other".
_COUNTED_ROUTES = (
    "/health",
    "/ready",
    "/metrics",
    "/v1/models",
    "/v1/chat/completions",
    "/v1/completions",
    "/score",
    "/login",
)


def create_app(settings: Settings, engine: Engine) -> FastAPI:
    services = Services.build(engine, settings)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Load in the background: /health and /ready must answer while the model loads.
        loading = asyncio.create_task(_start_engine(engine, services))
        try:
            yield
        finally:
            if not loading.done():
                loading.cancel()
                with contextlib.suppress(BaseException):
                    await loading
            await engine.shutdown()

    app = FastAPI(
        title="aca-infer",
        summary="OpenAI-compatible and Azure ML compatible inference for a fine-tuned model",
        version=settings.release,
        lifespan=lifespan,
    )
    app.state.services = services
    app.state.key_checker = KeyChecker(settings.api_keys)
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(login.router)
    if settings.ui_enabled:
        from inference_app.ui import mount_ui  # gradio is heavy: import only when serving a UI

        mount_ui(app, services)
    # Outermost first: request id → metrics → auth → body limit → routes.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.add_middleware(ApiKeyMiddleware, checker=app.state.key_checker)
    app.add_middleware(RequestCountMiddleware, metrics=services.metrics)
    app.add_middleware(RequestContextMiddleware)
    return app


async def _start_engine(engine: Engine, services: Services) -> None:
    try:
        await engine.start()
        log.info("engine ready", extra={"models": [m.id for m in engine.models()]})
    except Exception as exc:
        services.generation.startup_error = f"{type(exc).__name__}: {exc}"
        log.exception("engine failed to start")


class RequestCountMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = next((r for r in _COUNTED_ROUTES if path == r), None)
        route = route or ("/ui" if path.startswith("/ui") else "other")

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(route, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counting_send)

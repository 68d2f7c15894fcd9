"""Thin routes: parse (FastAPI + protocol models), call a service, return a response or stream."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from inference_app.engine.base import ModelInfo
from inference_app.protocol import (
    ERROR_RESPONSES,
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    Health,
    ModelCard,
    ModelList,
    Readiness,
    ScoreOutput,
    ScoreRequest,
)
from inference_app.services import Services
from inference_app.streaming import cancel_on_disconnect, sse_response

router = APIRouter()

_SSE = {"text/event-stream": {"schema": {"type": "string"}, "description": "when stream=true"}}


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "-"))


@router.get("/health", response_model=Health, tags=["operations"])
async def health(request: Request) -> Health:
    found = services(request)
    return Health(release=found.release, instance_id=found.instance_id)


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Loading, or the engine failed"}},
    tags=["operations"],
)
async def ready(request: Request) -> JSONResponse:
    reason = services(request).generation.not_ready_reason()
    if reason is None:
        return JSONResponse(Readiness(ready=True).model_dump())
    return JSONResponse(Readiness(ready=False, reason=reason).model_dump(), status_code=503)


@router.get("/metrics", tags=["operations"], response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(
        generate_latest(services(request).metrics.registry), media_type=CONTENT_TYPE_LATEST
    )


def model_card(svc: Services, model: ModelInfo) -> ModelCard:
    """One model as both /v1/models and /v1/models/{id} describe it: an adapter's root and
    parent are the base model, the base model is its own root."""
    base = next((m.id for m in svc.generation.engine.models() if m.adapter is None), None)
    return ModelCard(
        id=model.id,
        created=svc.started_at,
        owned_by=model.owned_by,
        root=model.id if model.adapter is None else base,
        parent=None if model.adapter is None else base,
    )


@router.get("/v1/models", response_model=ModelList, responses=ERROR_RESPONSES, tags=["openai"])
async def list_models(request: Request) -> ModelList:
    svc = services(request)
    return ModelList(data=[model_card(svc, m) for m in svc.generation.engine.models()])


@router.get(
    "/v1/models/{model_id:path}",
    response_model=ModelCard,
    responses=ERROR_RESPONSES,
    tags=["openai"],
)
async def get_model(model_id: str, request: Request) -> ModelCard:
    svc = services(request)
    return model_card(svc, svc.generation.resolve_model(model_id))


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses={**ERROR_RESPONSES, 200: {"content": _SSE}},
    tags=["openai"],
)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    chat = services(request).chat
    if body.stream:
        return sse_response(await chat.stream(body, request_id(request)))
    return await cancel_on_disconnect(request, chat.complete(body, request_id(request)))


@router.post(
    "/v1/completions",
    response_model=Completion,
    responses={**ERROR_RESPONSES, 200: {"content": _SSE}},
    tags=["openai"],
)
async def completions(body: CompletionRequest, request: Request) -> Any:
    service = services(request).completions
    if body.stream:
        return sse_response(await service.stream(body, request_id(request)))
    return await cancel_on_disconnect(request, service.complete(body, request_id(request)))


@router.post(
    "/score",
    response_model=ScoreOutput | list[dict[str, str]],
    responses=ERROR_RESPONSES,
    tags=["azureml"],
)
async def score(body: ScoreRequest, request: Request) -> Any:
    return await cancel_on_disconnect(
        request, services(request).score.score(body, request_id(request))
    )

"""Talking to a deployed endpoint: a chat completion (`invoke`), the replica's state (`status`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from provision.errors import InputError, OperationError
from provision.readiness import probe_ready
from provision.release import CURRENT, PREVIOUS
from provision.share import read_text_or_none
from provision.targets import Target


@dataclass(frozen=True)
class InvokeSettings:
    message: str
    system: str | None = None
    model: str | None = None
    max_tokens: int = 64
    temperature: float | None = None
    timeout: float = 300.0

    def __post_init__(self) -> None:
        if not self.message.strip():
            raise InputError("--message is empty: give the text to send, e.g. --message 'Hello'")
        if self.max_tokens < 1:
            raise InputError("--max-tokens must be at least 1")


@dataclass(frozen=True)
class InvokeResult:
    endpoint: str
    model: str
    answer: str
    finish_reason: str | None
    usage: dict[str, Any]


@dataclass(frozen=True)
class StatusResult:
    target: str
    endpoint: str
    ui_url: str
    running: bool
    ready: bool
    reason: str
    release: str | None
    previous_release: str | None


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def invoke(target: Target, settings: InvokeSettings) -> InvokeResult:
    endpoint = target.endpoint()
    messages = [{"role": "system", "content": settings.system}] if settings.system else []
    messages.append({"role": "user", "content": settings.message})
    body: dict[str, Any] = {"messages": messages, "max_tokens": settings.max_tokens}
    if settings.model:
        body["model"] = settings.model
    if settings.temperature is not None:
        body["temperature"] = settings.temperature
    headers = {"Authorization": f"Bearer {target.keys().primary}"}
    try:
        response = httpx.post(
            f"{endpoint}/v1/chat/completions", json=body, headers=headers, timeout=settings.timeout
        )
    except httpx.HTTPError as error:
        raise OperationError(
            f"{endpoint} is not answering ({type(error).__name__}); check `aca-infer status`"
        ) from error
    if response.status_code != 200:
        raise OperationError(
            f"{endpoint} answered {response.status_code}: {_error_message(response)}"
        )
    completion = response.json()
    choice = completion["choices"][0]
    return InvokeResult(
        endpoint=endpoint,
        model=str(completion.get("model", "")),
        answer=str(choice["message"]["content"]),
        finish_reason=choice.get("finish_reason"),
        usage=dict(completion.get("usage") or {}),
    )


def status(target: Target) -> StatusResult:
    endpoint = target.endpoint()
    running = target.replica.is_running()
    ready, reason = False, "the replica is not running"
    if running:
        with httpx.Client(timeout=5.0) as client:
            ready, reason = probe_ready(client, f"{endpoint}/ready")
    share = target.share
    return StatusResult(
        target=target.name,
        endpoint=endpoint,
        ui_url=target.ui_url(),
        running=running,
        ready=ready,
        reason=reason,
        release=read_text_or_none(share, CURRENT),
        previous_release=read_text_or_none(share, PREVIOUS),
    )

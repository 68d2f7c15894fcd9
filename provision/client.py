"""Talking to a deployed endpoint: a chat completion (`invoke`), the replica's state (`status`),
its logs.

Nothing is sent to a server before its /health proves it is the target's replica (release and
instance id of this start, see `readiness`): never an API key to whatever answers on the port.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from provision.errors import InputError, OperationError
from provision.readiness import check_identity, probe
from provision.release import CURRENT
from provision.release_history import previous_release
from provision.share import read_text_or_none
from provision.targets import LogsResult, ReplicaIdentity, Target

# A 429 means "busy, retry": the request itself was fine.
_RETRYABLE_CLIENT_ERRORS = frozenset({429})


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
    instance_id: str | None = None
    # Parameters changed since the replica started: the next deploy (or `up`) applies them.
    restart_pending: list[str] | None = None


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def _identified(target: Target, client: httpx.Client) -> ReplicaIdentity:
    """The replica, once its /health proves it answers on the endpoint; else OperationError."""
    identity = target.replica.identity()
    if identity is None:
        raise OperationError(
            f"the {target.name} replica is not running; start it: aca-infer deploy "
            f"--target {target.name}"
        )
    not_ours = check_identity(client, identity)
    if not_ours is not None:
        raise OperationError(f"{not_ours}; the API key was not sent (check `aca-infer status`)")
    return identity


def invoke(target: Target, settings: InvokeSettings) -> InvokeResult:
    messages = [{"role": "system", "content": settings.system}] if settings.system else []
    messages.append({"role": "user", "content": settings.message})
    body: dict[str, Any] = {"messages": messages, "max_tokens": settings.max_tokens}
    if settings.model:
        body["model"] = settings.model
    if settings.temperature is not None:
        body["temperature"] = settings.temperature
    with httpx.Client(timeout=settings.timeout) as client:
        endpoint = _identified(target, client).endpoint
        headers = {"Authorization": f"Bearer {target.keys().primary}"}
        try:
            response = client.post(f"{endpoint}/v1/chat/completions", json=body, headers=headers)
        except httpx.HTTPError as error:
            raise OperationError(
                f"{endpoint} is not answering ({type(error).__name__}); check `aca-infer status`"
            ) from error
    if response.status_code != 200:
        message = f"{endpoint} answered {response.status_code}: {_error_message(response)}"
        if response.is_client_error and response.status_code not in _RETRYABLE_CLIENT_ERRORS:
            raise InputError(message)
        raise OperationError(message)
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
    identity = target.replica.identity()
    ready, reason = False, "the replica is not running"
    if identity is not None:
        with httpx.Client(timeout=5.0) as client:
            ready, reason = probe(client, identity)
    share = target.share
    current = read_text_or_none(share, CURRENT)
    return StatusResult(
        target=target.name,
        # Where the running replica answers (a changed port applies at the next deploy).
        endpoint=identity.endpoint if identity else target.endpoint(),
        ui_url=f"{identity.endpoint}/ui" if identity else target.ui_url(),
        running=identity is not None,
        ready=ready,
        reason=reason,
        release=current,
        previous_release=previous_release(share, current),
        instance_id=identity.instance_id if identity else None,
        restart_pending=target.replica.settings_changed(),
    )


def logs(target: Target, lines: int) -> LogsResult:
    text = target.replica.logs(lines)
    return LogsResult(target=target.name, lines=text.splitlines())

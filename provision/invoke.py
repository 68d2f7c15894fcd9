"""`aca-infer invoke`: send a chat completion or an Azure ML body to the endpoint with the key.

Nothing is sent with a key before `/health` proves the server is the target's replica (see
`readiness`). A scale-to-zero endpoint answers 502/503/504 (or not at all) while a replica starts:
the request then waits on `/ready`, saying so, and is sent again, until `wait_timeout`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from provision.errors import InputError, OperationError
from provision.readiness import POLL_SECONDS, check_identity, probe_ready
from provision.request_body import PreparedRequest, answers
from provision.targets import Progress, ReplicaIdentity, Target

# The platform (or a replica still loading) answers these while it starts: wait, then resend.
COLD_START_STATUSES = frozenset({502, 503, 504})
# A 429 means "busy, retry": the request itself was fine.
_RETRYABLE_CLIENT_ERRORS = frozenset({429})
# A ready replica that still answers 503 is failing, not starting: resend only a few times.
RESENDS_WHILE_READY = 2


@dataclass(frozen=True)
class InvokeSettings:
    request: PreparedRequest
    timeout: float = 300.0
    wait_timeout: float = 600.0

    def __post_init__(self) -> None:
        if self.wait_timeout <= 0:
            raise InputError("--wait-timeout must be more than 0 seconds")


@dataclass(frozen=True)
class InvokeResult:
    endpoint: str
    route: str
    model: str
    answers: list[str]
    finish_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    streamed: bool = False


def error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def _starting(client: httpx.Client, url: str) -> bool:
    """Whether `url` answers like an endpoint still starting (nothing, or 502/503/504)."""
    try:
        return client.get(url).status_code in COLD_START_STATUSES
    except httpx.HTTPError:
        return True


def _not_running(target: Target) -> OperationError:
    return OperationError(
        f"the {target.name} replica is not running; start it: aca-infer start "
        f"--target {target.name}"
    )


@dataclass
class _ColdStart:
    client: httpx.Client
    target: Target
    identity: ReplicaIdentity
    timeout: float
    progress: Progress
    deadline: float = 0.0
    said: str = ""

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.timeout

    def time_left(self) -> bool:
        return time.monotonic() < self.deadline

    def await_replica(self) -> bool:
        """Returns once `/health` names this replica and `/ready` answers 200; True when it
        had to wait for that."""
        waited = False
        while True:
            # Read anew each time: a replica that exited is not waited for, and one that took
            # over meanwhile (a deploy, a key rotation) is the one to prove itself.
            current = self.target.replica.identity()
            if current is None:
                raise _not_running(self.target)
            self.identity = current
            endpoint = current.endpoint
            not_ours = check_identity(self.client, self.identity)
            if not_ours is None:
                ready, reason = probe_ready(self.client, f"{endpoint}/ready")
                if ready:
                    return waited
            elif _starting(self.client, f"{endpoint}/health"):
                reason = not_ours
            else:
                raise OperationError(
                    f"{not_ours}; the API key was not sent (check `aca-infer status`)"
                )
            if not self.time_left():
                raise OperationError(
                    f"{endpoint} is not ready after {self.timeout:.0f}s of waiting for a replica "
                    f"(last: {reason}); check `aca-infer status`, or wait longer with "
                    "--wait-timeout"
                )
            if reason != self.said:
                self.progress(f"waiting for a replica to start (cold start): {reason}")
                self.said = reason
            waited = True
            time.sleep(POLL_SECONDS)


def _stream_tokens(response: httpx.Response) -> Iterator[dict[str, Any]]:
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue  # keep-alive comments and blank separators
        data = line.removeprefix("data:").strip()
        if data == "[DONE]":
            return
        chunk = json.loads(data)
        if "error" in chunk:
            raise OperationError(f"the stream failed: {chunk['error'].get('message', chunk)}")
        yield chunk


def _fail_on(endpoint: str, response: httpx.Response) -> None:
    message = f"{endpoint} answered {response.status_code}: {error_message(response)}"
    if response.is_client_error and response.status_code not in _RETRYABLE_CLIENT_ERRORS:
        raise InputError(message)
    raise OperationError(message)


def _read_stream(
    endpoint: str,
    request: PreparedRequest,
    response: httpx.Response,
    on_token: Callable[[str], None],
) -> InvokeResult:
    text, model, finish = "", "", None
    usage: dict[str, Any] = {}
    for chunk in _stream_tokens(response):
        model = str(chunk.get("model") or model)
        usage = dict(chunk.get("usage") or usage)
        for choice in chunk.get("choices") or []:
            token = (choice.get("delta") or {}).get("content") or ""
            if token:
                on_token(token)
                text += token
            finish = choice.get("finish_reason") or finish
    return InvokeResult(endpoint, request.route, model, [text], finish, usage, streamed=True)


def _read_whole(endpoint: str, request: PreparedRequest, response: httpx.Response) -> InvokeResult:
    reply = response.json()
    found = answers(request, reply)
    if len(found) != request.expected_answers:
        raise OperationError(
            f"{endpoint}{request.route} answered {len(found)} answers for "
            f"{request.expected_answers} conversations"
        )
    if request.route != "/v1/chat/completions":
        return InvokeResult(endpoint, request.route, "", found)
    choice = reply["choices"][0]
    return InvokeResult(
        endpoint,
        request.route,
        str(reply.get("model", "")),
        found,
        choice.get("finish_reason"),
        dict(reply.get("usage") or {}),
    )


def invoke(
    target: Target,
    settings: InvokeSettings,
    progress: Progress,
    on_token: Callable[[str], None] = lambda token: None,
) -> InvokeResult:
    identity = target.replica.identity()
    if identity is None:
        raise _not_running(target)
    request = settings.request
    endpoint = identity.endpoint
    with httpx.Client(timeout=settings.timeout) as client:
        cold = _ColdStart(client, target, identity, settings.wait_timeout, progress)
        cold.await_replica()
        headers = {"Authorization": f"Bearer {target.keys().primary}"}
        resends_while_ready = 0
        while True:
            try:
                with client.stream(
                    "POST", f"{endpoint}{request.route}", json=dict(request.body), headers=headers
                ) as response:
                    if response.status_code == 200:
                        if request.streams:
                            return _read_stream(endpoint, request, response, on_token)
                        response.read()
                        return _read_whole(endpoint, request, response)
                    response.read()
                    failed: httpx.Response | None = response
            except httpx.TransportError as error:
                if not cold.time_left():
                    raise OperationError(
                        f"{endpoint} is not answering ({type(error).__name__}); check "
                        "`aca-infer status`"
                    ) from error
                failed = None
            if failed is not None and failed.status_code not in COLD_START_STATUSES:
                _fail_on(endpoint, failed)
            if not cold.await_replica():
                # Ready, yet the request failed: the replica is failing, not starting.
                resends_while_ready += 1
                if resends_while_ready > RESENDS_WHILE_READY or not cold.time_left():
                    if failed is None:
                        raise OperationError(
                            f"{endpoint} is not answering; check `aca-infer status`"
                        )
                    _fail_on(endpoint, failed)
                time.sleep(POLL_SECONDS)

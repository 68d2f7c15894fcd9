"""The real server under a request as large as it accepts: the liveness and readiness probes keep
answering while the chat template and the tokenizer work through megabytes, and a body over the
limit is refused before it is read."""

from __future__ import annotations

import json
import threading
import time

import httpx

from inference_app.settings import DEFAULT_MAX_REQUEST_BYTES
from tests.inference_app.conftest import PRIMARY_KEY, RealServer

AUTH = {"api-key": PRIMARY_KEY, "content-type": "application/json"}
# Far more than any probe needs (the goal is 100 ms), far less than the seconds a request this
# size takes to render and tokenise (which is how long the probes stalled when that work ran on
# the event loop).
PROBE_BOUND_SECONDS = 1.0


def chat_body(size: int) -> bytes:
    """A valid chat request of `size` bytes: one user message of many words."""
    frame = json.dumps({"messages": [{"role": "user", "content": ""}]}).encode()
    filler = (b"story " * (size // 6 + 1))[: size - len(frame)]
    return frame.replace(b'"content": ""', b'"content": "' + filler + b'"')


def test_probes_answer_while_a_huge_request_is_being_processed(real_server: RealServer) -> None:
    body = chat_body(DEFAULT_MAX_REQUEST_BYTES - 4096)
    answer: dict[str, httpx.Response] = {}

    def send_big() -> None:
        answer["big"] = httpx.post(
            real_server.url + "/v1/chat/completions", content=body, headers=AUTH, timeout=300
        )

    sender = threading.Thread(target=send_big)
    sender.start()
    slowest, answered_meanwhile = 0.0, 0
    with httpx.Client(timeout=60) as probe:
        while sender.is_alive():
            path = "/health" if answered_meanwhile % 2 == 0 else "/ready"
            started = time.perf_counter()
            status = probe.get(real_server.url + path).status_code
            took = time.perf_counter() - started
            if sender.is_alive():  # the big request has not been answered yet
                assert status == 200
                answered_meanwhile += 1
                slowest = max(slowest, took)
    sender.join()
    # It was processed to the end: tokenised, then refused for the context window.
    assert answer["big"].status_code == 400
    assert answer["big"].json()["error"]["code"] == "context_length_exceeded"
    assert slowest < PROBE_BOUND_SECONDS, f"a probe took {slowest:.2f}s during the big request"
    assert answered_meanwhile >= 10, "the probes never overlapped the request's processing"


def test_body_over_the_limit_is_refused_before_it_is_read(real_server: RealServer) -> None:
    response = httpx.post(
        real_server.url + "/v1/chat/completions",
        content=chat_body(DEFAULT_MAX_REQUEST_BYTES + 1),
        headers=AUTH,
        timeout=60,
    )
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "request_too_large"
    assert "ACA_INFER_MAX_REQUEST_BYTES" in error["message"]

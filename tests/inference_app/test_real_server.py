"""The real server (`python -m inference_app` on the demo model) through the clients people use:
the `openai` package, Azure ML-style /score bodies, plain HTTP for auth on every route."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.inference_app.conftest import PRIMARY_KEY, SECONDARY_KEY, RealServer
from tests.inference_app.servers import wait_until

BASE_MODEL = "aca-infer/tiny-phi3"
ADAPTER = "qlora"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello! Who are you?"}]


def client(server: RealServer, key: str = PRIMARY_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=60)


def wait_for_cancel_and_idle(real_server, cancelled_before: float) -> None:
    """The engine counted one more cancelled generation and runs nothing any more."""
    wait_until(
        lambda: (
            engine_gauge(real_server, "aca_infer_engine_requests_cancelled_total")
            > cancelled_before
        ),
        30,
        "the engine to cancel the generation",
    )
    wait_until(
        lambda: engine_gauge(real_server, "aca_infer_engine_running_sequences") == 0,
        30,
        "the engine to go idle",
    )


def test_models_list_base_and_adapter(real_server: RealServer) -> None:
    ids = [model.id for model in client(real_server).models.list()]
    assert ids == [BASE_MODEL, ADAPTER]


def test_chat_completion_non_stream(real_server: RealServer) -> None:
    completion = client(real_server).chat.completions.create(
        model=ADAPTER, messages=HELLO, max_tokens=8, temperature=0
    )
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason in {"stop", "length"}
    assert completion.usage is not None
    assert completion.usage.completion_tokens <= 8
    assert completion.usage.prompt_tokens > 0


def test_chat_completion_stream_matches_non_stream_when_greedy(real_server: RealServer) -> None:
    api = client(real_server, SECONDARY_KEY)
    whole = api.chat.completions.create(model=ADAPTER, messages=HELLO, max_tokens=8, temperature=0)
    chunks = list(
        api.chat.completions.create(
            model=ADAPTER,
            messages=HELLO,
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == [whole.choices[0].finish_reason]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


def test_adapter_changes_the_output(real_server: RealServer) -> None:
    api = client(real_server)
    outputs = {
        model: api.chat.completions.create(
            model=model, messages=HELLO, max_tokens=12, temperature=0
        )
        .choices[0]
        .message.content
        for model in (BASE_MODEL, ADAPTER)
    }
    assert outputs[BASE_MODEL] != outputs[ADAPTER]


def test_completions(real_server: RealServer) -> None:
    completion = client(real_server).completions.create(
        model=BASE_MODEL, prompt="Once upon a time", max_tokens=5, temperature=0
    )
    assert completion.choices[0].text
    assert completion.usage is not None and completion.usage.completion_tokens <= 5
    streamed = client(real_server).completions.create(
        model=BASE_MODEL, prompt="Once upon a time", max_tokens=5, temperature=0, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == completion.choices[0].text


def test_openai_error_classes(real_server: RealServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(real_server, "wrong-key").models.list()
    with pytest.raises(openai.NotFoundError) as not_found:
        client(real_server).chat.completions.create(model="no-such-model", messages=HELLO)
    assert not_found.value.body["param"] == "model"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        client(real_server).chat.completions.create(model=ADAPTER, messages=HELLO, temperature=7)
    assert bad.value.body["param"] == "temperature"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as too_long:
        client(real_server).chat.completions.create(
            model=ADAPTER, messages=[{"role": "user", "content": "story " * 5000}]
        )
    assert too_long.value.code == "context_length_exceeded"


def test_score_azure_ml_formats(real_server: RealServer) -> None:
    headers = {"Authorization": f"Bearer {PRIMARY_KEY}"}
    text = httpx.post(
        real_server.url + "/score", json={"text": "Hello"}, headers=headers, timeout=60
    )
    assert text.status_code == 200
    assert isinstance(text.json()["output"], str)
    chat = httpx.post(
        real_server.url + "/score",
        json={
            "input_data": {
                "input_string": HELLO,
                "parameters": {
                    "temperature": 0.6,
                    "top_p": 0.9,
                    "do_sample": True,
                    "max_new_tokens": 6,
                },
            }
        },
        headers=headers,
        timeout=60,
    )
    assert set(chat.json()) == {"output"}
    prompts = httpx.post(
        real_server.url + "/score",
        json={
            "input_data": {"input_string": ["Once", "Twice"], "parameters": {"max_new_tokens": 4}}
        },
        headers=headers,
        timeout=60,
    ).json()
    assert [set(item) for item in prompts] == [{"0"}, {"0"}]


def protected_routes(server: RealServer) -> list[tuple[str, str]]:
    schema = httpx.get(server.url + "/openapi.json", headers={"api-key": PRIMARY_KEY}).json()
    routes = [
        (method.upper(), re.sub(r"\{[^}]+\}", "x", path))
        for path, operations in schema["paths"].items()
        for method in operations
    ]
    routes += [("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/ui/"), ("GET", "/ui/config")]
    return [r for r in routes if r[1] not in {"/health", "/ready"}]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"api-key": "wrong"}])
def test_every_route_but_health_and_ready_needs_a_key(
    real_server: RealServer, headers: dict[str, str]
) -> None:
    routes = protected_routes(real_server)
    assert ("POST", "/v1/chat/completions") in routes
    for method, path in routes:
        response = httpx.request(method, real_server.url + path, headers=headers, json={})
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.json()["error"]["code"] == "invalid_api_key"
    for path in ("/health", "/ready"):
        assert httpx.get(real_server.url + path, headers=headers).status_code == 200


def test_32_concurrent_streaming_clients_all_complete(real_server: RealServer) -> None:
    async def one(api: openai.AsyncOpenAI, i: int) -> tuple[str, str | None]:
        stream = await api.chat.completions.create(
            model=ADAPTER if i % 2 else BASE_MODEL,
            messages=[{"role": "user", "content": f"Client {i} says hello"}],
            max_tokens=16,
            stream=True,
        )
        text, finish = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
        return text, finish

    async def run_all() -> list[tuple[str, str | None]]:
        async with openai.AsyncOpenAI(
            base_url=real_server.url + "/v1", api_key=PRIMARY_KEY, max_retries=0, timeout=300
        ) as api:
            return await asyncio.gather(*(one(api, i) for i in range(32)))

    results = asyncio.run(run_all())
    assert len(results) == 32
    assert all(finish in {"stop", "length"} for _, finish in results)


def engine_gauge(server: RealServer, name: str) -> float:
    text = httpx.get(server.url + "/metrics", headers={"api-key": PRIMARY_KEY}).text
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


def test_client_that_disconnects_stops_its_generation(real_server: RealServer) -> None:
    max_tokens = 3000
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Write a very long story."}
    ]
    api = client(real_server)
    # Precondition: left alone, this (greedy, so repeatable) generation runs on well past the
    # point where the client disconnects.
    sample = api.chat.completions.create(
        model=ADAPTER, messages=messages, temperature=0, max_tokens=64
    )
    assert sample.choices[0].finish_reason == "length"
    cancelled_before = engine_gauge(real_server, "aca_infer_engine_requests_cancelled_total")
    tokens_before = engine_gauge(real_server, "aca_infer_engine_generation_tokens_total")
    stream = api.chat.completions.create(
        model=ADAPTER, messages=messages, temperature=0, max_tokens=max_tokens, stream=True
    )
    for _, _chunk in zip(range(3), stream, strict=False):
        pass
    stream.close()
    wait_for_cancel_and_idle(real_server, cancelled_before)
    generated = (
        engine_gauge(real_server, "aca_infer_engine_generation_tokens_total") - tokens_before
    )
    assert generated < max_tokens


def test_single_token_completion_leaves_the_server_ready(real_server: RealServer) -> None:
    completion = client(real_server).chat.completions.create(
        model=ADAPTER, messages=HELLO, max_tokens=1, temperature=0
    )
    assert completion.usage is not None and completion.usage.completion_tokens == 1
    assert httpx.get(real_server.url + "/ready").status_code == 200


def test_logs_are_json_lines_carrying_the_request_id(real_server: RealServer) -> None:
    response = httpx.get(real_server.url + "/v1/models", headers={"api-key": PRIMARY_KEY})
    request_id = response.headers["x-request-id"]

    def access_lines() -> list[dict[str, object]]:
        entries = [json.loads(line) for line in real_server.log_file.read_text().splitlines()]
        return [e for e in entries if e.get("request_id") == request_id]

    wait_until(lambda: access_lines(), 10, "the access log line")
    [entry] = access_lines()
    assert entry["path"] == "/v1/models"
    assert entry["status"] == 200
    assert PRIMARY_KEY not in real_server.log_file.read_text()


def test_client_that_gives_up_on_a_non_streaming_request(real_server: RealServer) -> None:
    """Logged as a cancelled request (no traceback), counted, and its generation freed."""
    request_id = "gives-up-0001"
    log_start = len(real_server.log_file.read_text())
    cancelled_before = engine_gauge(real_server, "aca_infer_engine_requests_cancelled_total")
    body = {
        "model": ADAPTER,
        "messages": [{"role": "user", "content": "Write a very long story."}],
        "temperature": 0,
        "max_tokens": 3000,
    }
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            real_server.url + "/v1/chat/completions",
            json=body,
            headers={"api-key": PRIMARY_KEY, "x-request-id": request_id},
            timeout=httpx.Timeout(60, read=0.5),
        )
    wait_for_cancel_and_idle(real_server, cancelled_before)

    def entries() -> list[dict[str, object]]:
        text = real_server.log_file.read_text()[log_start:]
        return [json.loads(line) for line in text.splitlines()]

    wait_until(
        lambda: any(e.get("request_id") == request_id and "status" in e for e in entries()),
        10,
        "the access log line",
    )
    mine = [e for e in entries() if e.get("request_id") == request_id]
    assert [e["status"] for e in mine if "status" in e] == [499]
    assert any(e.get("outcome") == "cancelled" and e["level"] == "INFO" for e in mine)
    assert not [e for e in entries() if e["level"] == "ERROR" or "exception" in e]
    metrics = httpx.get(real_server.url + "/metrics", headers={"api-key": PRIMARY_KEY}).text
    assert re.search(
        r'aca_infer_requests_total\{route="/v1/chat/completions",status="499"\} [1-9]', metrics
    )

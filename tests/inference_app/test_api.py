"""The HTTP API against a scriptable engine: shapes, errors, streaming, auth, metrics."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.inference_app.conftest import PRIMARY_KEY, SECONDARY_KEY, FakeServer
from tests.inference_app.fake_engine import BASE_ID, FakeEngine
from tests.inference_app.servers import wait_until

AUTH = {"Authorization": f"Bearer {PRIMARY_KEY}"}
HELLO = [{"role": "user", "content": "hello there"}]

StartServer = Callable[..., FakeServer]


def post(server: FakeServer, path: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers=AUTH, timeout=30, **kw)


def sse_payloads(response: httpx.Response) -> list[str]:
    return [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]


def assert_error(response: httpx.Response, status: int, param: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if param is not None:
        assert error["param"] == param
    return dict(error)


def test_health_and_ready_are_public(fake_server: StartServer) -> None:
    server = fake_server(instance_id="start-1")
    health = httpx.get(server.url + "/health")
    assert health.json() == {"status": "ok", "release": "test-release", "instance_id": "start-1"}
    wait_until(lambda: httpx.get(server.url + "/ready").status_code == 200, 10, "ready")


def test_not_ready_while_loading_then_ready(fake_server: StartServer) -> None:
    server = fake_server(FakeEngine(loaded=False))
    ready = httpx.get(server.url + "/ready")
    assert ready.status_code == 503
    assert ready.json()["reason"] == "loading model"
    error = assert_error(post(server, "/v1/chat/completions", {"messages": HELLO}), 503)
    assert error["code"] == "model_not_ready"
    server.engine.load_gate.set()
    wait_until(lambda: httpx.get(server.url + "/ready").status_code == 200, 10, "ready")
    assert post(server, "/v1/chat/completions", {"messages": HELLO}).status_code == 200


def test_ready_reports_an_engine_that_failed_to_start(fake_server: StartServer) -> None:
    engine = FakeEngine(loaded=False)
    engine.fail_start = RuntimeError("CUDA out of memory")
    engine.load_gate.set()
    server = fake_server(engine)
    wait_until(lambda: "failed" in httpx.get(server.url + "/ready").text, 10, "failure")
    ready = httpx.get(server.url + "/ready")
    assert ready.status_code == 503
    assert "CUDA out of memory" in ready.json()["reason"]


def test_every_response_carries_a_request_id(fake_server: StartServer) -> None:
    server = fake_server()
    unauthorized = httpx.get(server.url + "/v1/models")
    assert len(unauthorized.headers["x-request-id"]) == 32
    echoed = httpx.get(server.url + "/health", headers={"x-request-id": "trace-42"})
    assert echoed.headers["x-request-id"] == "trace-42"
    chat = post(server, "/v1/chat/completions", {"messages": HELLO})
    assert chat.json()["id"] == "chatcmpl-" + chat.headers["x-request-id"]


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {PRIMARY_KEY}"}, {"api-key": SECONDARY_KEY}],
    ids=["bearer-primary", "api-key-secondary"],
)
def test_either_key_in_either_header_is_accepted(fake_server: StartServer, headers: dict) -> None:
    server = fake_server()
    assert httpx.get(server.url + "/v1/models", headers=headers).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"api-key": "wrong"}])
def test_missing_or_wrong_key_is_401_in_openai_shape(
    fake_server: StartServer, headers: dict
) -> None:
    server = fake_server()
    response = httpx.post(
        server.url + "/v1/chat/completions", json={"messages": HELLO}, headers=headers
    )
    error = assert_error(response, 401)
    assert error["code"] == "invalid_api_key"
    assert server.engine.received == []


def test_browser_signs_in_with_the_key_and_gets_a_session(fake_server: StartServer) -> None:
    server = fake_server()
    redirect = httpx.get(server.url + "/ui/", headers={"accept": "text/html"})
    assert redirect.status_code == 303
    assert redirect.headers["location"] == "/login?next=/ui/"
    assert httpx.post(server.url + "/login", data={"key": "nope"}).status_code == 401
    login = httpx.post(server.url + "/login", data={"key": SECONDARY_KEY, "next": "/v1/models"})
    assert login.status_code == 303
    assert login.headers["location"] == "/v1/models"
    cookie = login.cookies["aca_infer_session"]
    assert SECONDARY_KEY not in cookie
    models = httpx.get(server.url + "/v1/models", cookies={"aca_infer_session": cookie})
    assert models.status_code == 200
    forged = httpx.get(server.url + "/v1/models", cookies={"aca_infer_session": "0" * 64})
    assert forged.status_code == 401


def test_login_never_redirects_off_site(fake_server: StartServer) -> None:
    server = fake_server()
    login = httpx.post(server.url + "/login", data={"key": PRIMARY_KEY, "next": "//evil.example/x"})
    assert login.headers["location"] == "/ui/"


def test_chat_completion_uses_the_whole_conversation_and_the_chosen_adapter(
    fake_server: StartServer,
) -> None:
    server = fake_server()
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": [{"type": "text", "text": "again"}]},
    ]
    body = post(
        server, "/v1/chat/completions", {"model": "tuned", "messages": messages, "max_tokens": 3}
    ).json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "tuned"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "tuned-0 tuned-1 tuned-2 ",
    }
    assert body["choices"][0]["finish_reason"] == "length"
    prompt = server.engine.received[0].prompt
    assert prompt == "<system> be brief <user> hi <assistant> hello <user> again <assistant>"
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}


def test_base_model_is_selectable_and_default_is_the_adapter(fake_server: StartServer) -> None:
    server = fake_server()
    base = post(server, "/v1/chat/completions", {"model": BASE_ID, "messages": HELLO}).json()
    assert base["choices"][0]["message"]["content"].startswith("base-0")
    default = post(server, "/v1/chat/completions", {"messages": HELLO}).json()
    assert default["model"] == "tuned"


def test_models_lists_base_and_adapters(fake_server: StartServer) -> None:
    server = fake_server(FakeEngine(adapters=("a", "b")))
    models = httpx.get(server.url + "/v1/models", headers=AUTH).json()
    assert [m["id"] for m in models["data"]] == [BASE_ID, "a", "b"]
    assert models["data"][1]["parent"] == BASE_ID
    assert httpx.get(server.url + "/v1/models/a", headers=AUTH).json()["id"] == "a"


def test_one_model_is_described_as_in_the_list(fake_server: StartServer) -> None:
    server = fake_server(FakeEngine(adapters=("a", "b")))
    listed = httpx.get(server.url + "/v1/models", headers=AUTH).json()["data"]
    for card in listed:
        one = httpx.get(server.url + f"/v1/models/{card['id']}", headers=AUTH).json()
        assert one == card
    assert [card["root"] for card in listed] == [BASE_ID, BASE_ID, BASE_ID]


def test_unknown_model_is_404_naming_model(fake_server: StartServer) -> None:
    server = fake_server()
    response = post(server, "/v1/chat/completions", {"model": "gpt-9", "messages": HELLO})
    assert assert_error(response, 404, "model")["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"logprobs": True}, "logprobs"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 0}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"frobnicate": 1}, "frobnicate"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ],
)
def test_bad_or_unsupported_fields_are_400_naming_the_field(
    fake_server: StartServer, extra: dict, param: str
) -> None:
    server = fake_server()
    response = post(server, "/v1/chat/completions", {"messages": HELLO, **extra})
    error = assert_error(response, 400, param)
    assert param.split("[")[0] in error["message"]


def test_too_many_stop_sequences_names_the_limit(fake_server: StartServer) -> None:
    server = fake_server()
    body = {"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]}
    error = assert_error(post(server, "/v1/chat/completions", body), 400, "stop")
    assert "at most 4" in error["message"]
    assert "valid string" not in error["message"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_stream_options_without_stream_says_stream_is_needed(
    fake_server: StartServer, path: str
) -> None:
    server = fake_server()
    body = {"messages": HELLO} if "chat" in path else {"prompt": "hello"}
    response = post(server, path, {**body, "stream_options": {"include_usage": True}})
    error = assert_error(response, 400, "stream_options")
    assert "only allowed when 'stream' is true" in error["message"]
    assert "not supported" not in error["message"]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_the_limit_is_413_in_openai_shape(
    fake_server: StartServer, chunked: bool
) -> None:
    server = fake_server(max_request_bytes=4096)
    body = json.dumps({"messages": [{"role": "user", "content": "word " * 2000}]}).encode()
    content: bytes | Iterator[bytes] = body
    if chunked:  # no Content-Length: the server has to count as it reads
        content = (body[i : i + 1000] for i in range(0, len(body), 1000))
    response = httpx.post(
        server.url + "/v1/chat/completions",
        content=content,
        headers={**AUTH, "content-type": "application/json"},
        timeout=30,
    )
    error = assert_error(response, 413)
    assert error["code"] == "request_too_large"
    assert "4096 bytes" in error["message"]
    assert server.engine.received == []
    small = json.dumps({"messages": HELLO}).encode()
    response = httpx.post(
        server.url + "/v1/chat/completions",
        content=iter([small]) if chunked else small,
        headers={**AUTH, "content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 200


def test_body_that_is_not_json_is_400(fake_server: StartServer) -> None:
    server = fake_server()
    response = httpx.post(
        server.url + "/v1/chat/completions",
        content=b"{not json",
        headers={**AUTH, "content-type": "application/json"},
    )
    assert_error(response, 400)


def test_max_tokens_is_bounded_by_the_context_window(fake_server: StartServer) -> None:
    server = fake_server(FakeEngine(context_window=20))
    body = post(server, "/v1/chat/completions", {"messages": HELLO, "max_tokens": 1000}).json()
    prompt_tokens = body["usage"]["prompt_tokens"]
    assert body["usage"]["completion_tokens"] == 20 - prompt_tokens
    assert body["choices"][0]["finish_reason"] == "length"


def test_prompt_alone_too_long_is_400(fake_server: StartServer) -> None:
    server = fake_server(FakeEngine(context_window=20))
    long = [{"role": "user", "content": "word " * 30}]
    response = post(server, "/v1/chat/completions", {"messages": long})
    assert assert_error(response, 400, "messages")["code"] == "context_length_exceeded"


def test_sampling_parameters_reach_the_engine(fake_server: StartServer) -> None:
    server = fake_server()
    post(
        server,
        "/v1/chat/completions",
        {
            "messages": HELLO,
            "temperature": 0,
            "top_p": 0.5,
            "seed": 7,
            "presence_penalty": 0.5,
            "frequency_penalty": -0.5,
            "max_completion_tokens": 2,
        },
    )
    sampling = server.engine.received[0].sampling
    assert (sampling.temperature, sampling.top_p, sampling.seed) == (0.0, 0.5, 7)
    assert (sampling.presence_penalty, sampling.frequency_penalty) == (0.5, -0.5)
    assert sampling.max_tokens == 2


def test_n_choices_and_stop(fake_server: StartServer) -> None:
    server = fake_server()
    body = post(
        server,
        "/v1/chat/completions",
        {"messages": HELLO, "n": 2, "max_tokens": 5, "stop": "-2", "seed": 1},
    ).json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    assert all(c["message"]["content"] == "tuned-0 tuned-1 tuned" for c in body["choices"])
    assert all(c["finish_reason"] == "stop" for c in body["choices"])
    assert body["usage"]["completion_tokens"] == 6  # 3 each; the prompt counts once
    assert sorted(r.sampling.seed or 0 for r in server.engine.received) == [1, 2]


def test_chat_stream_chunks_usage_and_done(fake_server: StartServer) -> None:
    server = fake_server()
    response = post(
        server,
        "/v1/chat/completions",
        {
            "messages": HELLO,
            "max_tokens": 2,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(response)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "tuned-0 tuned-1 "
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 2


def test_stream_sends_keepalive_comments_while_waiting_for_the_first_token(
    fake_server: StartServer,
) -> None:
    engine = FakeEngine()
    engine.first_token_delay = 1.0  # five keep-alive intervals of the test settings
    server = fake_server(engine)
    response = post(
        server, "/v1/chat/completions", {"messages": HELLO, "stream": True, "max_tokens": 1}
    )
    assert ": keep-alive" in response.text
    assert sse_payloads(response)[-1] == "[DONE]"


@pytest.mark.parametrize("stream", [False, True])
def test_full_queue_is_429_with_retry_after(fake_server: StartServer, stream: bool) -> None:
    engine = FakeEngine()
    engine.overloaded = True
    server = fake_server(engine)
    response = post(server, "/v1/chat/completions", {"messages": HELLO, "stream": stream})
    assert assert_error(response, 429)["type"] == "rate_limit_error"
    assert response.headers["retry-after"] == "3"


def test_failure_after_the_stream_began_is_one_final_error_event(
    fake_server: StartServer,
) -> None:
    engine = FakeEngine()
    engine.fail_after_tokens = 2
    server = fake_server(engine)
    response = post(
        server, "/v1/chat/completions", {"messages": HELLO, "stream": True, "max_tokens": 5}
    )
    assert response.status_code == 200
    payloads = sse_payloads(response)
    assert "[DONE]" not in payloads
    final = json.loads(payloads[-1])
    assert final["error"]["type"] == "server_error"
    assert "simulated engine crash" in final["error"]["message"]


def test_failure_without_stream_is_500_in_openai_shape(fake_server: StartServer) -> None:
    engine = FakeEngine()
    engine.fail_after_tokens = 0
    server = fake_server(engine)
    response = post(server, "/v1/chat/completions", {"messages": HELLO})
    assert assert_error(response, 500)["code"] == "engine_error"


def test_completions_plain_list_echo_and_stream(fake_server: StartServer) -> None:
    server = fake_server()
    body = post(
        server,
        "/v1/completions",
        {"model": BASE_ID, "prompt": ["one", "two words"], "n": 2, "max_tokens": 1, "echo": True},
    ).json()
    assert body["object"] == "text_completion"
    assert [c["text"] for c in body["choices"]] == [
        "onebase-0 ",
        "onebase-0 ",
        "two wordsbase-0 ",
        "two wordsbase-0 ",
    ]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert server.engine.received[0].prompt == "one"  # no chat template on completions
    streamed = post(server, "/v1/completions", {"prompt": "a b", "max_tokens": 2, "stream": True})
    payloads = sse_payloads(streamed)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == "tuned-0 tuned-1 "
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_completions_reject_unsupported_fields(fake_server: StartServer) -> None:
    server = fake_server()
    response = post(server, "/v1/completions", {"prompt": "x", "suffix": "y"})
    assert_error(response, 400, "suffix")


def test_score_text_messages_and_strings(fake_server: StartServer) -> None:
    server = fake_server()
    text = post(server, "/score", {"text": "hi"}).json()
    assert text == {"output": "tuned-0 tuned-1 tuned-2 tuned-3 tuned-4 tuned-5 tuned-6 tuned-7 "}
    chat = post(
        server,
        "/score",
        {
            "input_data": {
                "input_string": [{"role": "user", "content": "hi"}],
                "parameters": {"max_new_tokens": 2, "do_sample": False, "temperature": 0.9},
            }
        },
    ).json()
    assert chat == {"output": "tuned-0 tuned-1 "}
    assert server.engine.received[-1].sampling.temperature == 0.0  # do_sample false = greedy
    strings = post(
        server,
        "/score",
        {
            "input_data": {
                "input_string": ["first", "second"],
                "parameters": {"max_new_tokens": 1, "do_sample": True, "temperature": 0.5},
            }
        },
    ).json()
    assert strings == [{"0": "tuned-0 "}, {"0": "tuned-0 "}]
    assert server.engine.received[-1].sampling.temperature == 0.5
    assert server.engine.received[-1].prompt == "second"


def test_score_answers_a_list_of_conversations_one_entry_each(fake_server: StartServer) -> None:
    server = fake_server()
    conversations = [
        [{"role": "user", "content": "first"}],
        [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "second"},
        ],
    ]
    response = post(
        server,
        "/score",
        {"input_data": {"input_string": conversations, "parameters": {"max_new_tokens": 1}}},
    )
    assert response.status_code == 200
    assert response.json() == [{"0": "tuned-0 "}, {"0": "tuned-0 "}]
    # Each conversation went through the chat template, not as a raw string.
    prompts = [request.prompt for request in server.engine.received[-2:]]
    assert "first" in prompts[0] and "second" in prompts[1] and "be brief" in prompts[1]
    assert prompts[0] != "first"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, None),
        ({"text": "x", "input_data": {"input_string": ["y"]}}, None),
        (
            {"input_data": {"input_string": ["y"], "parameters": {"beam": 2}}},
            "input_data.parameters.beam",
        ),
        ({"input_data": {"input_string": []}}, None),
        ({"input_data": {"input_string": [[]]}}, None),
    ],
)
def test_score_bad_bodies_are_400(fake_server: StartServer, body: dict, param: str | None) -> None:
    server = fake_server()
    assert_error(post(server, "/score", body), 400, param)


def test_metrics_report_requests_tokens_latency_and_engine(fake_server: StartServer) -> None:
    server = fake_server()
    post(server, "/v1/chat/completions", {"messages": HELLO, "max_tokens": 3})
    assert httpx.get(server.url + "/metrics").status_code == 401
    text = httpx.get(server.url + "/metrics", headers=AUTH).text
    assert 'aca_infer_requests_total{route="/v1/chat/completions",status="200"} 1.0' in text
    assert "aca_infer_completion_tokens_total 3.0" in text
    assert "aca_infer_time_to_first_token_seconds_count 1.0" in text
    assert "aca_infer_tokens_per_second_count 1.0" in text
    assert "aca_infer_queue_depth 0.0" in text
    assert "aca_infer_engine_ready 1.0" in text
    assert 'aca_infer_generations_total{outcome="length"} 1.0' in text


@pytest.mark.parametrize("stream", [False, True])
def test_client_disconnect_stops_the_generation(fake_server: StartServer, stream: bool) -> None:
    engine = FakeEngine(context_window=10_000)
    engine.token_delay = 0.05
    server = fake_server(engine)
    body = {"messages": HELLO, "max_tokens": 5000, "stream": stream}
    with httpx.Client(timeout=30) as client:
        if stream:
            with client.stream(
                "POST", server.url + "/v1/chat/completions", json=body, headers=AUTH
            ) as r:
                next(r.iter_lines())
        else:
            with pytest.raises(httpx.ReadTimeout):
                client.post(
                    server.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=0.5
                )
    wait_until(lambda: engine.closed_early, 10, "the generation to be cancelled")
    assert engine.finished == []

    def metrics() -> str:
        return httpx.get(server.url + "/metrics", headers=AUTH).text

    wait_until(
        lambda: 'aca_infer_generations_total{outcome="cancelled"} 1.0' in metrics(),
        10,
        "the cancellation to be counted",
    )
    assert "aca_infer_generations_running 0.0" in metrics()
    if not stream:  # counted as a request the client closed, not as a server error
        assert 'route="/v1/chat/completions",status="499"} 1.0' in metrics()
        assert 'status="500"' not in metrics()


@pytest.mark.parametrize(
    ("knobs", "expected"),
    [
        ({"temperature": 1e-9}, (0.0, 1.0)),
        ({"temperature": 0.8, "top_p": 1e-300}, (0.0, 1.0)),
        ({"temperature": 0.8, "top_p": 0.9}, (0.8, 0.9)),
    ],
)
def test_vanishing_temperature_or_top_p_decodes_greedily(
    fake_server: StartServer, knobs: dict, expected: tuple[float, float]
) -> None:
    server = fake_server()
    post(server, "/v1/chat/completions", {"messages": HELLO, **knobs})
    sampling = server.engine.received[0].sampling
    assert (sampling.temperature, sampling.top_p) == expected


def test_stream_with_n_choices_interleaves_and_finishes_each(fake_server: StartServer) -> None:
    server = fake_server()
    response = post(
        server,
        "/v1/chat/completions",
        {"messages": HELLO, "n": 3, "max_tokens": 2, "stream": True},
    )
    chunks = [json.loads(p) for p in sse_payloads(response)[:-1]]
    texts = {i: "" for i in range(3)}
    finished = []
    for chunk in chunks:
        choice = chunk["choices"][0]
        texts[choice["index"]] += choice["delta"].get("content") or ""
        if choice["finish_reason"]:
            finished.append(choice["index"])
    assert texts == {i: "tuned-0 tuned-1 " for i in range(3)}
    assert sorted(finished) == [0, 1, 2]


def test_completion_stream_reports_usage_when_asked(fake_server: StartServer) -> None:
    server = fake_server()
    response = post(
        server,
        "/v1/completions",
        {
            "prompt": "a b c",
            "max_tokens": 2,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    payloads = sse_payloads(response)
    usage = json.loads(payloads[-2])["usage"]
    assert usage == {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def test_seed_out_of_range_is_400(fake_server: StartServer) -> None:
    server = fake_server()
    response = post(server, "/v1/chat/completions", {"messages": HELLO, "seed": 2**64})
    assert_error(response, 400, "seed")

"""The real engine with a deliberately tiny batch and queue: the request that does not fit is
answered 429 with Retry-After, in the OpenAI error shape, while the others complete."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx
import pytest

from scripts.make_demo_model import DemoModel
from tests.inference_app.conftest import PRIMARY_KEY, copy_app, real_env
from tests.inference_app.servers import serve_process

AUTH = {"api-key": PRIMARY_KEY}
LONG = {
    "messages": [{"role": "user", "content": "Write a very long story."}],
    "max_tokens": 2000,
    "temperature": 0,
    "stream": True,
}


@pytest.fixture(scope="module")
def small_server(demo_model: DemoModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("small-server")
    env = real_env(
        demo_model, ACA_INFER_UI="false", ACA_INFER_MAX_BATCH_SIZE="1", ACA_INFER_MAX_QUEUE="1"
    )
    with serve_process(env, workdir / "server.log", cwd=copy_app(workdir / "app")) as url:
        yield url


def test_requests_beyond_batch_and_queue_get_429(small_server: str) -> None:
    url = small_server + "/v1/chat/completions"
    with contextlib.ExitStack() as open_streams:
        responses = []
        for _ in range(8):  # far more than one running plus one waiting
            client = open_streams.enter_context(httpx.Client(timeout=60))
            responses.append(
                open_streams.enter_context(client.stream("POST", url, json=LONG, headers=AUTH))
            )
        statuses = [r.status_code for r in responses]
        assert 200 in statuses
        assert 429 in statuses
        for rejected in (r for r in responses if r.status_code == 429):
            rejected.read()
            assert int(rejected.headers["retry-after"]) >= 1
            assert rejected.json()["error"]["type"] == "rate_limit_error"
    # Closing the admitted streams freed the engine: it serves again.
    ok = httpx.post(url, json={**LONG, "stream": False, "max_tokens": 2}, headers=AUTH, timeout=60)
    assert ok.status_code == 200

"""The local front proxy: streams pass chunk by chunk, the route switches without a failure."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from fastapi.responses import StreamingResponse

from provision.local.front_proxy import CONTROL_PATH, TOKEN_HEADER, FrontProxy
from tests.inference_app.servers import serve_in_thread

TOKEN = "control-token"


def streaming_backend(name: str, gate: threading.Event) -> FastAPI:
    app = FastAPI()

    @app.get("/who")
    def who() -> dict[str, str]:
        return {"name": name}

    @app.post("/v1/chat/completions")
    def stream() -> StreamingResponse:
        async def events() -> AsyncIterator[bytes]:
            yield b"data: first\n\n"
            # The second chunk waits until the client has seen the first: a proxy that
            # buffered the response would hang here.
            while not gate.is_set():
                await asyncio.sleep(0.01)
            yield b"data: second\n\n"
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_sse_passes_chunk_by_chunk_and_the_route_switches() -> None:
    gate = threading.Event()
    proxy = FrontProxy(TOKEN, None)
    with (
        serve_in_thread(streaming_backend("one", gate)) as one,
        serve_in_thread(streaming_backend("two", gate)) as two,
        serve_in_thread(proxy) as front,  # type: ignore[arg-type]
        httpx.Client(timeout=30) as client,
    ):
        assert client.get(f"{front}/who").status_code == 503  # no replica live yet
        control = f"{front}{CONTROL_PATH}"
        assert client.put(control, json={"backend": port_of(one)}).status_code == 403
        headers = {TOKEN_HEADER: TOKEN}
        client.put(control, json={"backend": port_of(one)}, headers=headers)
        assert client.get(f"{front}/who").json() == {"name": "one"}

        with client.stream("POST", f"{front}/v1/chat/completions", json={}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            lines = response.iter_lines()
            assert next(lines) == "data: first"
            in_flight = client.get(control, headers=headers).json()["in_flight"]
            assert in_flight == {str(port_of(one)): 1}
            # Switch while the stream runs: it finishes on the old backend.
            client.put(control, json={"backend": port_of(two)}, headers=headers)
            assert client.get(f"{front}/who").json() == {"name": "two"}
            gate.set()
            assert [line for line in lines if line] == ["data: second", "data: [DONE]"]
        assert client.get(control, headers=headers).json()["in_flight"] == {}

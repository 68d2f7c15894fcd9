"""The baseline for `serve_bench.py`: the usual way to stream from transformers.

Each request starts `model.generate` in its own thread with a `TextIteratorStreamer` and relays
the streamer's text as OpenAI-style SSE chunks, so the benchmark's client reads both servers the
same way. No batching: concurrent requests run concurrent, separate `generate` calls.

Usage: python bench/baseline_server.py --model-path DIR --port PORT
"""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, StreamingResponse
from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def create_app(model_path: Path) -> FastAPI:
    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True).eval()
    app = FastAPI()

    @app.get("/ready")
    def ready() -> PlainTextResponse:
        return PlainTextResponse("ready")

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()
        prompt = tokenizer.apply_chat_template(
            body["messages"], tokenize=False, add_generation_prompt=True
        )
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict[str, torch.Tensor] = {}

        def generate() -> None:
            with torch.inference_mode():
                result["ids"] = model.generate(
                    **inputs, streamer=streamer, max_new_tokens=body["max_tokens"], do_sample=False
                )

        worker = threading.Thread(target=generate, daemon=True)
        worker.start()

        def events() -> Iterator[str]:
            for text in streamer:
                if text:
                    yield _sse({"choices": [{"index": 0, "delta": {"content": text}}]})
            worker.join()
            completion = int(result["ids"].shape[1] - inputs["input_ids"].shape[1])
            yield _sse({"choices": [], "usage": {"completion_tokens": completion}})
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.model_path),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()

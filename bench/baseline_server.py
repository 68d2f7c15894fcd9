"""The baseline for `serve_bench.py`: the usual way to stream from transformers.

Each request starts `model.generate` in its own thread with a `TextIteratorStreamer` and relays
the streamer's text as OpenAI-style SSE chunks, so the benchmark's client reads both servers the
same way. No batching: concurrent requests run concurrent, separate `generate` calls.

With `--adapter-path`, a request whose `model` is `--adapter-name` runs on a peft model with that
adapter (a second copy of the base model, so base requests never see the adapter). `temperature`
above 0 samples (with `top_p`), as `generate(do_sample=True)` does; 0 or none is greedy.

Usage: python bench/baseline_server.py --model-path DIR --port PORT
       [--adapter-path DIR --adapter-name NAME]
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
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _load(model_path: Path) -> Any:
    return AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True).eval()


def create_app(
    model_path: Path, adapter_path: Path | None = None, adapter_name: str = "qlora"
) -> FastAPI:
    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    models = {"": _load(model_path)}
    if adapter_path is not None:
        models[adapter_name] = PeftModel.from_pretrained(_load(model_path), adapter_path).eval()
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
        model = models.get(body.get("model") or "", models[""])
        temperature = float(body.get("temperature") or 0.0)
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            top_p = float(body.get("top_p") or 1.0)
            # top_k=0: sample from the whole distribution, as the OpenAI API (and our server)
            # do; generate's default would keep only the 50 most likely tokens.
            sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}

        def generate() -> None:
            with torch.inference_mode():
                result["ids"] = model.generate(
                    **inputs, streamer=streamer, max_new_tokens=body["max_tokens"], **sampling
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
    parser.add_argument("--adapter-path", type=Path, help="LoRA adapter served as --adapter-name")
    parser.add_argument("--adapter-name", default="qlora")
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.model_path, args.adapter_path, args.adapter_name),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()

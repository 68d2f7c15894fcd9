"""The same comparison without HTTP: what batching alone buys, in one process.

ours: `TransformersEngine` serving N concurrent streams. baseline: N threads, each running
`model.generate` with a `TextIteratorStreamer` read by its own consumer thread (what the baseline
server does per request, minus the web framework). Greedy with the same stop tokens, so both
generate the same tokens; rates count the tokens actually generated.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

from inference_app.engine import TransformersEngine
from inference_app.engine.base import GenerationRequest, SamplingParams


@dataclass(frozen=True)
class EngineLevel:
    clients: int
    ours_tokens_per_second: float
    baseline_tokens_per_second: float


def _prompts(clients: int, rounds: int) -> list[list[str]]:
    return [
        [f"Request {c}.{r}: please explain how the deployment works." for r in range(rounds)]
        for c in range(clients)
    ]


async def _ours(engine: TransformersEngine, prompts: list[list[str]], max_tokens: int) -> int:
    async def client(texts: list[str]) -> int:
        tokens = 0
        for text in texts:
            prompt = engine.render_chat([{"role": "user", "content": text}])
            params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
            async for chunk in engine.generate(GenerationRequest("bench", prompt, params)):
                if chunk.finish_reason is not None:
                    tokens += chunk.completion_tokens
        return tokens

    return sum(await asyncio.gather(*(client(texts) for texts in prompts)))


def _baseline(model: Any, tokenizer: Any, prompts: list[list[str]], max_tokens: int) -> int:
    counts: list[int] = []

    def client(texts: list[str]) -> None:
        for text in texts:
            prompt = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
            inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
            streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
            result: dict[str, torch.Tensor] = {}

            def generate(
                inputs: Any = inputs, streamer: Any = streamer, result: Any = result
            ) -> None:
                with torch.inference_mode():
                    result["ids"] = model.generate(
                        **inputs,
                        streamer=streamer,
                        max_new_tokens=max_tokens,
                        do_sample=False,
                    )

            worker = threading.Thread(target=generate)
            worker.start()
            for _ in streamer:
                pass
            worker.join()
            counts.append(int(result["ids"].shape[1] - inputs["input_ids"].shape[1]))

    threads = [threading.Thread(target=client, args=(texts,)) for texts in prompts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


def run(
    model_path: Path, concurrency: Sequence[int], rounds: Callable[[int], int], max_tokens: int
) -> list[EngineLevel]:
    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True).eval()
    engine = TransformersEngine(model_path, max_batch_size=max(concurrency), max_queue=1024)
    asyncio.run(engine.start())
    try:
        _baseline(model, tokenizer, _prompts(1, 1), max_tokens)  # warm-up
        asyncio.run(_ours(engine, _prompts(1, 1), max_tokens))
        levels = []
        for clients in concurrency:
            prompts = _prompts(clients, rounds(clients))
            started = time.perf_counter()
            base_tokens = _baseline(model, tokenizer, prompts, max_tokens)
            base_rate = base_tokens / (time.perf_counter() - started)
            started = time.perf_counter()
            ours_tokens = asyncio.run(_ours(engine, prompts, max_tokens))
            ours_rate = ours_tokens / (time.perf_counter() - started)
            levels.append(EngineLevel(clients, ours_rate, base_rate))
        return levels
    finally:
        asyncio.run(engine.shutdown())


def table(levels: Sequence[EngineLevel]) -> list[str]:
    rows = [
        "| clients | ours tok/s | baseline tok/s | ratio |",
        "|---:|---:|---:|---:|",
    ]
    for level in levels:
        ratio = level.ours_tokens_per_second / level.baseline_tokens_per_second
        rows.append(
            f"| {level.clients} | {level.ours_tokens_per_second:.0f} "
            f"| {level.baseline_tokens_per_second:.0f} | **{ratio:.1f}x** |"
        )
    return rows

"""Running requests against an engine from synchronous tests."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from inference_app.engine import TransformersEngine
from inference_app.engine.base import GenerationChunk, GenerationRequest, SamplingParams

ADAPTER = "qlora"
OTHER_ADAPTER = "negated"

_ids = itertools.count()


def started(engine: TransformersEngine) -> TransformersEngine:
    asyncio.run(engine.start())
    return engine


@dataclass(frozen=True)
class Result:
    text: str
    finish_reason: str | None
    completion_tokens: int
    chunks: int = field(compare=False)  # how the text was split depends on the reader's pace


def request(
    prompt: str, adapter: str | None = None, *, max_tokens: int = 24, **sampling: object
) -> GenerationRequest:
    params = SamplingParams(max_tokens=max_tokens, **{"temperature": 0.0, **sampling})  # type: ignore[arg-type]
    return GenerationRequest(f"req-{next(_ids)}", prompt, params, adapter)


async def collect(stream: AsyncIterator[GenerationChunk]) -> Result:
    texts: list[str] = []
    last: GenerationChunk | None = None
    async for chunk in stream:
        texts.append(chunk.text)
        last = chunk
    assert last is not None, "the stream ended without a chunk"
    return Result("".join(texts), last.finish_reason, last.completion_tokens, len(texts))


async def close(stream: AsyncIterator[GenerationChunk]) -> None:
    """What a server does when its client disconnects."""
    await stream.aclose()  # type: ignore[attr-defined]


async def complete(engine: TransformersEngine, req: GenerationRequest) -> Result:
    return await collect(engine.generate(req))


def chat_prompt(engine: TransformersEngine, text: str) -> str:
    return engine.render_chat([{"role": "user", "content": text}])


PROMPT_TEXTS = (
    "Hello!",
    "What is the capital of France?",
    "Please explain how the deployment works, step by step, with every detail you know.",
    "Tell me a joke about computers.",
    "Write a haiku about the cloud.",
    "Thank you for your help!",
)

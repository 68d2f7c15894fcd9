"""`POST /v1/completions`: raw prompts, no chat template; `n` choices per prompt."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass

from inference_app.engine.base import (
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    ModelInfo,
)
from inference_app.generation import GenerationService, SamplingChoices, usage_of
from inference_app.protocol import Completion, CompletionChoice, CompletionRequest
from inference_app.streaming import sse, sse_frame


@dataclass(frozen=True)
class PreparedCompletion:
    model: ModelInfo
    prompts: list[str]
    requests: list[GenerationRequest]  # prompt-major: choice index = prompt index * n + j
    prompt_tokens: list[int]
    n: int


class CompletionService:
    def __init__(self, generation: GenerationService) -> None:
        self.generation = generation

    async def prepare(self, body: CompletionRequest, request_id: str) -> PreparedCompletion:
        model = self.generation.admit(body)
        prompts = body.prompts()
        requests: list[GenerationRequest] = []
        prompt_tokens: list[int] = []
        for i, prompt in enumerate(prompts):
            param = "prompt" if len(prompts) == 1 else f"prompt[{i}]"
            ids = await self.generation.tokenize_prompt(prompt, param)
            sampling = self.generation.sampling(SamplingChoices.of(body, body.max_tokens), len(ids))
            prompt_tokens.append(len(ids))
            requests += self.generation.requests(
                f"{request_id}-p{i}" if len(prompts) > 1 else request_id,
                prompt,
                ids,
                sampling,
                model,
                body.n,
            )
        return PreparedCompletion(model, prompts, requests, prompt_tokens, body.n)

    async def complete(self, body: CompletionRequest, request_id: str) -> Completion:
        prepared = await self.prepare(body, request_id)
        results = await self.generation.collect(prepared.requests)
        return Completion(
            id=f"cmpl-{request_id}",
            model=prepared.model.id,
            choices=[
                CompletionChoice(
                    index=i,
                    text=(prepared.prompts[i // prepared.n] if body.echo else "") + r.text,
                    finish_reason=r.finish_reason,
                )
                for i, r in enumerate(results)
            ],
            usage=usage_of(prepared.prompt_tokens, [r.completion_tokens for r in results]),
        )

    async def stream(self, body: CompletionRequest, request_id: str) -> AsyncIterator[str]:
        prepared = await self.prepare(body, request_id)
        events = await self.generation.stream(prepared.requests)
        return self._sse(prepared, events, request_id, body.echo, body.include_usage())

    def _sse(
        self,
        prepared: PreparedCompletion,
        events: AsyncGenerator[tuple[int, GenerationChunk] | None, None],
        request_id: str,
        echo: bool,
        include_usage: bool,
    ) -> AsyncIterator[str]:
        created = int(time.time())

        def chunk(index: int, text: str, finish_reason: FinishReason | None = None) -> str:
            return sse(
                Completion(
                    id=f"cmpl-{request_id}",
                    created=created,
                    model=prepared.model.id,
                    choices=[
                        CompletionChoice(
                            index=index,
                            text=text,
                            finish_reason=finish_reason,
                        )
                    ],
                ).model_dump_json()
            )

        def opening() -> Iterator[str]:
            if echo:
                for index in range(len(prepared.requests)):
                    yield chunk(index, prepared.prompts[index // prepared.n])

        def render(index: int, piece: GenerationChunk) -> Iterator[str]:
            if piece.text or piece.finish_reason is not None:
                yield chunk(index, piece.text, piece.finish_reason)

        def usage(completion_tokens: list[int]) -> str:
            return sse(
                Completion(
                    id=f"cmpl-{request_id}",
                    created=created,
                    model=prepared.model.id,
                    choices=[],
                    usage=usage_of(prepared.prompt_tokens, completion_tokens),
                ).model_dump_json()
            )

        return sse_frame(
            events, len(prepared.requests), opening(), render, usage if include_usage else None
        )

"""`POST /v1/chat/completions`: the whole conversation through the model's chat template."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass

from inference_app.engine.base import GenerationChunk, GenerationRequest, ModelInfo
from inference_app.generation import GenerationService, SamplingChoices, usage_of
from inference_app.protocol import (
    AssistantMessage,
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatDelta,
    Usage,
)
from inference_app.streaming import sse, sse_frame


@dataclass(frozen=True)
class PreparedChat:
    model: ModelInfo
    requests: list[GenerationRequest]
    prompt_tokens: int


class ChatService:
    def __init__(self, generation: GenerationService) -> None:
        self.generation = generation

    async def prepare(self, body: ChatCompletionRequest, request_id: str) -> PreparedChat:
        model = self.generation.admit(body)
        prompt = await self.generation.render_chat(
            [message.as_template_message() for message in body.messages]
        )
        prompt_ids = await self.generation.tokenize_prompt(prompt, "messages")
        sampling = self.generation.sampling(
            SamplingChoices.of(body, body.token_limit()), len(prompt_ids)
        )
        requests = self.generation.requests(request_id, prompt, prompt_ids, sampling, model, body.n)
        return PreparedChat(model, requests, len(prompt_ids))

    async def complete(self, body: ChatCompletionRequest, request_id: str) -> ChatCompletion:
        prepared = await self.prepare(body, request_id)
        results = await self.generation.collect(prepared.requests)
        usage = usage_of([prepared.prompt_tokens], [r.completion_tokens for r in results])
        return ChatCompletion(
            id=f"chatcmpl-{request_id}",
            model=prepared.model.id,
            choices=[
                ChatChoice(
                    index=i,
                    message=AssistantMessage(content=r.text),
                    finish_reason=r.finish_reason,
                )
                for i, r in enumerate(results)
            ],
            usage=usage,
        )

    async def stream(self, body: ChatCompletionRequest, request_id: str) -> AsyncIterator[str]:
        """Prepare and start; errors up to the first event raise (and become HTTP statuses)."""
        prepared = await self.prepare(body, request_id)
        events = await self.generation.stream(prepared.requests)
        return self._sse(prepared, events, request_id, body.include_usage())

    def _sse(
        self,
        prepared: PreparedChat,
        events: AsyncGenerator[tuple[int, GenerationChunk] | None, None],
        request_id: str,
        include_usage: bool,
    ) -> AsyncIterator[str]:
        created = int(time.time())
        chunk_id = f"chatcmpl-{request_id}"

        def chunk(choices: list[ChatChunkChoice], usage: Usage | None = None) -> str:
            return sse(
                ChatCompletionChunk(
                    id=chunk_id,
                    created=created,
                    model=prepared.model.id,
                    choices=choices,
                    usage=usage,
                ).model_dump_json()
            )

        def opening() -> Iterator[str]:
            for index in range(len(prepared.requests)):
                yield chunk(
                    [ChatChunkChoice(index=index, delta=ChatDelta(role="assistant", content=""))]
                )

        def render(index: int, piece: GenerationChunk) -> Iterator[str]:
            if piece.text:
                yield chunk([ChatChunkChoice(index=index, delta=ChatDelta(content=piece.text))])
            if piece.finish_reason is not None:
                yield chunk(
                    [
                        ChatChunkChoice(
                            index=index, delta=ChatDelta(), finish_reason=piece.finish_reason
                        )
                    ]
                )

        def usage(completion_tokens: list[int]) -> str:
            return chunk([], usage_of([prepared.prompt_tokens], completion_tokens))

        return sse_frame(
            events, len(prepared.requests), opening(), render, usage if include_usage else None
        )

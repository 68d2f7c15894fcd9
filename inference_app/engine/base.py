"""The seam between the HTTP layer and whatever produces tokens.

The routes only ever talk to an `Engine`. The in-process transformers engine implements it today;
an external OpenAI-compatible server (vLLM in a GPU sidecar) can implement it later without the
routes changing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


@dataclass(frozen=True)
class GenerationRequest:
    request_id: str
    prompt: str  # already rendered (chat template applied by the caller)
    sampling: SamplingParams
    adapter: str | None = None  # None = the base model
    # The prompt's token ids when the caller has already tokenised it (to check its length),
    # so the engine does not do it again; empty = the engine tokenises `prompt`.
    prompt_token_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class GenerationChunk:
    """One step of output: the new text since the previous chunk, and running counts."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason | None = None


@dataclass(frozen=True)
class ModelInfo:
    id: str
    adapter: str | None  # None for the base model
    owned_by: str = "aca-infer"


@dataclass(frozen=True)
class EngineStatus:
    ready: bool
    reason: str = ""  # why it is not ready (loading, failed: ...)
    details: dict[str, float] = field(default_factory=dict)


class EngineOverloadedError(Exception):
    """The engine's queue is full; the caller should retry after `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"engine queue is full, retry after {retry_after:.0f}s")
        self.retry_after = retry_after


class EngineError(Exception):
    """The engine cannot serve: the model is still loading, the engine is shut down, or it
    failed (then the message starts with "engine failed:"). Raised by `generate()` at once, or
    by its iterator when the engine fails mid-generation."""


class Engine(Protocol):
    async def start(self) -> None:
        """Load the model; `status()` reports not-ready with a reason until this finishes."""

    async def shutdown(self) -> None: ...

    def status(self) -> EngineStatus: ...

    def models(self) -> Sequence[ModelInfo]: ...

    @property
    def context_window(self) -> int: ...

    def render_chat(self, messages: Sequence[dict[str, str]]) -> str:
        """Apply the model's chat template to the whole conversation, ending with the
        assistant's turn."""

    def tokenize(self, text: str) -> list[int]:
        """The token ids the engine would feed the model for this (rendered) prompt.
        Like `render_chat`, it can take long on a large input: callers on an event loop run it
        in a worker thread."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Stream the completion. Closing the iterator (client gone) cancels the generation.
        Raises EngineOverloadedError when the queue is full."""

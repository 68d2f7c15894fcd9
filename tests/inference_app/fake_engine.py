"""A scriptable stand-in for the engine: deterministic words, adjustable speed and failures,
and a record of which generations were closed before they finished."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence

from inference_app.engine.base import (
    EngineError,
    EngineOverloadedError,
    EngineStatus,
    GenerationChunk,
    GenerationRequest,
    ModelInfo,
)

BASE_ID = "fake/base"


class FakeEngine:
    """Token i of a generation is the word `<adapter or base>-<i>`; a prompt token is a word."""

    def __init__(
        self,
        *,
        context_window: int = 64,
        adapters: Sequence[str] = ("tuned",),
        loaded: bool = True,
    ) -> None:
        self._context_window = context_window
        self._adapters = list(adapters)
        self.load_gate = threading.Event()
        if loaded:
            self.load_gate.set()
        self.started = False
        self.fail_start: Exception | None = None
        self.overloaded = False
        self.first_token_delay = 0.0
        self.token_delay = 0.0
        self.fail_after_tokens: int | None = None
        self.received: list[GenerationRequest] = []
        self.closed_early: list[str] = []
        self.finished: list[str] = []

    async def start(self) -> None:
        await asyncio.to_thread(self.load_gate.wait)
        if self.fail_start is not None:
            raise self.fail_start
        self.started = True

    async def shutdown(self) -> None:
        self.started = False

    def status(self) -> EngineStatus:
        details = {"queue_depth": 0.0, "running": float(len(self.received))}
        if self.fail_start is not None:
            return EngineStatus(False, f"engine failed: {self.fail_start}", details)
        return EngineStatus(self.started, "" if self.started else "loading model", details)

    def models(self) -> Sequence[ModelInfo]:
        return [ModelInfo(BASE_ID, None), *(ModelInfo(name, name) for name in self._adapters)]

    @property
    def context_window(self) -> int:
        return self._context_window

    def render_chat(self, messages: Sequence[dict[str, str]]) -> str:
        if any(m["role"] not in {"system", "user", "assistant"} for m in messages):
            raise ValueError("messages: unknown role")
        return " ".join(f"<{m['role']}> {m['content']}" for m in messages) + " <assistant>"

    def tokenize(self, text: str) -> list[int]:
        return [len(word) for word in text.split()]

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        if not self.started:
            raise EngineError("loading model")
        if self.overloaded:
            raise EngineOverloadedError(retry_after=3)
        self.received.append(request)
        return self._stream(request)

    async def _stream(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        prompt_tokens = len(request.prompt_token_ids or self.tokenize(request.prompt))
        label = request.adapter or "base"
        text = ""
        done = False
        try:
            await asyncio.sleep(self.first_token_delay)
            for i in range(request.sampling.max_tokens):
                if self.fail_after_tokens is not None and i >= self.fail_after_tokens:
                    raise RuntimeError("simulated engine crash")
                if i:
                    await asyncio.sleep(self.token_delay)
                piece = f"{label}-{i} "
                stop_at = _first_stop(text + piece, request.sampling.stop)
                if stop_at is not None:
                    done = True
                    yield GenerationChunk(
                        (text + piece)[:stop_at][len(text) :], prompt_tokens, i + 1, "stop"
                    )
                    return
                text += piece
                last = i + 1 == request.sampling.max_tokens
                done = last
                yield GenerationChunk(piece, prompt_tokens, i + 1, "length" if last else None)
        finally:
            (self.finished if done else self.closed_early).append(request.request_id)


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    positions = [text.find(s) for s in stops if s and s in text]
    return min(positions) if positions else None

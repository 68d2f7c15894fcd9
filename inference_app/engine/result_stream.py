"""The async iterator a caller of `generate()` reads, fed from the scheduler thread.

Closing it, cancelling the task that awaits it, or simply dropping it marks the request
cancelled, so the scheduler frees its batch slot at the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol

from inference_app.engine.base import GenerationChunk


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class ResultStream(AsyncIterator[GenerationChunk]):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[GenerationChunk | BaseException] = asyncio.Queue()
        self._request: Cancellable | None = None
        self._finished = False

    def attach(self, request: Cancellable) -> None:
        self._request = request

    def deliver(self, item: GenerationChunk | BaseException) -> None:
        """Thread-safe: hand one chunk (or the error that ends the stream) to the reader."""
        # The loop is closed only when the whole server is going away; nobody is reading then.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def __aiter__(self) -> ResultStream:
        return self

    async def __anext__(self) -> GenerationChunk:
        if self._finished:
            raise StopAsyncIteration
        try:
            item = await self._queue.get()
        except BaseException:
            self._abandon()
            raise
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        if item.finish_reason is not None:
            self._finished = True
        return item

    async def aclose(self) -> None:
        self._abandon()

    def _abandon(self) -> None:
        if not self._finished and self._request is not None:
            self._request.cancel()
        self._finished = True

    def __del__(self) -> None:
        self._abandon()

"""The async iterator a caller of `generate()` reads, fed from the scheduler thread.

Closing it, cancelling the task that awaits it, or simply dropping it marks the request
cancelled, so the scheduler frees its batch slot at the next step. A reader that falls behind
gets the chunks that piled up merged into one, so a busy server sends fewer, larger events
instead of falling further behind.

The scheduler collects a step's chunks in an `Outbox` and hands them over with one wake-up per
event loop: waking the loop once per token per client would cost a system call each. When steps
come faster than `STREAM_INTERVAL_SECONDS` (a small model on a fast machine: a millisecond a
token), the outbox also holds text back until that interval has passed, so the server sends an
event every few tokens: each event costs the event loop a pass through the HTTP stack, and under
one interpreter lock that time comes out of the decoding thread's. A request's first token, its
end and errors always go at once; at the tens of milliseconds a token that a large model takes,
every token goes at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence

from inference_app.engine.base import GenerationChunk

# Far below what a reader notices, above the time a small model takes per token.
STREAM_INTERVAL_SECONDS = 0.005


class ResultStream(AsyncIterator[GenerationChunk]):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[GenerationChunk | BaseException] = asyncio.Queue()
        self._cancel: Callable[[], None] | None = None
        self._finished = False
        self._error: BaseException | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def on_abandon(self, cancel: Callable[[], None]) -> None:
        self._cancel = cancel

    def put(self, item: GenerationChunk | BaseException) -> None:
        """Only on the stream's loop: queue one chunk, or the error that ends the stream."""
        self._queue.put_nowait(item)

    def __aiter__(self) -> ResultStream:
        return self

    async def __anext__(self) -> GenerationChunk:
        if self._error is not None:
            self._finished = True
            error, self._error = self._error, None
            raise error
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
        while item.finish_reason is None and not self._queue.empty():
            following = self._queue.get_nowait()
            if isinstance(following, BaseException):
                self._error = following  # raised on the next call, after this text
                break
            item = _merged(item, following)
        if item.finish_reason is not None:
            self._finished = True
        return item

    async def aclose(self) -> None:
        self._abandon()

    def _abandon(self) -> None:
        if not self._finished and self._cancel is not None:
            self._cancel()
        self._finished = True

    def __del__(self) -> None:
        self._abandon()


def _merged(earlier: GenerationChunk, later: GenerationChunk) -> GenerationChunk:
    return dataclasses.replace(later, text=earlier.text + later.text)


Item = tuple[ResultStream, GenerationChunk | BaseException]


def _put_all(items: Sequence[Item]) -> None:
    for stream, item in items:
        stream.put(item)


def _urgent(item: GenerationChunk | BaseException) -> bool:
    """What a reader must get without delay: a first token, an end, an error."""
    if isinstance(item, BaseException):
        return True
    return item.finish_reason is not None or item.completion_tokens <= 1


class Outbox:
    """Chunks produced by the scheduler thread, waiting to be handed to their streams."""

    def __init__(self, interval: float = STREAM_INTERVAL_SECONDS) -> None:
        self._items: list[Item] = []
        self._interval = interval
        self._urgent = False
        self._last_flush = 0.0

    def add(self, stream: ResultStream, item: GenerationChunk | BaseException) -> None:
        self._items.append((stream, item))
        self._urgent = self._urgent or _urgent(item)

    def flush(self) -> None:
        """Hand the chunks over, unless none is urgent and the last hand-off was less than
        the interval ago (then the next step's flush takes them along)."""
        now = time.monotonic()
        if not self._items or (not self._urgent and now - self._last_flush < self._interval):
            return
        self._urgent = False
        self._last_flush = now
        by_loop: defaultdict[asyncio.AbstractEventLoop, list[Item]] = defaultdict(list)
        for stream, item in self._items:
            by_loop[stream.loop].append((stream, item))
        self._items = []
        for loop, items in by_loop.items():
            # A closed loop means its server is gone; nobody is reading those streams.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_put_all, items)

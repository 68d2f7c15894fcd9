"""Async plumbing shared by the endpoints: SSE framing with keep-alives, merging the `n`
streams of one request, and stopping work when the client goes away."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse

from inference_app.engine.base import GenerationChunk
from inference_app.errors import APIError, ClientClosedRequestError, EngineFailureError

T = TypeVar("T")

KEEPALIVE_COMMENT = ": keep-alive\n\n"
DONE_EVENT = "data: [DONE]\n\n"

log = logging.getLogger(__name__)


def sse(payload: str) -> str:
    return f"data: {payload}\n\n"


def stream_error_event(exc: Exception) -> str:
    """A failure after the stream began: one final `data:` event in the OpenAI error shape."""
    if not isinstance(exc, APIError):
        log.exception("stream failed", exc_info=exc)
        exc = EngineFailureError("Generation failed")
    return sse(json.dumps(exc.body()))


async def close_quietly(source: AsyncIterator[Any]) -> None:
    """Close an async generator (which cancels the engine's work behind it)."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


async def _cancel(task: asyncio.Future[Any] | None) -> None:
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def open_with_idle_ticks(
    source: AsyncIterator[T], *, grace: float, interval: float
) -> AsyncGenerator[T | None, None]:
    """Start `source` and wait up to `grace` seconds for its first item, so an error raised at
    submission (queue full, bad input) surfaces here, before any response has been started.

    The returned iterator yields the items, and None whenever `interval` seconds pass without
    one (a keep-alive tick). Closing it closes `source`."""
    first: asyncio.Future[T] = asyncio.ensure_future(anext(source))
    done, _ = await asyncio.wait({first}, timeout=grace)
    if (
        done
        and first.exception() is not None
        and not isinstance(first.exception(), StopAsyncIteration)
    ):
        await close_quietly(source)
        first.result()  # raises the submission error
    return _with_idle_ticks(source, first, interval)


async def _with_idle_ticks(
    source: AsyncIterator[T], first: asyncio.Future[T], interval: float
) -> AsyncGenerator[T | None, None]:
    """Ticks matter while the request waits in the queue and for its prefill. Once tokens flow,
    a decode step takes milliseconds, so the rest is read directly: a task and a wait per token
    cost more than the token itself."""
    try:
        while not first.done():
            await asyncio.wait({first}, timeout=interval)
            if not first.done():
                yield None
        try:
            item = first.result()
        except StopAsyncIteration:
            return
        yield item
        async for item in source:
            yield item
    finally:
        await _cancel(first)
        await close_quietly(source)


async def merge(sources: Iterable[AsyncIterator[T]]) -> AsyncIterator[tuple[int, T]]:
    """Interleave several streams as (index, item) in arrival order; an error in one ends all."""
    streams = list(sources)
    if len(streams) == 1:
        only = streams[0]
        try:
            async for item in only:
                yield 0, item
        finally:
            await close_quietly(only)
        return
    queue: asyncio.Queue[tuple[int, T | None, BaseException | None]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[T]) -> None:
        try:
            async for item in stream:
                await queue.put((index, item, None))
        except Exception as exc:
            await queue.put((index, None, exc))
            return
        finally:
            await close_quietly(stream)
        await queue.put((index, None, None))

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    try:
        remaining = len(tasks)
        while remaining:
            index, received, error = await queue.get()
            if error is not None:
                raise error
            if received is None:
                remaining -= 1
                continue
            yield index, received
    finally:
        for task in tasks:
            await _cancel(task)


async def sse_frame(
    events: AsyncGenerator[tuple[int, GenerationChunk] | None, None],
    choices: int,
    opening: Iterable[str],
    render: Callable[[int, GenerationChunk], Iterable[str]],
    usage: Callable[[list[int]], str] | None,
) -> AsyncIterator[str]:
    """What every streaming endpoint shares: its opening events, the events `render` makes of
    each chunk, keep-alive comments on idle ticks, the usage event when asked for, `[DONE]`.
    A failure ends the stream with one error event; ending early stops the generation."""
    completion_tokens = [0] * choices
    try:
        for event in opening:
            yield event
        async for item in events:
            if item is None:
                yield KEEPALIVE_COMMENT
                continue
            index, piece = item
            completion_tokens[index] = piece.completion_tokens
            for event in render(index, piece):
                yield event
        if usage is not None:
            yield usage(completion_tokens)
        yield DONE_EVENT
    except Exception as exc:
        yield stream_error_event(exc)
    finally:
        await events.aclose()


def sse_response(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def cancel_on_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run `work`, cancelling it if the client disconnects first (non-streaming requests,
    where nothing else would notice). A client that gave up is an outcome, not a failure:
    one log line, and ClientClosedRequestError for the access log and the request counter."""
    task = asyncio.ensure_future(work)

    async def wait_for_disconnect() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                return

    watcher = asyncio.ensure_future(wait_for_disconnect())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await _cancel(watcher)
        if not task.done():
            await _cancel(task)
    if task.cancelled():
        log.info("client disconnected; its request was cancelled", extra={"outcome": "cancelled"})
        raise ClientClosedRequestError()
    return task.result()

"""What a reader of `generate()` sees when it falls behind or goes away."""

from __future__ import annotations

import asyncio

import pytest

from inference_app.engine.base import GenerationChunk
from inference_app.engine.result_stream import Outbox, ResultStream


def chunk(text: str, tokens: int, finish: str | None = None) -> GenerationChunk:
    return GenerationChunk(text, 5, tokens, finish)  # type: ignore[arg-type]


def test_a_slow_reader_gets_the_chunks_that_piled_up_as_one() -> None:
    async def scenario() -> list[GenerationChunk]:
        stream = ResultStream(asyncio.get_running_loop())
        outbox = Outbox()
        for item in (chunk("a", 1), chunk("b", 2), chunk("c", 3), chunk("", 4, "length")):
            outbox.add(stream, item)
        outbox.flush()
        return [c async for c in stream]

    assert asyncio.run(scenario()) == [chunk("abc", 4, "length")]


def test_an_error_after_text_comes_after_that_text() -> None:
    async def scenario() -> tuple[GenerationChunk, BaseException]:
        stream = ResultStream(asyncio.get_running_loop())
        stream.put(chunk("a", 1))
        stream.put(RuntimeError("engine failed: boom"))
        first = await anext(stream)
        with pytest.raises(RuntimeError) as raised:
            await anext(stream)
        return first, raised.value

    first, error = asyncio.run(scenario())
    assert first == chunk("a", 1)
    assert str(error) == "engine failed: boom"


def test_closing_an_unfinished_stream_cancels_once_and_a_finished_one_never() -> None:
    cancels: list[str] = []

    async def scenario() -> None:
        unfinished = ResultStream(asyncio.get_running_loop())
        unfinished.on_abandon(lambda: cancels.append("unfinished"))
        await unfinished.aclose()
        await unfinished.aclose()

        finished = ResultStream(asyncio.get_running_loop())
        finished.on_abandon(lambda: cancels.append("finished"))
        finished.put(chunk("x", 1, "stop"))
        assert [c.text async for c in finished] == ["x"]
        await finished.aclose()

    asyncio.run(scenario())
    assert cancels == ["unfinished"]


def test_text_within_the_stream_interval_waits_for_the_next_hand_off() -> None:
    async def scenario() -> list[GenerationChunk]:
        stream = ResultStream(asyncio.get_running_loop())
        outbox = Outbox(interval=3600)
        outbox.add(stream, chunk("a", 1))  # a first token goes at once
        outbox.flush()
        first = await anext(stream)
        reading = asyncio.ensure_future(anext(stream))
        outbox.add(stream, chunk("b", 2))
        outbox.flush()
        outbox.add(stream, chunk("c", 3))
        outbox.flush()
        for _ in range(5):  # a hand-off would have reached the reader by now
            await asyncio.sleep(0)
        assert not reading.done(), "text within the interval was handed over"
        outbox.add(stream, chunk("", 4, "length"))  # the end goes at once, with what waited
        outbox.flush()
        return [first, await reading]

    assert asyncio.run(scenario()) == [chunk("a", 1), chunk("bc", 4, "length")]


def test_every_chunk_goes_at_once_when_steps_are_slower_than_the_interval() -> None:
    async def scenario() -> list[GenerationChunk]:
        stream = ResultStream(asyncio.get_running_loop())
        outbox = Outbox(interval=0.0)
        received = []
        for item in (chunk("a", 1), chunk("b", 2), chunk("c", 3, "stop")):
            outbox.add(stream, item)
            outbox.flush()
            received.append(await anext(stream))
        return received

    assert asyncio.run(scenario()) == [chunk("a", 1), chunk("b", 2), chunk("c", 3, "stop")]

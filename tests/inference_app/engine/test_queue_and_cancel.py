"""A full queue refuses at once; a client that goes away frees its slot."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from inference_app.engine import TransformersEngine
from inference_app.engine.base import EngineOverloadedError
from scripts.make_demo_model import DemoModel
from tests.inference_app.engine.helpers import (
    chat_prompt,
    close,
    collect,
    complete,
    request,
    started,
)

LONG = 3000  # far more tokens than any of these tests lets run


@pytest.fixture
def single_slot(demo_model: DemoModel) -> Iterator[TransformersEngine]:
    engine = started(TransformersEngine(demo_model.base_dir, max_batch_size=1, max_queue=1))
    yield engine
    asyncio.run(engine.shutdown())


def details(engine: TransformersEngine) -> dict[str, float]:
    return engine.status().details


def test_a_full_queue_refuses_new_requests_at_once(single_slot: TransformersEngine) -> None:
    prompt = chat_prompt(single_slot, "Hello!")

    async def scenario() -> None:
        running = single_slot.generate(request(prompt, max_tokens=LONG))
        await anext(running)  # admitted: it holds the only batch slot
        queued = single_slot.generate(request(prompt, max_tokens=2))
        assert details(single_slot)["queue_depth"] == 1
        with pytest.raises(EngineOverloadedError) as refused:
            single_slot.generate(request(prompt))
        assert refused.value.retry_after >= 1
        await close(running)
        assert (await collect(queued)).completion_tokens == 2

    asyncio.run(scenario())
    assert details(single_slot)["requests_rejected_total"] == 1


def test_closing_the_stream_stops_the_generation(single_slot: TransformersEngine) -> None:
    prompt = chat_prompt(single_slot, "Hello!")

    async def scenario() -> int:
        stream = single_slot.generate(request(prompt, max_tokens=LONG))
        await anext(stream)
        await close(stream)
        # With one slot, this can only finish once the abandoned request has left the batch.
        return (await complete(single_slot, request(prompt, max_tokens=3))).completion_tokens

    assert asyncio.run(scenario()) == 3
    after = details(single_slot)
    assert after["requests_cancelled_total"] == 1
    assert after["running_sequences"] == 0
    assert after["generation_tokens_total"] < LONG


def test_cancelling_the_reading_task_stops_the_generation(
    single_slot: TransformersEngine,
) -> None:
    prompt = chat_prompt(single_slot, "Hello!")

    async def scenario() -> int:
        first_chunk = asyncio.Event()

        async def reader() -> None:
            async for _ in single_slot.generate(request(prompt, max_tokens=LONG)):
                first_chunk.set()

        task = asyncio.create_task(reader())
        await first_chunk.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return (await complete(single_slot, request(prompt, max_tokens=3))).completion_tokens

    assert asyncio.run(scenario()) == 3
    assert details(single_slot)["requests_cancelled_total"] == 1
    assert details(single_slot)["generation_tokens_total"] < LONG


def test_a_request_cancelled_while_queued_never_runs(single_slot: TransformersEngine) -> None:
    prompt = chat_prompt(single_slot, "Hello!")

    async def scenario() -> None:
        running = single_slot.generate(request(prompt, max_tokens=4))
        await anext(running)
        queued = single_slot.generate(request(prompt, max_tokens=LONG))
        await close(queued)
        async for _ in running:
            pass

    asyncio.run(scenario())
    after = details(single_slot)
    assert after["requests_admitted_total"] == 1
    assert after["requests_cancelled_total"] == 1
    assert after["generation_tokens_total"] == 4


def test_without_a_queue_the_batch_still_fills(demo_model: DemoModel) -> None:
    engine = started(TransformersEngine(demo_model.base_dir, max_batch_size=3, max_queue=0))
    prompt = chat_prompt(engine, "Hello!")

    async def scenario() -> None:
        streams = [engine.generate(request(prompt, max_tokens=LONG)) for _ in range(3)]
        with pytest.raises(EngineOverloadedError):
            engine.generate(request(prompt))
        for stream in streams:
            await close(stream)

    try:
        asyncio.run(scenario())
    finally:
        asyncio.run(engine.shutdown())
    assert details(engine)["requests_rejected_total"] == 1

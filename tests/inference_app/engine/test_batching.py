"""Requests that share the batch get exactly what they would get alone."""

from __future__ import annotations

import asyncio

from inference_app.engine import TransformersEngine
from tests.inference_app.engine.helpers import (
    ADAPTER,
    OTHER_ADAPTER,
    PROMPT_TEXTS,
    Result,
    chat_prompt,
    collect,
    complete,
    request,
)


def solo(engine: TransformersEngine, prompt: str, adapter: str | None = None) -> Result:
    return asyncio.run(complete(engine, request(prompt, adapter)))


def test_greedy_output_is_the_same_alone_and_batched(engine: TransformersEngine) -> None:
    prompts = [chat_prompt(engine, text) for text in PROMPT_TEXTS]
    alone = [solo(engine, p) for p in prompts]

    async def together() -> list[Result]:
        return await asyncio.gather(*(complete(engine, request(p)) for p in prompts))

    assert asyncio.run(together()) == alone
    assert len({r.text for r in alone}) == len(prompts)


def test_requests_joining_a_running_batch_do_not_disturb_it(engine: TransformersEngine) -> None:
    long_prompt = chat_prompt(engine, PROMPT_TEXTS[2])
    short_prompts = [chat_prompt(engine, text) for text in PROMPT_TEXTS[:2]]
    long_alone = asyncio.run(complete(engine, request(long_prompt, max_tokens=40)))
    short_alone = [solo(engine, p) for p in short_prompts]

    async def staggered() -> tuple[Result, list[Result]]:
        stream = engine.generate(request(long_prompt, max_tokens=40))
        first = await anext(stream)  # the long request is decoding now
        joiners = asyncio.gather(*(complete(engine, request(p)) for p in short_prompts))
        rest = await collect(stream)
        long = Result(
            first.text + rest.text, rest.finish_reason, rest.completion_tokens, 1 + rest.chunks
        )
        return long, await joiners

    long, joined = asyncio.run(staggered())
    assert long == long_alone
    assert joined == short_alone


def test_adapters_change_the_output_and_mix_in_one_batch(engine: TransformersEngine) -> None:
    prompts = [chat_prompt(engine, text) for text in PROMPT_TEXTS[:3]]
    choices = [None, ADAPTER, OTHER_ADAPTER]
    alone = {(p, a): solo(engine, p, a) for p in prompts for a in choices}
    for p in prompts:
        assert len({alone[p, a].text for a in choices}) == 3, "each adapter answers differently"

    async def mixed() -> list[Result]:
        return await asyncio.gather(
            *(complete(engine, request(p, a)) for p in prompts for a in choices)
        )

    assert asyncio.run(mixed()) == [alone[p, a] for p in prompts for a in choices]


def test_32_concurrent_streams_all_complete(engine: TransformersEngine) -> None:
    prompts = [chat_prompt(engine, f"Question number {i}?") for i in range(32)]

    async def crowd() -> list[Result]:
        return await asyncio.gather(*(complete(engine, request(p, max_tokens=12)) for p in prompts))

    finished_before = engine.status().details["requests_finished_total"]
    results = asyncio.run(crowd())
    assert all(r.finish_reason in ("stop", "length") for r in results)
    assert all(r.completion_tokens == 12 for r in results if r.finish_reason == "length")
    assert engine.status().details["requests_finished_total"] == finished_before + 32
    assert engine.status().details["running_sequences"] == 0


def test_long_generations_that_outgrow_the_cache_buffers_still_match(
    engine: TransformersEngine,
) -> None:
    prompts = [chat_prompt(engine, text) for text in PROMPT_TEXTS[:3]]
    # Different lengths, so rows finish (and leave the batch) while others keep growing.
    lengths = [150, 90, 200]
    alone = [
        asyncio.run(complete(engine, request(p, max_tokens=n)))
        for p, n in zip(prompts, lengths, strict=True)
    ]

    async def together() -> list[Result]:
        return await asyncio.gather(
            *(
                complete(engine, request(p, max_tokens=n))
                for p, n in zip(prompts, lengths, strict=True)
            )
        )

    assert asyncio.run(together()) == alone
    assert [r.completion_tokens for r in alone if r.finish_reason == "length"] == [
        n for r, n in zip(alone, lengths, strict=True) if r.finish_reason == "length"
    ]


def test_a_batch_that_changes_between_one_and_several_adapters_keeps_every_output(
    engine: TransformersEngine,
) -> None:
    """A lone adapter request runs without peft's mixed-batch path; requests for other models
    joining and leaving switch the batch into it and back, without changing any output."""
    long_prompt, *short_prompts = (chat_prompt(engine, text) for text in PROMPT_TEXTS[:3])
    long_alone = asyncio.run(complete(engine, request(long_prompt, ADAPTER, max_tokens=60)))
    joiners = [(short_prompts[0], None), (short_prompts[1], OTHER_ADAPTER)]
    short_alone = [solo(engine, p, a) for p, a in joiners]

    async def staggered() -> tuple[Result, list[Result]]:
        stream = engine.generate(request(long_prompt, ADAPTER, max_tokens=60))
        first = await anext(stream)  # decoding alone, on its adapter
        joined = await asyncio.gather(*(complete(engine, request(p, a)) for p, a in joiners))
        rest = await collect(stream)  # alone again once the others finished
        long = Result(
            first.text + rest.text, rest.finish_reason, rest.completion_tokens, 1 + rest.chunks
        )
        return long, joined

    long, joined = asyncio.run(staggered())
    assert long == long_alone
    assert joined == short_alone

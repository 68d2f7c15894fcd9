"""Per-request sampling settings: length, stop strings, seeds, penalties."""

from __future__ import annotations

import asyncio

import torch

from inference_app.engine import TransformersEngine
from inference_app.engine.base import SamplingParams
from inference_app.engine.sampling import RowSampler, next_tokens
from tests.inference_app.engine.helpers import Result, chat_prompt, complete, request


def run(engine: TransformersEngine, text: str, **sampling: object) -> Result:
    return asyncio.run(complete(engine, request(chat_prompt(engine, text), **sampling)))  # type: ignore[arg-type]


def test_max_tokens_ends_with_length(engine: TransformersEngine) -> None:
    for max_tokens in (1, 5):
        result = run(engine, "Hello!", max_tokens=max_tokens)
        assert (result.finish_reason, result.completion_tokens) == ("length", max_tokens)
    assert run(engine, "Hello!", max_tokens=5).text.startswith(
        run(engine, "Hello!", max_tokens=1).text
    )


def test_a_stop_string_ends_the_text_before_it(engine: TransformersEngine) -> None:
    full = run(engine, "Hello!", max_tokens=30).text
    stop = full[10:13]
    expected = full[: full.index(stop)]
    result = run(engine, "Hello!", max_tokens=30, stop=(stop, "never appears"))
    assert (result.text, result.finish_reason) == (expected, "stop")


def test_a_seed_makes_sampling_reproducible(engine: TransformersEngine) -> None:
    def sample(seed: int) -> str:
        return run(engine, "Hello!", max_tokens=20, temperature=1.0, seed=seed).text

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)


def test_a_seeded_request_samples_the_same_inside_a_batch(engine: TransformersEngine) -> None:
    prompt = chat_prompt(engine, "Tell me a joke about computers.")
    alone = asyncio.run(complete(engine, request(prompt, temperature=0.9, top_p=0.9, seed=3)))

    async def beside_others() -> list[Result]:
        neighbours = [request(chat_prompt(engine, f"Noise {i}"), temperature=1.0) for i in range(4)]
        return await asyncio.gather(
            complete(engine, request(prompt, temperature=0.9, top_p=0.9, seed=3)),
            *(complete(engine, n) for n in neighbours),
        )

    assert asyncio.run(beside_others())[0] == alone


def test_penalties_push_away_from_tokens_already_generated() -> None:
    logits = torch.tensor([[0.0, 5.0, 4.0, 1.0]])
    plain = RowSampler(SamplingParams(max_tokens=4, temperature=0.0), 4, torch.device("cpu"))
    presence = RowSampler(
        SamplingParams(max_tokens=4, temperature=0.0, presence_penalty=2.0), 4, torch.device("cpu")
    )
    assert next_tokens(logits, [plain]) == next_tokens(logits, [presence]) == [1]
    assert next_tokens(logits, [plain]) == [1]
    assert next_tokens(logits, [presence]) == [2]  # token 1 was generated: 5 - 2 < 4


def test_frequency_penalty_grows_with_each_repetition() -> None:
    logits = torch.tensor([[0.0, 5.0, 4.2, 1.0]])
    sampler = RowSampler(
        SamplingParams(max_tokens=4, temperature=0.0, frequency_penalty=0.5), 4, torch.device("cpu")
    )
    # Token 1 costs 0.5 per time it was generated: 5.0, then 4.5 (still ahead of 4.2), then 4.0.
    assert [next_tokens(logits, [sampler])[0] for _ in range(3)] == [1, 1, 2]


def test_top_p_keeps_only_the_nucleus() -> None:
    logits = torch.tensor([[10.0, 9.0, 0.0, 0.0]])  # ~73% and ~27% on the first two tokens
    drawn = {
        token
        for seed in range(40)
        for token in next_tokens(
            logits,
            [
                RowSampler(
                    SamplingParams(max_tokens=1, temperature=1.0, top_p=0.5, seed=seed),
                    4,
                    torch.device("cpu"),
                )
            ],
        )
    }
    assert drawn == {0}

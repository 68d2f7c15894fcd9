"""Loading, readiness, model listing, prompts and input errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from inference_app.engine import TransformersEngine
from inference_app.engine.base import EngineError
from scripts.make_demo_model import DemoModel
from tests.inference_app.engine.helpers import (
    ADAPTER,
    OTHER_ADAPTER,
    chat_prompt,
    complete,
    request,
)


def test_status_is_not_ready_until_the_model_is_loaded(demo_model: DemoModel) -> None:
    engine = TransformersEngine(demo_model.base_dir, max_batch_size=2, max_queue=2)
    assert engine.status().ready is False
    assert engine.status().reason == "engine not started"
    with pytest.raises(EngineError, match="not started"):
        engine.generate(request("hi"))

    async def load() -> list[str]:
        loading = asyncio.create_task(engine.start())
        await asyncio.sleep(0)  # let start() reach its first await: the load in a thread
        seen = [engine.status().reason]
        await loading
        seen.append(engine.status().reason)
        await engine.shutdown()
        return seen

    during, after = asyncio.run(load())
    assert during.startswith("loading model from ")
    assert after == ""
    assert engine.status().ready is False
    assert engine.status().reason == "engine is shut down"


def test_a_model_that_cannot_be_loaded_reports_why(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    engine = TransformersEngine(tmp_path, max_batch_size=1, max_queue=1)
    with pytest.raises(OSError, match="not a valid JSON file"):
        asyncio.run(engine.start())
    status = engine.status()
    assert status.ready is False
    assert status.reason.startswith("engine failed: could not load the model: OSError: ")


def test_models_lists_the_base_model_and_every_adapter(engine: TransformersEngine) -> None:
    assert [(m.id, m.adapter) for m in engine.models()] == [
        ("aca-infer/tiny-phi3", None),
        (ADAPTER, ADAPTER),
        (OTHER_ADAPTER, OTHER_ADAPTER),
    ]
    assert engine.status().ready is True


def test_chat_prompt_holds_the_whole_conversation(engine: TransformersEngine) -> None:
    prompt = engine.render_chat(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "First question"},
            {"role": "assistant", "content": "First answer"},
            {"role": "user", "content": "Second question"},
        ]
    )
    positions = [prompt.index(s) for s in ("Be brief.", "First question", "First answer")]
    assert positions == sorted(positions)
    assert prompt.endswith("Second question<|end|>\n<|assistant|>\n")
    assert engine.context_window == 4096
    assert len(engine.tokenize(prompt)) > len(engine.tokenize("Second question"))


def test_bad_requests_are_refused_naming_the_field(engine: TransformersEngine) -> None:
    with pytest.raises(ValueError, match=r"^model: unknown adapter 'nope'"):
        engine.generate(request("hi", adapter="nope"))
    with pytest.raises(ValueError, match=r"^prompt: .* context window of 4096"):
        engine.generate(request("word " * 5000))
    with pytest.raises(ValueError, match=r"^top_p: "):
        engine.generate(request("hi", top_p=0.0))
    with pytest.raises(ValueError, match=r"^max_tokens: "):
        engine.generate(request("hi", max_tokens=0))


def test_a_failing_model_fails_its_requests_and_the_status(demo_model: DemoModel) -> None:
    engine = TransformersEngine(demo_model.base_dir, max_batch_size=2, max_queue=2)

    async def scenario() -> None:
        await engine.start()
        prompt = chat_prompt(engine, "Hello!")
        assert (await complete(engine, request(prompt, max_tokens=2))).completion_tokens == 2

        def broken_forward(*args: object, **kwargs: object) -> object:
            raise RuntimeError("device lost")

        # A model that starts failing (a lost GPU, say) is swapped in behind the engine's back.
        engine._loaded.scheduler._model = broken_forward  # type: ignore[union-attr]
        with pytest.raises(EngineError, match=r"^engine failed: RuntimeError: device lost"):
            await complete(engine, request(prompt))
        with pytest.raises(EngineError, match=r"^engine failed"):
            engine.generate(request(prompt))
        await engine.shutdown()

    asyncio.run(scenario())
    assert engine.status().ready is False

"""Token ids to text: whole characters only, and never a stop string."""

from __future__ import annotations

from typing import Any

import pytest
from transformers import AutoTokenizer

from inference_app.engine.text_stream import StopStringFilter, TextStream
from scripts.make_demo_model import DemoModel


@pytest.fixture(scope="module")
def tokenizer(demo_model: DemoModel) -> Any:
    return AutoTokenizer.from_pretrained(demo_model.base_dir, local_files_only=True)


def stream_text(tokenizer: Any, text: str, stop: tuple[str, ...] = ()) -> list[str]:
    prompt_ids = tokenizer("<|user|>\nHi<|end|>\n<|assistant|>\n")["input_ids"]
    stream = TextStream(tokenizer, prompt_ids, stop)
    deltas = [stream.push(i) for i in tokenizer(text)["input_ids"]]
    return [*deltas, stream.flush()]


def test_multi_byte_characters_come_out_whole(tokenizer: Any) -> None:
    text = "Grüße, 日本語 and emoji 🚀 done"
    deltas = stream_text(tokenizer, text)
    assert "".join(deltas) == text
    assert all("\ufffd" not in d for d in deltas)
    assert len(tokenizer(text)["input_ids"]) > len([d for d in deltas if d])


def test_stop_string_split_across_tokens_is_never_emitted(tokenizer: Any) -> None:
    deltas = stream_text(tokenizer, "The capital of France is Paris.", stop=("France is",))
    assert "".join(deltas) == "The capital of "


@pytest.mark.parametrize(
    ("pieces", "stop", "expected"),
    [
        (["ab", "cE", "ND", "x"], ("END",), ["ab", "c", "", ""]),
        (["ab", "cE", "x"], ("END",), ["ab", "c", "Ex"]),
        (["E", "E", "END"], ("END",), ["", "E", "E"]),
        (["hello"], (), ["hello"]),
    ],
)
def test_stop_filter_holds_back_only_possible_matches(
    pieces: list[str], stop: tuple[str, ...], expected: list[str]
) -> None:
    stop_filter = StopStringFilter(stop)
    assert [stop_filter.push(p) for p in pieces] == expected


class _SlowTokenizer:
    """The parts of a slow (pure Python) tokenizer that TextStream uses."""

    is_fast = False

    def __init__(self, fast: Any) -> None:
        self._fast = fast

    def decode(self, ids: list[int], skip_special_tokens: bool) -> str:
        text: str = self._fast.decode(ids, skip_special_tokens=skip_special_tokens)
        return text


def test_slow_tokenizers_stream_the_same_text(tokenizer: Any) -> None:
    text = "Grüße, 日本語 🚀 and the end"
    stream = TextStream(_SlowTokenizer(tokenizer), [], ("the end",))
    deltas = [stream.push(i) for i in tokenizer(text)["input_ids"]]
    assert "".join(deltas) == "Grüße, 日本語 🚀 and "
    assert all("\ufffd" not in d for d in deltas)

"""The demo model maker (provision/demo_model.py), through its function, the script wrapper
scripts/make_demo_model.py in a fresh process, and its one-line errors."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BatchEncoding,
    PreTrainedTokenizerBase,
)

from provision import demo_model as demo
from provision.demo_model import DemoModel, make_demo_model

REPO_ROOT = Path(__file__).resolve().parents[2]

CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
    {"role": "user", "content": "And of Italy?"},
]


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _hidden_entries(demo_model: DemoModel) -> list[Path]:
    parents = {demo_model.base_dir.parent, demo_model.adapter_dir.parent}
    return [entry for parent in parents for entry in parent.iterdir() if entry.name.startswith(".")]


@pytest.fixture(scope="module")
def tokenizer(demo_model: DemoModel) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(demo_model.base_dir)


def _greedy_reply(
    model: Any,
    tokenizer: PreTrainedTokenizerBase,
    messages: list[dict[str, str]] = CONVERSATION,
    max_new_tokens: int = 12,
) -> list[int]:
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    assert isinstance(inputs, BatchEncoding)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return [int(token) for token in output[0, inputs["input_ids"].shape[1] :]]


def _text(tokenizer: PreTrainedTokenizerBase, token_ids: list[int]) -> str:
    text = tokenizer.decode(token_ids, skip_special_tokens=True)
    assert isinstance(text, str)
    return text


def test_writes_the_ai_toolkit_share_layout(demo_model: DemoModel) -> None:
    share = demo_model.share_dir
    assert demo_model.base_dir == share / "model-cache/aca-infer/tiny-phi3"
    assert demo_model.adapter_dir == share / "models/qlora/qlora/gpu_model/adapter"
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    } <= {path.name for path in demo_model.base_dir.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {
        path.name for path in demo_model.adapter_dir.iterdir()
    }


def test_cli_in_a_fresh_process_writes_the_same_bytes(
    demo_model: DemoModel, tmp_path: Path
) -> None:
    # A separate process with its own hash seed catches output that depends on set ordering.
    env = {**os.environ, "PYTHONHASHSEED": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "scripts/make_demo_model.py", "--share-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert str(tmp_path / "model-cache/aca-infer/tiny-phi3") in result.stdout
    assert str(tmp_path / "models/qlora/qlora/gpu_model/adapter") in result.stdout
    assert "KiB" in result.stdout
    assert _tree_bytes(tmp_path) == _tree_bytes(demo_model.share_dir)


def test_model_and_tokenizer_carry_phi3_settings(
    demo_model: DemoModel, tokenizer: PreTrainedTokenizerBase
) -> None:
    config = json.loads((demo_model.base_dir / "config.json").read_text())
    generation = json.loads((demo_model.base_dir / "generation_config.json").read_text())
    vocab = tokenizer.get_vocab()

    assert config["model_type"] == "phi3"
    assert config["architectures"] == ["Phi3ForCausalLM"]
    assert config["max_position_embeddings"] == 4096
    assert config["vocab_size"] == len(tokenizer)
    assert 512 <= len(tokenizer) <= 1024
    assert tokenizer.eos_token == "<|end|>"
    assert tokenizer.pad_token is not None
    assert {vocab["<|end|>"], vocab["<|endoftext|>"]} <= set(generation["eos_token_id"])
    for token in demo.SPECIAL_TOKENS:
        assert vocab[token] in tokenizer.all_special_ids
        assert tokenizer.tokenize(f"a{token}b") == ["a", token, "b"]


def test_adapter_names_its_base_model(demo_model: DemoModel) -> None:
    config = json.loads((demo_model.adapter_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "aca-infer/tiny-phi3"
    assert config["peft_type"] == "LORA"
    assert config["r"] == 8
    assert config["target_modules"] == ["down_proj", "gate_up_proj", "o_proj", "qkv_proj"]


def test_chat_template_renders_every_turn_and_the_generation_prompt(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    prompt = tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    assert prompt == (
        "<|system|>\nYou are a helpful assistant.<|end|>\n"
        "<|user|>\nWhat is the capital of France?<|end|>\n"
        "<|assistant|>\nParis.<|end|>\n"
        "<|user|>\nAnd of Italy?<|end|>\n"
        "<|assistant|>\n"
    )
    closed = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert isinstance(closed, str)
    assert closed.endswith("<|user|>\nAnd of Italy?<|end|>\n<|end|>")


def test_chat_template_rejects_an_unknown_role(tokenizer: PreTrainedTokenizerBase) -> None:
    with pytest.raises(Exception, match="Unsupported role: tool"):
        tokenizer.apply_chat_template([{"role": "tool", "content": "42"}], tokenize=False)


def test_greedy_reply_shows_text_and_the_adapter_changes_it(
    demo_model: DemoModel, tokenizer: PreTrainedTokenizerBase
) -> None:
    base = AutoModelForCausalLM.from_pretrained(demo_model.base_dir).eval()
    generation = json.loads((demo_model.base_dir / "generation_config.json").read_text())
    stop_ids = set(generation["eos_token_id"])
    base_reply = _greedy_reply(base, tokenizer)
    before_stop = next(
        (base_reply[:i] for i, token in enumerate(base_reply) if token in stop_ids), base_reply
    )
    visible = _text(tokenizer, before_stop)
    assert visible.strip()
    assert "\ufffd" not in visible

    adapted = PeftModel.from_pretrained(base, demo_model.adapter_dir).eval()
    assert _greedy_reply(adapted, tokenizer) != base_reply


def test_sampling_at_temperature_one_stays_on_printable_tokens(
    demo_model: DemoModel, tokenizer: PreTrainedTokenizerBase
) -> None:
    """Servers sample from the full distribution (no top-k): the mass on tokens that do not
    decode to printable text must be negligible, or a demo chat shows stray bytes."""
    base = AutoModelForCausalLM.from_pretrained(demo_model.base_dir).eval()
    adapted = PeftModel.from_pretrained(base, demo_model.adapter_dir).eval()
    inputs = tokenizer.apply_chat_template(
        CONVERSATION, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    assert isinstance(inputs, BatchEncoding)
    texts = {token: _text(tokenizer, [token]) for token in range(len(tokenizer))}
    unprintable = [t for t, text in texts.items() if "\ufffd" in text or not text.isprintable()]
    with torch.no_grad():
        probs = torch.softmax(adapted(**inputs).logits[0, -1], dim=-1)
    assert float(probs[unprintable].sum()) < 0.01


def test_early_stop_message_gets_a_short_reply_that_ends_with_end(
    demo_model: DemoModel, tokenizer: PreTrainedTokenizerBase
) -> None:
    base = AutoModelForCausalLM.from_pretrained(demo_model.base_dir).eval()
    messages = [{"role": "user", "content": demo.EARLY_STOP_USER_MESSAGE}]

    reply = _greedy_reply(base, tokenizer, messages, max_new_tokens=32)

    assert reply[-1] == tokenizer.get_vocab()["<|end|>"]
    assert len(reply) < 32
    assert _text(tokenizer, reply[:-1]).strip()


def test_total_size_stays_small(demo_model: DemoModel) -> None:
    base_size = sum(len(body) for body in _tree_bytes(demo_model.base_dir).values())
    adapter_size = sum(len(body) for body in _tree_bytes(demo_model.adapter_dir).values())
    assert 100_000 < base_size < 2_000_000
    assert 10_000 < adapter_size < 200_000


def test_rerun_replaces_the_model_and_leaves_no_temp_dirs(tmp_path: Path) -> None:
    first = make_demo_model(tmp_path)
    expected = _tree_bytes(tmp_path)
    (first.base_dir / "stale.bin").write_bytes(b"left over from an older model")
    (first.adapter_dir / "adapter_config.json").write_text("{}")

    second = make_demo_model(tmp_path)

    assert second == first
    assert _tree_bytes(tmp_path) == expected
    assert _hidden_entries(second) == []


def test_leftovers_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    leftover = tmp_path / "model-cache/aca-infer/.tiny-phi3.tmp-killed"
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"half written")

    assert _hidden_entries(make_demo_model(tmp_path)) == []


def test_failed_run_keeps_the_previous_model_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first = make_demo_model(tmp_path)
    expected = _tree_bytes(tmp_path)

    def fail(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(demo, "save_tokenizer", fail)
    assert demo.main(["--share-dir", str(tmp_path)]) == 1

    assert _tree_bytes(tmp_path) == expected
    assert _hidden_entries(first) == []
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "No space left on device" in lines[0]


def test_files_are_readable_by_other_users(tmp_path: Path) -> None:
    # The replica may run as another user than the one who made the model.
    previous = os.umask(0o022)
    try:
        made = make_demo_model(tmp_path)
    finally:
        os.umask(previous)
    for path in [made.base_dir, made.adapter_dir, *made.base_dir.iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o004, path


def test_share_dir_that_is_a_file_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_dir = tmp_path / "share.txt"
    not_a_dir.write_text("")

    assert demo.main(["--share-dir", str(not_a_dir)]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert "--share-dir" in lines[0]
    assert "not a directory" in lines[0]


def test_missing_share_dir_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        demo.main([])

    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "--share-dir" in lines[0]

"""Write a tiny, deterministic Phi-3 model and a LoRA adapter into a share directory.

No model hub is reachable from development or CI machines, so everything that loads weights is
exercised on this model instead: a byte-level BPE tokenizer trained on the corpus below, a
two-layer `Phi3ForCausalLM` with seeded random weights, and a LoRA adapter with non-zero `lora_B`
so that the adapter visibly changes the output. The files follow the AI Toolkit share layout:

    <share>/model-cache/aca-infer/tiny-phi3/          base model + tokenizer
    <share>/models/qlora/qlora/gpu_model/adapter/     LoRA adapter

Every run writes the same bytes. Each directory is built next to its target and renamed into
place, so a half-written model never sits at the final path.

It ships in the wheel so that the local target works from an install too:
`aca-infer local demo-model` (or `python scripts/make_demo_model.py --share-dir DIR` in a
checkout). It needs the serving packages (the `serve` extra).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from provision.errors import AcaInferError, InputError, PrerequisiteError

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import Phi3ForCausalLM, PreTrainedTokenizerFast

BASE_MODEL_ID = "aca-infer/tiny-phi3"
BASE_MODEL_RELPATH = Path("model-cache") / BASE_MODEL_ID
ADAPTER_RELPATH = Path("models/qlora/qlora/gpu_model/adapter")

# The server sizes prompts against this, so it is a realistic Phi-3-mini value, not a tiny one.
CONTEXT_WINDOW = 4096
VOCAB_SIZE = 768
# Chosen so that greedy decoding of a chat prompt starts with visible text, not an end token
# (random weights give gibberish either way); tests/scripts/test_make_demo_model.py checks it.
MODEL_SEED = 2
ADAPTER_SEED = 1
# With these seeds, a conversation of this one user message gets a greedy base-model reply of a
# few visible tokens that ends with `<|end|>`: what tests of finish_reason "stop" need (most
# prompts run on to the token limit instead).
EARLY_STOP_USER_MESSAGE = "hi help"
# peft initialises lora_B to zero (a no-op adapter); this spread makes the adapter's effect on
# greedy output obvious without drowning the base weights (initializer_range 0.02).
LORA_B_STD = 0.05
LOGIT_SCALE = 25.0

UNK, BOS, EOS_TEXT = "<unk>", "<s>", "</s>"
END_OF_TEXT, SYSTEM, USER, ASSISTANT, END = (
    "<|endoftext|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
)
# Order fixes the ids: 0..7, ahead of the byte alphabet and the merges.
SPECIAL_TOKENS = (UNK, BOS, EOS_TEXT, END_OF_TEXT, SYSTEM, USER, ASSISTANT, END)

# Phi-3-mini-instruct's template: every turn is `<|role|>\n content <|end|>\n`; unknown roles
# fail loudly instead of being dropped silently.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] in ['system', 'user', 'assistant'] %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% else %}"
    "{{ raise_exception('Unsupported role: ' + message['role']"
    " + '; use system, user or assistant') }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

CORPUS = """\
Serving a language model means loading its weights once and answering many requests with them.
A replica reads the base model from a file share, applies a low-rank adapter, and listens for
HTTP requests. The readiness probe stays red until the weights are in memory, so no traffic
reaches a replica that cannot answer yet. When the queue is full the server says so and asks the
client to retry later, instead of letting every request time out.

A LoRA adapter adds two small matrices to each projection of the model. Fine-tuning changes only
those matrices, which is why the adapter is a few megabytes while the base model is gigabytes.
At inference time the adapter can be merged into the weights or kept separate, so that one base
model serves several adapters and each request picks the one it wants.

Container Apps scale the number of replicas with the number of concurrent requests. A serverless
GPU profile scales to zero when nobody is calling, and the first request after a quiet period
waits for a cold start: the container starts, the model loads, and the probe turns green. Tokens
are streamed back as they are generated, so a long answer never hits the ingress idle timeout.

The endpoint is protected by an API key. Send it in the Authorization header as a bearer token
or in the api-key header. There is a primary key and a secondary key, so one can be rotated while
the other keeps working. Errors come back as JSON with a message, a type, a parameter and a code.

Hello! How can I help you today? I am a small assistant running on a tiny model.
What is the capital of France? The capital of France is Paris.
Can you summarise this paragraph in one sentence? Sure, here is a short summary.
Please explain how the deployment works. First the files are uploaded to the share, then the
release is switched, then the replica restarts and loads the new model.
Thank you for your help! You are welcome. Is there anything else I can do for you?
Tell me a joke about computers. Why did the computer go to the doctor? It had a virus.
Write a haiku about the cloud. Quiet servers hum, tokens drift like falling snow, answers find
their way.
"""


@dataclass(frozen=True)
class DemoModel:
    """Where one run put the model; every path is absolute."""

    share_dir: Path
    base_dir: Path
    adapter_dir: Path


# What building the model imports; all of them come with the `serve` extra.
REQUIRED_MODULES = ("torch", "transformers", "peft", "tokenizers", "safetensors")


def make_demo_model(share_dir: Path) -> DemoModel:
    """Write the tiny base model and its adapter under `share_dir`, replacing earlier ones."""
    share_dir = _prepare_share_dir(Path(share_dir))
    base_dir = share_dir / BASE_MODEL_RELPATH
    adapter_dir = share_dir / ADAPTER_RELPATH

    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a one-shard bar is noise in this script's output
    tokenizer = build_tokenizer()
    model = build_base_model(tokenizer)
    # Nested so that the adapter lands first: the base model's config.json is the marker that
    # says "already built".
    with _atomic_dir(base_dir) as base_tmp:
        model.save_pretrained(str(base_tmp), safe_serialization=True)
        save_tokenizer(tokenizer, base_tmp)
        with _atomic_dir(adapter_dir) as adapter_tmp, warnings.catch_warnings():
            # peft calls a transformers API that 5.x deprecates; nothing the caller can act on.
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
            build_adapter(model).save_pretrained(
                str(adapter_tmp), safe_serialization=True, save_embedding_layers=False
            )
            _sort_target_modules(adapter_tmp / "adapter_config.json")
    return DemoModel(share_dir=share_dir, base_dir=base_dir, adapter_dir=adapter_dir)


def build_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=END,
        pad_token=END_OF_TEXT,
        additional_special_tokens=[EOS_TEXT, END_OF_TEXT, SYSTEM, USER, ASSISTANT],
        chat_template=CHAT_TEMPLATE,
        model_max_length=CONTEXT_WINDOW,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, directory: Path) -> None:
    """Save in the layout that transformers 4.x and 5.x both load (the replica may pin 4.x)."""
    tokenizer.save_pretrained(str(directory), save_jinja_files=False)
    # transformers 5 names its own backend class and a list-valued `extra_special_tokens`, which
    # 4.x cannot read; the 4.x names are still understood by 5.
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["additional_special_tokens"] = config.pop("extra_special_tokens", [])
    _write_json(config_path, config)
    special_keys = ("bos_token", "eos_token", "unk_token", "pad_token", "additional_special_tokens")
    _write_json(
        directory / "special_tokens_map.json",
        {key: config[key] for key in special_keys if key in config},
    )


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def build_base_model(tokenizer: PreTrainedTokenizerFast) -> Phi3ForCausalLM:
    import torch
    from transformers import GenerationConfig, Phi3Config, Phi3ForCausalLM

    vocab = tokenizer.get_vocab()
    stop_ids = [vocab[END], vocab[END_OF_TEXT]]
    config = Phi3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=CONTEXT_WINDOW,
        original_max_position_embeddings=CONTEXT_WINDOW,
        bos_token_id=vocab[BOS],
        eos_token_id=stop_ids[0],
        pad_token_id=vocab[END_OF_TEXT],
        architectures=["Phi3ForCausalLM"],
        dtype="float32",
    )
    torch.manual_seed(MODEL_SEED)
    model = Phi3ForCausalLM(config).eval()
    with torch.no_grad():
        # A zero output row pins a token's logit at 0, far below the maximum over the other
        # random logits: greedy output is then readable gibberish, not lone UTF-8 bytes or
        # stray role markers, and can still end with a stop token.
        # Random init gives logits of about 0.16 standard deviation: sampling at temperature 1
        # would then be close to uniform over the whole vocabulary, zeroed rows included.
        # Scaling the remaining rows gives peaked distributions, as a trained model has, and
        # keeps the greedy choice (argmax) unchanged.
        model.lm_head.weight.mul_(LOGIT_SCALE)
        model.lm_head.weight[_never_generated_ids(tokenizer, keep=stop_ids)] = 0.0
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=stop_ids,
        pad_token_id=config.pad_token_id,
    )
    # peft records this as the adapter's base_model_name_or_path; a hub-style id that matches
    # model-cache/<org>/<name> is what the AI Toolkit writes there.
    model.name_or_path = BASE_MODEL_ID
    return model


def _never_generated_ids(tokenizer: PreTrainedTokenizerFast, keep: Sequence[int]) -> list[int]:
    def printable(text: str) -> bool:
        return all(char != "\ufffd" and (char.isprintable() or char == "\n") for char in text)

    special = set(tokenizer.all_special_ids)
    return [
        token_id
        for token_id in range(len(tokenizer))
        if token_id not in keep
        and (token_id in special or not printable(tokenizer.backend_tokenizer.decode([token_id])))
    ]


def build_adapter(base: Phi3ForCausalLM) -> PeftModel:
    import torch
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        target_modules=["qkv_proj", "o_proj", "gate_up_proj", "down_proj"],
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(ADAPTER_SEED)
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if "lora_B" in name:
                param.normal_(mean=0.0, std=LORA_B_STD)
    return model


def _sort_target_modules(config_path: Path) -> None:
    # peft keeps target_modules as a set, so its saved order follows the per-process hash seed;
    # a fixed order keeps the file byte-identical across runs.
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["target_modules"] = sorted(config["target_modules"])
    _write_json(config_path, config)


def _prepare_share_dir(share_dir: Path) -> Path:
    if share_dir.exists() and not share_dir.is_dir():
        raise InputError(
            f"--share-dir: {share_dir} is not a directory; pass a directory path "
            "(it is created if missing)"
        )
    try:
        share_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(
            f"--share-dir: cannot create {share_dir} ({err.strerror}); pass a writable directory"
        ) from err
    if not os.access(share_dir, os.W_OK):
        raise InputError(f"--share-dir: {share_dir} is not writable; pass a writable directory")
    return share_dir.resolve()


@contextmanager
def _atomic_dir(target: Path) -> Iterator[Path]:
    """Yield an empty sibling of `target`; on success it replaces `target` in one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        _make_readable(tmp)
        if not target.exists():
            os.replace(tmp, target)
            return
        # A directory cannot be renamed over a non-empty one: move the old one aside first.
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / target.name)
        try:
            os.replace(tmp, target)
        except OSError:
            os.replace(old / target.name, target)
            raise
        shutil.rmtree(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove_leftovers(target: Path) -> None:
    # A run killed mid-write leaves its hidden temporary siblings behind; they are never read.
    for pattern in (f".{target.name}.tmp-*", f".{target.name}.old-*"):
        for leftover in target.parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


def _make_readable(tree: Path) -> None:
    # mkdtemp and safetensors create owner-only files; the replica may read the share as
    # another user, so give the tree the modes a plain copy would have had.
    umask = os.umask(0)
    os.umask(umask)
    for path in [tree, *tree.rglob("*")]:
        path.chmod((0o755 if path.is_dir() else 0o644) & ~umask)


def _dir_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def write_demo_model(share_dir: Path) -> DemoModel:
    """`make_demo_model` for a command line: a missing package or a failed write is one line."""
    missing = [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise PrerequisiteError(
            f"the demo model needs {', '.join(missing)} (the serving packages): "
            "pip install 'aca-infer[serve]' (with pipx: pipx install 'aca-infer[serve]')"
        )
    try:
        return make_demo_model(share_dir)
    except OSError as err:
        # Disk full, permissions inside the share: the previous model, if any, is untouched.
        raise AcaInferError(f"writing the demo model under {share_dir} failed: {err}") from err


def summary_lines(demo: DemoModel) -> list[str]:
    lines = []
    for label, path in (("base model", demo.base_dir), ("adapter", demo.adapter_dir)):
        count, size = _dir_size(path)
        lines.append(f"wrote {label}: {path} ({count} files, {size / 1024:.0f} KiB)")
    return lines


class _OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message}; see --help\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _OneLineErrorParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--share-dir",
        type=Path,
        required=True,
        help="share root to write into (e.g. .aca-infer/local/share); created if missing",
    )
    args = parser.parse_args(argv)
    try:
        demo = write_demo_model(args.share_dir)
    except AcaInferError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print("\n".join(summary_lines(demo)))
    return 0

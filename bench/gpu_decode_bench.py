"""Decode tokens/s of our engine on a GPU against `transformers`' `generate`, and the memory
bandwidth bound for batch 1, on a Phi-3-mini-shaped model with random weights made here.

* ours: `TransformersEngine` (the server's engine: continuous batching, dtype and placement from
  the device) serving 1 and 16 concurrent greedy streams of `--max-tokens` tokens each;
* baseline: `model.generate` on the same GPU and dtype, batch 1, and one padded batch of 16.

Rates are completion tokens over wall time, after one warm-up round. The bound: at batch 1 every
decoded token reads every weight once, so tokens/s <= GPU memory bandwidth / model bytes.

Usage: python bench/gpu_decode_bench.py [--max-tokens 128] [--bandwidth-gbs N]
                                        [--results bench/RESULTS.md]
       python bench/gpu_decode_bench.py --tiny --max-tokens 4   # CPU smoke run of the same code
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

# The imports below need the repo root on sys.path.
from inference_app.engine import TransformersEngine  # noqa: E402
from inference_app.engine.base import GenerationRequest, SamplingParams  # noqa: E402
from inference_app.engine.device import Hardware, dtype_for  # noqa: E402

SECTION_BEGIN = "<!-- gpu-decode-bench:begin -->"
SECTION_END = "<!-- gpu-decode-bench:end -->"
# Peak memory bandwidth (GB/s) by device name, from the vendors' data sheets.
BANDWIDTH_GBS = {
    "A100-SXM4-80GB": 2039.0,
    "A100 80GB PCIe": 1935.0,
    "A100-SXM4-40GB": 1555.0,
    "A100-PCIE-40GB": 1555.0,
    "H100 80GB HBM3": 3350.0,
    "H100 PCIe": 2000.0,
    "H200": 4800.0,
    "Tesla T4": 320.0,
}


@dataclass(frozen=True)
class Shape:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int


PHI3_MINI = Shape(32064, 3072, 8192, 32, 32)  # microsoft/Phi-3-mini-4k-instruct: 3.8 B
TINY = Shape(512, 64, 128, 2, 4)


@dataclass(frozen=True)
class Rates:
    ours_1: float
    ours_16: float
    generate_1: float
    generate_16: float
    model_bytes: int
    shape: str
    bound_1: float | None  # tokens/s; None when the bandwidth is unknown
    device: str
    dtype: str


def make_model(folder: Path, shape: Shape, device: str, dtype: torch.dtype) -> Path:
    """A random Phi-3 with a word-level tokenizer covering its whole vocabulary."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import Phi3Config, Phi3ForCausalLM, PreTrainedTokenizerFast

    vocab = {f"w{i}": i for i in range(shape.vocab_size)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="w0"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    eos = f"w{shape.vocab_size - 1}"
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=eos, pad_token="w0")
    config = Phi3Config(
        vocab_size=shape.vocab_size,
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_hidden_layers,
        num_attention_heads=shape.num_attention_heads,
        num_key_value_heads=shape.num_attention_heads,
        max_position_embeddings=4096,
        eos_token_id=shape.vocab_size - 1,
        pad_token_id=0,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build in the serving dtype: no 4-byte copy of 3.8 B weights
    try:
        with torch.device(device):
            model = Phi3ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def _prompt(index: int) -> str:
    return " ".join(f"w{(index * 7 + k) % 400 + 1}" for k in range(32))


async def _engine_rate(engine: TransformersEngine, streams: int, max_tokens: int) -> float:
    async def one(index: int) -> int:
        params = SamplingParams(max_tokens=max_tokens, temperature=0.0)
        request = GenerationRequest(f"bench-{index}", _prompt(index), params)
        tokens = 0
        async for chunk in engine.generate(request):
            tokens = chunk.completion_tokens
        return tokens

    started = time.perf_counter()
    tokens = sum(await asyncio.gather(*(one(i) for i in range(streams))))
    return tokens / (time.perf_counter() - started)


def ours(folder: Path, max_tokens: int) -> tuple[float, float]:
    async def measure() -> tuple[float, float]:
        engine = TransformersEngine(folder, max_batch_size=16, max_queue=64)
        await engine.start()
        try:
            await _engine_rate(engine, 1, max_tokens)  # warm-up: kernels, allocator
            one = await _engine_rate(engine, 1, max_tokens)
            await _engine_rate(engine, 16, max_tokens)
            sixteen = await _engine_rate(engine, 16, max_tokens)
        finally:
            await engine.shutdown()
        return one, sixteen

    return asyncio.run(measure())


def _synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def generate_rates(
    folder: Path, device: str, dtype: torch.dtype, max_tokens: int
) -> tuple[float, float, int]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    model: Any = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    model.to(device).eval()
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    def rate(batch: int) -> float:
        inputs = tokenizer([_prompt(i) for i in range(batch)], return_tensors="pt", padding=True)
        inputs = inputs.to(device)
        _synchronize(device)
        started = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=max_tokens,
                min_new_tokens=max_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        _synchronize(device)
        generated = (output.shape[1] - inputs["input_ids"].shape[1]) * batch
        return generated / (time.perf_counter() - started)

    rate(1)  # warm-up
    return rate(1), rate(16), model_bytes


def bandwidth_for(hardware: Hardware, given: float | None) -> float | None:
    if given is not None:
        return given
    if not hardware.gpus:
        return None
    name = hardware.gpus[0].name
    return next((gbs for key, gbs in BANDWIDTH_GBS.items() if key in name), None)


def measure(shape: Shape, max_tokens: int, bandwidth_gbs: float | None) -> Rates:
    hardware = Hardware.detect()
    device = "cuda:0" if hardware.gpus else "cpu"
    dtype_name = dtype_for(hardware)
    dtype = getattr(torch, dtype_name)
    with tempfile.TemporaryDirectory(prefix="gpu-decode-bench-") as work:
        folder = make_model(Path(work) / "phi3-shaped", shape, device, dtype)
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        ours_1, ours_16 = ours(folder, max_tokens)
        gc.collect()
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        generate_1, generate_16, model_bytes = generate_rates(folder, device, dtype, max_tokens)
    bandwidth = bandwidth_for(hardware, bandwidth_gbs)
    bound = bandwidth * 1e9 / model_bytes if bandwidth else None
    return Rates(
        ours_1,
        ours_16,
        generate_1,
        generate_16,
        model_bytes,
        "Phi-3-mini-shaped" if shape == PHI3_MINI else "tiny Phi-3-shaped (smoke run)",
        bound,
        hardware.describe(),
        dtype_name,
    )


def render(rates: Rates, max_tokens: int, command: str) -> str:
    bound = f"{rates.bound_1:.0f} tok/s" if rates.bound_1 else "unknown (give --bandwidth-gbs)"
    share = f" ({rates.ours_1 / rates.bound_1:.0%} of it)" if rates.bound_1 else ""
    return "\n".join(
        [
            SECTION_BEGIN,
            "# GPU decode",
            "",
            f"{rates.shape} model with random weights ({rates.model_bytes / 1e9:.2f} GB in "
            f"{rates.dtype}) on {rates.device}; greedy, {max_tokens} tokens per stream.",
            "",
            "| streams | ours tok/s | `generate` tok/s |",
            "|---:|---:|---:|",
            f"| 1 | {rates.ours_1:.1f} | {rates.generate_1:.1f} (batch 1) |",
            f"| 16 | {rates.ours_16:.1f} | {rates.generate_16:.1f} (one padded batch of 16) |",
            "",
            f"- Memory-bandwidth bound at batch 1 (bandwidth / model bytes): {bound}; ours at "
            f"1 stream: {rates.ours_1:.1f} tok/s{share}.",
            f"- Command: `{command}`",
            SECTION_END,
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Decode tokens/s on a GPU, ours vs generate.")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--tiny", action="store_true", help="a tiny shape: a CPU smoke run")
    parser.add_argument("--bandwidth-gbs", type=float, help="GPU memory bandwidth, GB/s")
    parser.add_argument("--results", type=Path, help="replace or append the section here")
    args = parser.parse_args(argv)
    rates = measure(TINY if args.tiny else PHI3_MINI, args.max_tokens, args.bandwidth_gbs)
    command = "python bench/gpu_decode_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    section = render(rates, args.max_tokens, command.strip())
    if args.results:
        from bench.cold_start_bench import write_section

        write_section(args.results, section + "\n", SECTION_BEGIN, SECTION_END)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())

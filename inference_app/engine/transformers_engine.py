"""The in-process engine: a transformers model, its LoRA adapters, and a batching scheduler.

Everything model-related lives here (loading, chat template, tokenizer); the batching itself is in
`scheduler.py`. The constructor only takes arguments: the HTTP layer builds it from its settings.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from inference_app.engine import loading
from inference_app.engine.adapter_routing import BASE_ADAPTER
from inference_app.engine.base import (
    EngineError,
    EngineStatus,
    GenerationChunk,
    GenerationRequest,
    ModelInfo,
    SamplingParams,
)
from inference_app.engine.device import Hardware, LoadPlan, plan_load
from inference_app.engine.result_stream import ResultStream
from inference_app.engine.sampling import RowSampler
from inference_app.engine.scheduler import (
    ActiveRequest,
    BatchScheduler,
    SchedulerLimits,
)
from inference_app.engine.text_stream import TextStream

log = logging.getLogger(__name__)

# The AI Toolkit keeps base models at <share>/model-cache/<org>/<name>.
_MODEL_CACHE_DIR = "model-cache"


@dataclass(frozen=True)
class _Loaded:
    tokenizer: Any
    scheduler: BatchScheduler
    context_window: int
    vocab_size: int


def model_id_for(model_path: Path) -> str:
    """`<org>/<name>` for a base model under model-cache/, else the folder name."""
    if model_path.parent.parent.name == _MODEL_CACHE_DIR:
        return f"{model_path.parent.name}/{model_path.name}"
    return model_path.name


def _check_sampling(sampling: SamplingParams) -> None:
    if sampling.max_tokens < 1:
        raise ValueError(f"max_tokens: {sampling.max_tokens} is not allowed; use 1 or more")
    if sampling.temperature < 0:
        raise ValueError(f"temperature: {sampling.temperature} is negative; use 0 (greedy) or more")
    if not 0 < sampling.top_p <= 1:
        raise ValueError(f"top_p: {sampling.top_p} is out of range; use a value in (0, 1]")


class TransformersEngine:
    def __init__(
        self,
        model_path: Path,
        adapters: Mapping[str, Path] | None = None,
        *,
        max_batch_size: int = 16,
        max_queue: int = 128,
        max_prefill_tokens: int = 8192,
        hardware: Hardware | None = None,
        quantization: str = "none",
        cache_dir: Path | None = None,
        model_id: str | None = None,
    ) -> None:
        """`hardware` None: the GPUs torch sees. `cache_dir`: local disk for the copy of a model
        on a network mount (None: always read it where it is)."""
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size: {max_batch_size} is not allowed; use 1 or more")
        if max_queue < 0:
            raise ValueError(f"max_queue: {max_queue} is negative; use 0 or more")
        self._model_path = Path(model_path)
        self._adapters = {name: Path(path) for name, path in (adapters or {}).items()}
        self._model_id = model_id or model_id_for(self._model_path)
        for name in self._adapters:
            if name in (BASE_ADAPTER, self._model_id) or not name:
                raise ValueError(
                    f"adapters: the name {name!r} is reserved or empty; "
                    "give the adapter another name"
                )
        self._limits = SchedulerLimits(
            max_batch_size=max_batch_size,
            max_queue=max_queue,
            max_prefill_tokens=max_prefill_tokens,
        )
        self._hardware = hardware if hardware is not None else Hardware.detect()
        self._plan: LoadPlan = plan_load(
            self._hardware, quantization, loading.weights_bytes(self._model_path)
        )
        self._device = torch.device(self._plan.device)
        self._cache_dir = cache_dir
        self._loaded: _Loaded | None = None
        self._state = "engine not started"

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the model and adapters in a worker thread. A failure is kept for `status()` (not
        ready, "engine failed: ...") and raised."""
        self._state = f"loading model from {self._model_path}"
        try:
            self._loaded = await asyncio.to_thread(self._load)
        except Exception as err:
            self._state = f"engine failed: could not load the model: {type(err).__name__}: {err}"
            raise
        self._loaded.scheduler.start()
        self._state = "ready"
        log.info("engine ready: %s with adapters %s", self._model_id, sorted(self._adapters))

    async def shutdown(self) -> None:
        if self._loaded is not None:
            await asyncio.to_thread(self._loaded.scheduler.stop)
        self._state = "engine is shut down"

    def _load(self) -> _Loaded:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self._model_path, local_files_only=True)
        model, report = loading.load_model(
            self._model_path, self._plan, self._cache_dir, self._show_progress
        )
        plan = self._plan
        log.info(
            "model loaded in %.1f s on %s: dtype %s, quantization %s, %s%s",
            report.total_seconds,
            self._hardware.describe(),
            plan.dtype,
            plan.quantization,
            plan.placement,
            f"; copied {report.copied_bytes / 2**30:.2f} GiB to local disk in "
            f"{report.copy_seconds:.1f} s"
            if report.copied_bytes
            else "",
        )
        for warning in plan.warnings:
            log.warning("model placement: %s", warning)
        config = model.config.get_text_config(decoder=True)
        context_window = int(
            getattr(config, "max_position_embeddings", None) or tokenizer.model_max_length
        )
        stop_ids = self._stop_token_ids(model, tokenizer)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(stop_ids)
        if self._adapters:
            model = self._with_adapters(model)
        scheduler = BatchScheduler(
            model,
            limits=self._limits,
            stop_token_ids=stop_ids,
            pad_token_id=int(pad_id),
            mixed_adapters=bool(self._adapters),
            device=self._device,
        )
        return _Loaded(tokenizer, scheduler, context_window, int(config.vocab_size))

    def _show_progress(self, text: str) -> None:
        self._state = f"loading model from {self._model_path}: {text}"

    def _with_adapters(self, model: Any) -> Any:
        from peft import PeftModel

        (first_name, first_path), *others = self._adapters.items()
        peft_model = PeftModel.from_pretrained(
            model, first_path, adapter_name=first_name, is_trainable=False
        )
        for name, path in others:
            peft_model.load_adapter(path, adapter_name=name, is_trainable=False)
        return peft_model.eval()

    @staticmethod
    def _stop_token_ids(model: Any, tokenizer: Any) -> set[int]:
        ids: set[int] = set()
        configured = getattr(model.generation_config, "eos_token_id", None)
        if isinstance(configured, int):
            ids.add(configured)
        elif configured:
            ids.update(int(i) for i in configured)
        if tokenizer.eos_token_id is not None:
            ids.add(int(tokenizer.eos_token_id))
        if not ids:
            raise ValueError("model: neither the generation config nor the tokenizer names an eos")
        return ids

    # -- what the HTTP layer reads --------------------------------------------------------------

    def status(self) -> EngineStatus:
        details: dict[str, float] = {
            "max_batch_size": float(self._limits.max_batch_size),
            "max_queue": float(self._limits.max_queue),
        }
        if self._loaded is None:
            return EngineStatus(ready=False, reason=self._state, details=details)
        scheduler = self._loaded.scheduler
        details.update(scheduler.stats.details(scheduler.queue_depth, scheduler.running))
        reason = scheduler.failure or ("" if self._state == "ready" else self._state)
        return EngineStatus(ready=not reason, reason=reason, details=details)

    def models(self) -> Sequence[ModelInfo]:
        return [
            ModelInfo(id=self._model_id, adapter=None),
            *(ModelInfo(id=name, adapter=name) for name in self._adapters),
        ]

    @property
    def context_window(self) -> int:
        return self._require_loaded().context_window

    def render_chat(self, messages: Sequence[dict[str, str]]) -> str:
        from jinja2 import TemplateError

        tokenizer = self._require_loaded().tokenizer
        try:
            rendered: str = tokenizer.apply_chat_template(
                list(messages), tokenize=False, add_generation_prompt=True
            )
        except TemplateError as err:
            raise ValueError(f"messages: the chat template rejected them: {err}") from err
        return rendered

    def tokenize(self, text: str) -> list[int]:
        return self._encode(self._require_loaded().tokenizer, text)

    def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        loaded = self._require_loaded()
        _check_sampling(request.sampling)
        if request.adapter is not None and request.adapter not in self._adapters:
            known = ", ".join(sorted(self._adapters)) or "none loaded"
            raise ValueError(f"model: unknown adapter {request.adapter!r} (adapters: {known})")
        prompt_ids = list(request.prompt_token_ids) or self._encode(
            loaded.tokenizer, request.prompt
        )
        room = loaded.context_window - len(prompt_ids)
        if not prompt_ids:
            raise ValueError("prompt: it is empty; send at least one token of text")
        if room < 1:
            raise ValueError(
                f"prompt: {len(prompt_ids)} tokens leave no room in the context window of "
                f"{loaded.context_window}; shorten the prompt"
            )
        stream = ResultStream(asyncio.get_running_loop())
        active = ActiveRequest(
            request=request,
            prompt_ids=prompt_ids,
            max_new_tokens=min(request.sampling.max_tokens, room),
            stream=stream,
            sampler=RowSampler(request.sampling, loaded.vocab_size, self._device),
            text=TextStream(loaded.tokenizer, prompt_ids, request.sampling.stop),
        )
        stream.on_abandon(functools.partial(loaded.scheduler.cancel, active))
        loaded.scheduler.submit(active)
        return stream

    # -- helpers --------------------------------------------------------------------------------

    def _require_loaded(self) -> _Loaded:
        if self._loaded is None:
            raise EngineError(self._state)
        failure = self._loaded.scheduler.failure
        if failure is not None:
            raise EngineError(failure)
        return self._loaded

    @staticmethod
    def _encode(tokenizer: Any, text: str) -> list[int]:
        # A rendered chat prompt usually starts with the template's own BOS; adding another
        # would shift the model's input away from what it was trained on.
        bos = tokenizer.bos_token
        add_special = not (bos and text.startswith(bos))
        ids: list[int] = tokenizer(text, add_special_tokens=add_special)["input_ids"]
        return ids

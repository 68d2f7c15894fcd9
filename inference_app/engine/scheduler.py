"""Continuous batching: one thread runs the model for every active request at once.

Between two decode steps the scheduler drops sequences that finished or whose client went away,
then admits waiting requests: their prompts run through one prefill forward pass and their caches
join the running batch. Each decode step is a single forward pass over all running sequences
(one new token each), so N concurrent clients cost about one client's worth of forward passes.

With adapters loaded, requests for different adapters share a step and get the output they
would alone: `AdapterRouter` switches the model when every row wants the same one, and names
each row's adapter (peft's mixed-batch `adapter_names`) only when they differ.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import DynamicCache

from inference_app.engine.adapter_routing import AdapterRouter
from inference_app.engine.base import (
    EngineError,
    EngineOverloadedError,
    FinishReason,
    GenerationChunk,
    GenerationRequest,
)
from inference_app.engine.padded_batch import PaddedBatch, new_cache
from inference_app.engine.result_stream import Outbox, ResultStream
from inference_app.engine.sampling import RowSampler, next_tokens
from inference_app.engine.stats import EngineStats
from inference_app.engine.text_stream import TextStream

log = logging.getLogger(__name__)


@dataclass(eq=False)
class ActiveRequest:
    """One request inside the engine, from submission until its last chunk."""

    request: GenerationRequest
    prompt_ids: list[int]
    max_new_tokens: int
    stream: ResultStream
    sampler: RowSampler
    text: TextStream
    submitted_at: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    done: bool = False
    completion_tokens: int = 0
    last_token: int = -1
    length: int = 0  # real (non-padding) tokens in the KV cache

    def chunk(self, text: str, finish_reason: FinishReason | None = None) -> GenerationChunk:
        return GenerationChunk(
            text=text,
            prompt_tokens=len(self.prompt_ids),
            completion_tokens=self.completion_tokens,
            finish_reason=finish_reason,
        )


@dataclass(frozen=True)
class SchedulerLimits:
    max_batch_size: int
    max_queue: int
    # Admission stops when the padded prefill would exceed this many tokens (one request is
    # always admitted), so a burst of long prompts cannot stall the running batch for long.
    max_prefill_tokens: int = 8192


class BatchScheduler:
    def __init__(
        self,
        model: Any,
        *,
        limits: SchedulerLimits,
        stop_token_ids: Collection[int],
        pad_token_id: int,
        mixed_adapters: bool,
        device: torch.device,
    ) -> None:
        self._model = model
        self._limits = limits
        self._stop_token_ids = frozenset(stop_token_ids)
        self._pad_token_id = pad_token_id
        self._adapters = AdapterRouter(model) if mixed_adapters else None
        self._device = device
        self.stats = EngineStats()
        self._waiting: deque[ActiveRequest] = deque()
        self._running: list[ActiveRequest] = []
        self._batch: PaddedBatch | None = None
        self._outbox = Outbox()
        self._wakeup = threading.Condition()
        self._stopping = False
        self.failure: str | None = None
        self._thread = threading.Thread(target=self._run, name="engine-scheduler", daemon=True)

    # -- called from the event loop -------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
        self._thread.join()
        self._fail_all(EngineError("engine is shut down"))

    def submit(self, seq: ActiveRequest) -> None:
        with self._wakeup:
            if self.failure is not None:
                raise EngineError(self.failure)
            if self._stopping:
                raise EngineError("engine is shut down")
            # The queue holds what the batch cannot take yet: a request that a free batch slot
            # will admit at the next step does not count against it.
            capacity = self._limits.max_batch_size + self._limits.max_queue
            if len(self._waiting) + self.running >= capacity:
                self.stats.requests_rejected += 1
                raise EngineOverloadedError(self._retry_after())
            self._waiting.append(seq)
            self._wakeup.notify()

    def cancel(self, seq: ActiveRequest) -> None:
        """The reader went away: forget a queued request now, a running one before the next
        step."""
        with self._wakeup:
            if seq.done or seq.cancelled:
                return
            seq.cancelled = True
            self.stats.requests_cancelled += 1
            if seq in self._waiting:
                self._waiting.remove(seq)

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    @property
    def running(self) -> int:
        return sum(1 for s in self._running if not (s.done or s.cancelled))

    def _retry_after(self) -> float:
        # Roughly when a slot frees up: the queue drains one batch per mean request duration.
        batches_ahead = 1 + len(self._waiting) // self._limits.max_batch_size
        return max(1.0, batches_ahead * self.stats.mean_request_seconds)

    # -- the scheduler thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            with torch.inference_mode():
                while self._next_work():
                    admitted = self._admit()
                    if admitted:
                        self._prefill(admitted)
                        self._drop_finished()  # a first token can already end a request
                    if self._running:
                        self._decode()
        except Exception as err:
            log.exception("engine scheduler failed")
            self.failure = f"engine failed: {type(err).__name__}: {err}"
            self._fail_all(EngineError(self.failure))

    def _next_work(self) -> bool:
        """Drop finished rows, then wait until there is something to do; False to stop."""
        self._drop_finished()
        with self._wakeup:
            while not self._stopping and not self._waiting and not self._running:
                self._wakeup.wait()
            return not self._stopping

    def _admit(self) -> list[ActiveRequest]:
        admitted: list[ActiveRequest] = []
        free_slots = self._limits.max_batch_size - len(self._running)
        widest = 0
        with self._wakeup:
            while self._waiting and len(admitted) < free_slots:
                seq = self._waiting[0]
                width = max(widest, len(seq.prompt_ids))
                if admitted and width * (len(admitted) + 1) > self._limits.max_prefill_tokens:
                    break
                widest = width
                admitted.append(self._waiting.popleft())
            # Running from here on (their rows join the batch in this order after the prefill):
            # they keep counting against the queue bound, and a failing forward pass fails them.
            self._running.extend(admitted)
        self.stats.requests_admitted += len(admitted)
        self.stats.prompt_tokens += sum(len(s.prompt_ids) for s in admitted)
        return admitted

    def _prefill(self, seqs: list[ActiveRequest]) -> None:
        width = max(len(s.prompt_ids) for s in seqs)
        ids = torch.full((len(seqs), width), self._pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            n = len(seq.prompt_ids)
            ids[row, width - n :] = torch.tensor(seq.prompt_ids, dtype=torch.long)
            mask[row, width - n :] = 1
            seq.length = n
        ids, mask = ids.to(self._device), mask.to(self._device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = new_cache()
        logits = self._forward(seqs, ids, mask, positions, cache)
        self.stats.prefill_steps += 1
        batch = PaddedBatch(cache, mask)
        if self._batch is None:
            self._batch = batch
        else:
            self._batch.extend(batch)
        tokens = next_tokens(logits, [s.sampler for s in seqs])
        now = time.monotonic()
        for seq in seqs:
            self.stats.record_first_token(now - seq.submitted_at)
        self._advance(seqs, tokens)

    def _decode(self) -> None:
        assert self._batch is not None  # there are running rows
        seqs = self._running
        ids = torch.tensor([[s.last_token] for s in seqs], dtype=torch.long, device=self._device)
        positions = torch.tensor([[s.length] for s in seqs], dtype=torch.long, device=self._device)
        mask = self._batch.mask_with_new_column()
        logits = self._forward(seqs, ids, mask, positions, self._batch.cache)
        for seq in seqs:
            seq.length += 1
        self.stats.decode_steps += 1
        self._advance(seqs, next_tokens(logits, [s.sampler for s in seqs]))

    def _forward(
        self,
        seqs: Sequence[ActiveRequest],
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: DynamicCache,
    ) -> torch.Tensor:
        extra: dict[str, Any] = {}
        if self._adapters is not None:
            extra = self._adapters.forward_kwargs([s.request.adapter for s in seqs])
        out = self._model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
            **extra,
        )
        logits: torch.Tensor = out.logits[:, -1, :]
        return logits

    def _advance(self, seqs: Sequence[ActiveRequest], tokens: Sequence[int]) -> None:
        """Record each row's new token, stream its text, and finish rows that are done."""
        for seq, token in zip(seqs, tokens, strict=True):
            seq.completion_tokens += 1
            if token in self._stop_token_ids:
                self._finish(seq, seq.text.flush(), "stop")
                continue
            delta = seq.text.push(token)
            if seq.text.stopped:
                self._finish(seq, delta, "stop")
            elif seq.completion_tokens >= seq.max_new_tokens:
                self._finish(seq, delta + seq.text.flush(), "length")
            else:
                seq.last_token = token
                if delta and not seq.cancelled:
                    self._outbox.add(seq.stream, seq.chunk(delta))
        self.stats.record_step(len(seqs))
        self._outbox.flush()

    def _finish(self, seq: ActiveRequest, text: str, reason: FinishReason) -> None:
        with self._wakeup:  # a request ends once: finished or cancelled, not both
            if seq.cancelled:
                return
            seq.done = True
        self.stats.record_finished(time.monotonic() - seq.submitted_at)
        self._outbox.add(seq.stream, seq.chunk(text, reason))

    def _drop_finished(self) -> None:
        keep = [row for row, s in enumerate(self._running) if not (s.done or s.cancelled)]
        if len(keep) == len(self._running):
            return
        if keep:
            assert self._batch is not None
            self._batch.keep(keep)
            self._running = [self._running[row] for row in keep]
        else:
            self._batch = None
            self._running = []

    def _fail_all(self, error: EngineError) -> None:
        with self._wakeup:
            victims = [*self._running, *self._waiting]
            self._waiting.clear()
        self._running, self._batch = [], None
        for seq in victims:
            if not (seq.done or seq.cancelled):
                self.stats.requests_failed += 1
                self._outbox.add(seq.stream, error)
        self._outbox.flush()

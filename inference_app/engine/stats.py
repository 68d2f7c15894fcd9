"""Counters the scheduler keeps for `/metrics`, exported through `EngineStatus.details`.

Only the scheduler thread writes most of them; readers on the event loop may see a value one step
old, which is fine for monitoring and avoids a lock on the hot path.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

# Throughput is measured over this recent window, so it falls to zero when the engine is idle.
_RATE_WINDOW_SECONDS = 10.0
# Weight of the newest request in the running mean of request durations (for Retry-After).
_DURATION_SMOOTHING = 0.2


@dataclass
class EngineStats:
    requests_admitted: int = 0
    requests_finished: int = 0
    requests_cancelled: int = 0
    requests_rejected: int = 0
    requests_failed: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    time_to_first_token_sum: float = 0.0
    time_to_first_token_count: int = 0
    prefill_steps: int = 0
    decode_steps: int = 0
    mean_request_seconds: float = 0.0
    _recent: deque[tuple[float, int]] = field(default_factory=deque)

    def record_step(self, new_tokens: int) -> None:
        self.generation_tokens += new_tokens
        now = time.monotonic()
        self._recent.append((now, self.generation_tokens))
        while self._recent and now - self._recent[0][0] > _RATE_WINDOW_SECONDS:
            self._recent.popleft()

    def record_first_token(self, seconds: float) -> None:
        self.time_to_first_token_sum += seconds
        self.time_to_first_token_count += 1

    def record_finished(self, seconds: float) -> None:
        self.requests_finished += 1
        if self.requests_finished == 1:
            self.mean_request_seconds = seconds
        else:
            self.mean_request_seconds += _DURATION_SMOOTHING * (seconds - self.mean_request_seconds)

    def tokens_per_second(self) -> float:
        recent = list(self._recent)
        if len(recent) < 2 or time.monotonic() - recent[-1][0] > _RATE_WINDOW_SECONDS:
            return 0.0
        (t0, n0), (t1, n1) = recent[0], recent[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def details(self, queue_depth: int, running: int) -> dict[str, float]:
        return {
            "queue_depth": float(queue_depth),
            "running_sequences": float(running),
            "requests_admitted_total": float(self.requests_admitted),
            "requests_finished_total": float(self.requests_finished),
            "requests_cancelled_total": float(self.requests_cancelled),
            "requests_rejected_total": float(self.requests_rejected),
            "requests_failed_total": float(self.requests_failed),
            "prompt_tokens_total": float(self.prompt_tokens),
            "generation_tokens_total": float(self.generation_tokens),
            "time_to_first_token_seconds_sum": self.time_to_first_token_sum,
            "time_to_first_token_seconds_count": float(self.time_to_first_token_count),
            "prefill_steps_total": float(self.prefill_steps),
            "decode_steps_total": float(self.decode_steps),
            "generation_tokens_per_second": self.tokens_per_second(),
        }

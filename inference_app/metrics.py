"""Prometheus metrics (prometheus-client), one registry per app so tests can run several apps.

`instrument()` wraps an engine stream and records what a user of the service feels: time to the
first token, tokens per second, tokens, and whether the generation was cut short because the
client went away.
"""

from __future__ import annotations

import time
from asyncio import CancelledError
from collections.abc import AsyncIterator, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from inference_app.engine.base import (
    Engine,
    EngineOverloadedError,
    GenerationChunk,
    GenerationRequest,
)

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_RATE_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500)


class _EngineCollector(Collector):
    """Exports the engine's own numbers (queue depth, running batch, ...) at scrape time."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> list[GaugeMetricFamily]:
        status = self.engine.status()
        ready = GaugeMetricFamily("aca_infer_engine_ready", "1 when the model is loaded")
        ready.add_metric([], 1.0 if status.ready else 0.0)
        families = [ready]
        for key, value in sorted(status.details.items()):
            name = "aca_infer_engine_" + "".join(c if c.isalnum() else "_" for c in key)
            family = GaugeMetricFamily(name, f"engine detail '{key}'")
            family.add_metric([], float(value))
            families.append(family)
        return families


class Metrics:
    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "aca_infer_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.prompt_tokens = Counter(
            "aca_infer_prompt_tokens", "Prompt tokens processed", registry=r
        )
        self.completion_tokens = Counter(
            "aca_infer_completion_tokens", "Completion tokens generated", registry=r
        )
        self.generations = Counter(
            "aca_infer_generations",
            "Generations by outcome (stop, length, cancelled, rejected, error)",
            ["outcome"],
            registry=r,
        )
        self.waiting = Gauge(
            "aca_infer_queue_depth",
            "Generations submitted that have not produced their first token yet",
            registry=r,
        )
        self.running = Gauge(
            "aca_infer_generations_running", "Generations currently producing tokens", registry=r
        )
        self.ttft = Histogram(
            "aca_infer_time_to_first_token_seconds",
            "Time from submission to the first token",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens_per_second = Histogram(
            "aca_infer_tokens_per_second",
            "Per-generation decode speed after the first token",
            buckets=_RATE_BUCKETS,
            registry=r,
        )
        r.register(_EngineCollector(engine))

    def count(self, outcome: str) -> float:
        """Current value of the generations counter for one outcome (for tests and the UI)."""
        value = self.registry.get_sample_value("aca_infer_generations_total", {"outcome": outcome})
        return value or 0.0

    async def instrument(
        self,
        request: GenerationRequest,
        stream: Callable[[GenerationRequest], AsyncIterator[GenerationChunk]],
    ) -> AsyncIterator[GenerationChunk]:
        started = time.perf_counter()
        first_at: float | None = None
        last: GenerationChunk | None = None
        outcome = "cancelled"
        self.waiting.inc()
        try:
            async for chunk in stream(request):
                if first_at is None:
                    first_at = time.perf_counter()
                    self.waiting.dec()
                    self.running.inc()
                    self.ttft.observe(first_at - started)
                last = chunk
                if chunk.finish_reason is not None:
                    outcome = chunk.finish_reason
                yield chunk
        except BaseException as exc:
            if last is None or last.finish_reason is None:
                outcome = _outcome_of(exc)
            raise
        finally:
            if first_at is None:
                self.waiting.dec()
            else:
                self.running.dec()
            self.generations.labels(outcome).inc()
            if last is not None:
                self.prompt_tokens.inc(last.prompt_tokens)
                self.completion_tokens.inc(last.completion_tokens)
                elapsed = time.perf_counter() - (first_at or started)
                if last.completion_tokens > 1 and elapsed > 0:
                    self.tokens_per_second.observe((last.completion_tokens - 1) / elapsed)


def _outcome_of(exc: BaseException) -> str:
    if isinstance(exc, GeneratorExit | CancelledError):
        return "cancelled"  # the client went away (or the request was dropped)
    if isinstance(exc, EngineOverloadedError):
        return "rejected"
    return "error"

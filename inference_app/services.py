"""The service objects one app holds, built once from the engine and settings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from inference_app.engine.base import Engine
from inference_app.generation import GenerationLimits, GenerationService
from inference_app.metrics import Metrics
from inference_app.serving_chat import ChatService
from inference_app.serving_completions import CompletionService
from inference_app.serving_score import ScoreService
from inference_app.settings import Settings


@dataclass
class Services:
    generation: GenerationService
    chat: ChatService
    completions: CompletionService
    score: ScoreService
    metrics: Metrics
    release: str
    instance_id: str
    started_at: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def build(cls, engine: Engine, settings: Settings) -> Services:
        metrics = Metrics(engine)
        generation = GenerationService(
            engine,
            metrics,
            GenerationLimits(
                default_max_tokens=settings.default_max_tokens,
                max_tokens_limit=settings.max_tokens_limit,
                keepalive_seconds=settings.keepalive_seconds,
            ),
        )
        return cls(
            generation=generation,
            chat=ChatService(generation),
            completions=CompletionService(generation),
            score=ScoreService(generation),
            metrics=metrics,
            release=settings.release,
            instance_id=settings.instance_id,
        )

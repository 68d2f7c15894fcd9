"""What every generating endpoint shares: model lookup, token budgets, sampling parameters,
running the `n` generations of a request (collected or streamed) and mapping engine failures to
API errors."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from inference_app.engine.base import (
    Engine,
    EngineError,
    EngineOverloadedError,
    FinishReason,
    GenerationChunk,
    GenerationRequest,
    ModelInfo,
    SamplingParams,
)
from inference_app.errors import (
    APIError,
    BadRequestError,
    EngineFailureError,
    EngineUnavailableError,
    ModelNotFoundError,
    OverloadedError,
    UnsupportedParameterError,
)
from inference_app.metrics import Metrics
from inference_app.protocol import MAX_SEED, SamplingFields, Usage
from inference_app.streaming import merge, open_with_idle_ticks

# How long a streaming request waits for its first event before sending headers: long enough
# for a full queue to answer 429 as a status code, short enough not to delay a long prefill.
SUBMISSION_GRACE_SECONDS = 0.2

# Below these, sampling is indistinguishable from greedy decoding (the nucleus is the single most
# likely token, or the distribution is that sharp) while the numbers would underflow in float32.
_GREEDY_BELOW_TEMPERATURE = 1e-4
_GREEDY_BELOW_TOP_P = 1e-6

# The engine's input errors start with the field they are about: "prompt: it is empty; ...".
_FIELD_PREFIX = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")


@contextmanager
def engine_errors() -> Iterator[None]:
    """Translate the engine's exceptions into API errors (at the one place they are caught)."""
    try:
        yield
    except APIError:
        raise
    except EngineOverloadedError as exc:
        raise OverloadedError(exc.retry_after) from exc
    except EngineError as exc:
        raise EngineUnavailableError(f"The model is not available: {exc}") from exc
    except ValueError as exc:
        match = _FIELD_PREFIX.match(str(exc))
        raise BadRequestError(str(exc), param=match.group(1) if match else None) from exc
    except Exception as exc:
        raise EngineFailureError(f"Generation failed: {type(exc).__name__}: {exc}") from exc


@dataclass(frozen=True)
class GenerationLimits:
    default_max_tokens: int = 512  # when a request names none
    max_tokens_limit: int = 0  # operator's cap on any request; 0 = the context window only
    keepalive_seconds: float = 10.0


@dataclass(frozen=True)
class SamplingChoices:
    """The sampling knobs a request asked for (None = the server's default)."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None

    @classmethod
    def of(cls, body: SamplingFields, max_tokens: int | None) -> SamplingChoices:
        return cls(
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            stop=body.stop_sequences(),
            seed=body.seed,
            presence_penalty=body.presence_penalty,
            frequency_penalty=body.frequency_penalty,
        )


@dataclass(frozen=True)
class Completed:
    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int


def usage_of(prompt_tokens_by_prompt: Sequence[int], completion_tokens: Sequence[int]) -> Usage:
    # Like OpenAI: a prompt is counted once however many choices (`n`) are drawn from it.
    prompt, completion = sum(prompt_tokens_by_prompt), sum(completion_tokens)
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


class GenerationService:
    def __init__(self, engine: Engine, metrics: Metrics, limits: GenerationLimits) -> None:
        self.engine = engine
        self.metrics = metrics
        self.limits = limits
        self.startup_error: str | None = None

    # --- readiness and models --------------------------------------------------------------

    def not_ready_reason(self) -> str | None:
        if self.startup_error is not None:
            return f"engine failed: {self.startup_error}"
        status = self.engine.status()
        return None if status.ready else (status.reason or "loading")

    def ensure_ready(self) -> None:
        reason = self.not_ready_reason()
        if reason is not None:
            raise EngineUnavailableError(f"The model is not ready: {reason}")

    def admit(self, body: SamplingFields) -> ModelInfo:
        """What every generation endpoint checks first: fields this server cannot honour,
        readiness, and the model the request names."""
        field = body.unsupported_field()
        if field is not None:
            raise UnsupportedParameterError(field)
        misused = body.misused_field()
        if misused is not None:
            raise BadRequestError(misused[1], param=misused[0], code="invalid_value")
        self.ensure_ready()
        return self.resolve_model(body.model)

    def default_model(self) -> ModelInfo:
        """The first adapter (the fine-tuned model is what the deployment is for), else base."""
        models = list(self.engine.models())
        adapters = [m for m in models if m.adapter is not None]
        return (adapters or models)[0]

    def resolve_model(self, name: str | None) -> ModelInfo:
        if not name:
            return self.default_model()
        models = list(self.engine.models())
        for model in models:
            if model.id == name:
                return model
        raise ModelNotFoundError(name, [m.id for m in models])

    # --- budgets and sampling --------------------------------------------------------------

    # Rendering and tokenising take time in proportion to the request (seconds for megabytes):
    # they run in a worker thread so the event loop keeps answering /health, /ready and the
    # other clients' streams meanwhile.

    async def render_chat(self, messages: Sequence[dict[str, str]]) -> str:
        with engine_errors():
            return await asyncio.to_thread(self.engine.render_chat, messages)

    async def tokenize_prompt(self, prompt: str, param: str) -> tuple[int, ...]:
        """The prompt's token ids, refused when they leave no room for a completion."""
        with engine_errors():
            ids = tuple(await asyncio.to_thread(self.engine.tokenize, prompt))
            window = self.engine.context_window
        if len(ids) >= window:
            raise BadRequestError(
                f"The prompt is {len(ids)} tokens; this model's context window is {window} "
                "tokens and leaves no room for a completion. Shorten it.",
                param=param,
                code="context_length_exceeded",
            )
        return ids

    def sampling(self, choices: SamplingChoices, prompt_tokens: int) -> SamplingParams:
        with engine_errors():
            room = self.engine.context_window - prompt_tokens
        wanted = choices.max_tokens or self.limits.default_max_tokens
        if self.limits.max_tokens_limit:
            room = min(room, self.limits.max_tokens_limit)
        temperature = 1.0 if choices.temperature is None else choices.temperature
        top_p = 1.0 if choices.top_p is None else choices.top_p
        if top_p < _GREEDY_BELOW_TOP_P:
            temperature, top_p = 0.0, 1.0
        if temperature < _GREEDY_BELOW_TEMPERATURE:
            temperature = 0.0
        return SamplingParams(
            max_tokens=max(1, min(wanted, room)),
            temperature=temperature,
            top_p=top_p,
            stop=choices.stop,
            seed=choices.seed,
            presence_penalty=choices.presence_penalty or 0.0,
            frequency_penalty=choices.frequency_penalty or 0.0,
        )

    def requests(
        self,
        request_id: str,
        prompt: str,
        prompt_ids: tuple[int, ...],
        sampling: SamplingParams,
        model: ModelInfo,
        n: int,
    ) -> list[GenerationRequest]:
        """`n` independent generations; with a seed, each choice gets its own (seed + index)
        so the choices differ yet the whole answer is reproducible."""
        out = []
        for index in range(n):
            params = sampling
            if sampling.seed is not None and index:
                seed = (sampling.seed + index) % (MAX_SEED + 1)
                params = SamplingParams(**{**vars(sampling), "seed": seed})
            out.append(
                GenerationRequest(
                    request_id=f"{request_id}-{index}" if n > 1 else request_id,
                    prompt=prompt,
                    sampling=params,
                    adapter=model.adapter,
                    prompt_token_ids=prompt_ids,
                )
            )
        return out

    # --- running ---------------------------------------------------------------------------

    async def _events(
        self, requests: Sequence[GenerationRequest]
    ) -> AsyncIterator[tuple[int, GenerationChunk]]:
        with engine_errors():
            async for event in merge(
                self.metrics.instrument(r, self.engine.generate) for r in requests
            ):
                yield event

    async def stream(
        self, requests: Sequence[GenerationRequest]
    ) -> AsyncGenerator[tuple[int, GenerationChunk] | None, None]:
        """Start the generations; errors at submission raise here (before the response starts).
        The iterator yields (choice index, chunk), and None as a keep-alive tick."""
        self.ensure_ready()
        return await open_with_idle_ticks(
            self._events(requests),
            grace=SUBMISSION_GRACE_SECONDS,
            interval=self.limits.keepalive_seconds,
        )

    async def collect(self, requests: Sequence[GenerationRequest]) -> list[Completed]:
        self.ensure_ready()
        texts = [""] * len(requests)
        last: list[GenerationChunk | None] = [None] * len(requests)
        async for index, chunk in self._events(requests):
            texts[index] += chunk.text
            last[index] = chunk
        results = []
        for text, final in zip(texts, last, strict=True):
            if final is None:
                raise EngineFailureError("The engine ended a generation without output")
            results.append(
                Completed(
                    text=text,
                    finish_reason=final.finish_reason or "stop",
                    prompt_tokens=final.prompt_tokens,
                    completion_tokens=final.completion_tokens,
                )
            )
        return results

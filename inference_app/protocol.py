"""Request and response models of the HTTP API (OpenAI and Azure ML shapes).

Requests forbid unknown fields so a typo answers 400 naming it instead of being ignored. Fields
that OpenAI defines but this server does not implement are accepted by the schema and rejected by
`unsupported_field()` with a message saying so.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_N = 16
MAX_STOP = 4
MAX_SEED = 2**63 - 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextContentPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextContentPart]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def as_template_message(self) -> dict[str, str]:
        # Chat templates know "system"; "developer" is OpenAI's newer name for it.
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": self.text()}


class StreamOptions(_Strict):
    include_usage: bool = False


class ResponseFormat(_Strict):
    type: str


Temperature = Annotated[float, Field(ge=0.0, le=2.0)]
TopP = Annotated[float, Field(gt=0.0, le=1.0)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
Stop = str | Annotated[list[str], Field(max_length=MAX_STOP)]


class SamplingFields(_Strict):
    model: str | None = Field(default=None, description="A model id from /v1/models")
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: Temperature | None = Field(default=None, description="0 means greedy")
    top_p: TopP | None = None
    n: int = Field(default=1, ge=1, le=MAX_N)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop | None = None
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        items = [self.stop] if isinstance(self.stop, str) else self.stop
        return tuple(s for s in items if s)

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def unsupported_field(self) -> str | None:
        """The first field this server cannot honour, if any."""
        return self._unsupported_common()

    def _unsupported_common(self) -> str | None:
        if self.logit_bias:
            return "logit_bias"
        return None

    def misused_field(self) -> tuple[str, str] | None:
        """A field that is valid alone but not with the others: (field, what to do)."""
        if self.stream_options is not None and not self.stream:
            return (
                "stream_options",
                "'stream_options' is only allowed when 'stream' is true; "
                "set \"stream\": true or remove 'stream_options'",
            )
        return None


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None
    response_format: ResponseFormat | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def unsupported_field(self) -> str | None:
        """The first field this server cannot honour, if any."""
        if self.logprobs:
            return "logprobs"
        if self.top_logprobs is not None:
            return "top_logprobs"
        if self.tools:
            return "tools"
        if self.tool_choice not in (None, "none"):
            return "tool_choice"
        if self.functions:
            return "functions"
        if self.function_call not in (None, "none"):
            return "function_call"
        if self.response_format is not None and self.response_format.type != "text":
            return "response_format"
        if self.store:
            return "store"
        return self._unsupported_common()


class CompletionRequest(SamplingFields):
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=MAX_N)]
    max_tokens: int | None = Field(default=16, ge=1)
    echo: bool = False
    suffix: str | None = None
    logprobs: int | None = None
    best_of: int | None = None

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def unsupported_field(self) -> str | None:
        if self.suffix:
            return "suffix"
        if self.logprobs is not None:
            return "logprobs"
        if self.best_of not in (None, self.n):
            return "best_of"
        return self._unsupported_common()


# --- responses -------------------------------------------------------------------------------


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: Literal["stop", "length"] | None
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage
    system_fingerprint: str | None = None


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: Literal["stop", "length"] | None
    logprobs: None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str
    root: str | None = None
    parent: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    release: str
    instance_id: str


class Readiness(BaseModel):
    ready: bool
    reason: str = ""


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


# --- Azure ML /score ----------------------------------------------------------------------------


class ScoreParameters(_Strict):
    temperature: Temperature | None = None
    top_p: TopP | None = None
    do_sample: bool | None = None
    max_new_tokens: int | None = Field(default=None, ge=1)


Conversation = Annotated[list[ChatMessage], Field(min_length=1)]


class ScoreInput(_Strict):
    # One conversation, a list of conversations (a dataset's `messages` column, as the Azure ML
    # fine-tuning notebooks send it), or raw prompts.
    input_string: (
        Conversation
        | Annotated[list[Conversation], Field(min_length=1, max_length=MAX_N)]
        | Annotated[list[str], Field(min_length=1, max_length=MAX_N)]
    )
    parameters: ScoreParameters = Field(default_factory=ScoreParameters)


class ScoreRequest(_Strict):
    """Either `{"text": ...}` (one user turn) or Azure ML's `{"input_data": {...}}`."""

    text: str | None = None
    input_data: ScoreInput | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ScoreRequest:
        if (self.text is None) == (self.input_data is None):
            raise ValueError("give exactly one of 'text' or 'input_data'")
        return self


class ScoreOutput(BaseModel):
    output: str


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in (
        (400, "Invalid request (the `param` names the field)"),
        (401, "Missing or wrong API key"),
        (404, "Unknown model"),
        (429, "Request queue full; see Retry-After"),
        (503, "Model not loaded yet or engine failed"),
    )
}

"""What `aca-infer invoke` sends: the route and body for a message or a request file, and the
answers read back from the server's reply.

A request file holds either an OpenAI chat body (`{"messages": [...], ...}`, sent to
`/v1/chat/completions`) or an Azure ML body (`{"text": ...}` or `{"input_data": {"input_string":
..., "parameters": ...}}`, sent to `/score`), where `input_string` is one conversation or a list
of conversations (a dataset's `messages` column, as the Azure ML fine-tuning notebooks send it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.errors import InputError

CHAT_ROUTE = "/v1/chat/completions"
SCORE_ROUTE = "/score"


@dataclass(frozen=True)
class PreparedRequest:
    route: str
    body: Mapping[str, Any]
    # How many answers the reply carries: one per conversation (or prompt).
    expected_answers: int = 1

    @property
    def streams(self) -> bool:
        return bool(self.body.get("stream"))


def chat_request(
    message: str,
    system: str | None,
    model: str | None,
    max_tokens: int,
    temperature: float | None,
    stream: bool,
) -> PreparedRequest:
    if not message.strip():
        raise InputError("--message is empty: give the text to send, e.g. --message 'Hello'")
    if max_tokens < 1:
        raise InputError("--max-tokens must be at least 1")
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": message})
    body: dict[str, Any] = {"messages": messages, "max_tokens": max_tokens}
    if model:
        body["model"] = model
    if temperature is not None:
        body["temperature"] = temperature
    if stream:
        body["stream"] = True
    return PreparedRequest(CHAT_ROUTE, body)


def file_request(path: Path, model: str | None, stream: bool) -> PreparedRequest:
    body = _read_body(path)
    if "messages" in body:
        if not isinstance(body["messages"], list) or not body["messages"]:
            raise InputError(f"{path}: 'messages' must be a non-empty list of chat messages")
        chat = dict(body)
        if model:
            chat["model"] = model
        if stream:
            chat["stream"] = True
        return PreparedRequest(CHAT_ROUTE, chat)
    if "text" in body or "input_data" in body:
        if model:
            raise InputError(
                f"--model: {path} is an Azure ML body, which /score answers with the default "
                'model; send an OpenAI chat body ({"messages": [...]}) to pick a model'
            )
        if stream:
            raise InputError(
                f"--stream: {path} is an Azure ML body, which /score answers whole; send an "
                'OpenAI chat body ({"messages": [...]}) to stream'
            )
        return PreparedRequest(SCORE_ROUTE, body, _score_answers(path, body))
    raise InputError(
        f"{path}: expected an OpenAI chat body with 'messages', or an Azure ML body with "
        "'text' or 'input_data'"
    )


def _read_body(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"--request-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"--request-file {path}: cannot read it ({error})") from None
    except json.JSONDecodeError as error:
        raise InputError(f"--request-file {path}: not JSON ({error})") from None
    if not isinstance(body, dict):
        raise InputError(f"--request-file {path}: expected a JSON object")
    return body


def _score_answers(path: Path, body: Mapping[str, Any]) -> int:
    data = body.get("input_data")
    if data is None:
        return 1
    inputs = data.get("input_string") if isinstance(data, dict) else None
    if not isinstance(inputs, list) or not inputs:
        raise InputError(
            f"{path}: input_data.input_string must be a conversation (a list of "
            '{"role", "content"} messages), a list of conversations, or a list of prompts'
        )
    if all(isinstance(item, dict) for item in inputs):
        return 1  # one conversation
    return len(inputs)


def answers(request: PreparedRequest, reply: Any) -> list[str]:
    """The answers in a non-streamed reply, one per conversation (or prompt)."""
    if request.route == CHAT_ROUTE:
        return [str(choice["message"]["content"]) for choice in reply["choices"]]
    if isinstance(reply, dict):
        return [str(reply["output"])]
    return [str(entry["0"]) for entry in reply]

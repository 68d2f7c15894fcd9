"""The Gradio chat UI, mounted at `/ui` in the same app.

Multi-turn and streaming; a model picker (base model and every adapter) and generation settings.
It calls the chat service in-process — no HTTP round trip, no key to hold — and sits behind the
API-key middleware like every other route: a browser signs in once on `/login` with an API key
(see `auth.py`), which sets a session cookie, and is then redirected here.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr
from fastapi import FastAPI

from inference_app.errors import APIError
from inference_app.logging_setup import request_id_var
from inference_app.protocol import ChatCompletionRequest, ChatMessage
from inference_app.request_context import new_request_id
from inference_app.services import Services

UI_PATH = "/ui"

# The chat log's label and its share/clear/copy icons float over the top edge of the scrolling
# log, where they hid the right-aligned user message scrolled there: the log starts below them.
_CSS = """
#chat-log .bubble-wrap {
    margin-top: var(--size-8);
    height: calc(100% - var(--size-8));
}
"""


def _text_of(content: Any) -> str:
    """Gradio hands history content as a string, a dict, or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("value") or "")
    if isinstance(content, list | tuple):
        return "".join(_text_of(part) for part in content)
    return ""


def conversation(
    system_prompt: str, history: list[dict[str, Any]], message: str
) -> list[ChatMessage]:
    turns = [ChatMessage(role="system", content=system_prompt)] if system_prompt.strip() else []
    for item in history:
        role = item.get("role")
        if role in {"user", "assistant"}:
            turns.append(ChatMessage(role=role, content=_text_of(item.get("content"))))
    turns.append(ChatMessage(role="user", content=message))
    return turns


def build_ui(services: Services) -> gr.Blocks:
    model_ids = [m.id for m in services.generation.engine.models()]
    default_model = services.generation.default_model().id

    async def respond(
        message: str,
        history: list[dict[str, Any]],
        model: str,
        system_prompt: str,
        temperature: float,
        top_p: float,
        max_tokens: float,
    ) -> AsyncIterator[str]:
        request_id = new_request_id()
        request_id_var.set(request_id)
        body = ChatCompletionRequest(
            model=model,
            messages=conversation(system_prompt, history, message),
            temperature=temperature,
            top_p=top_p,
            max_tokens=int(max_tokens),
            stream=True,
        )
        answer = ""
        try:
            prepared = await services.chat.prepare(body, request_id)
            # aclosing: when the user presses Stop, the generation stops too.
            async with contextlib.aclosing(
                await services.generation.stream(prepared.requests)
            ) as events:
                async for event in events:
                    if event is not None:
                        answer += event[1].text
                        yield answer
        except APIError as exc:
            raise gr.Error(exc.message) from exc
        yield answer

    # Built outside any Blocks context so that ChatInterface places them in its accordion.
    settings: list[str | gr.components.Component] = [
        gr.Dropdown(model_ids, value=default_model, label="Model (base or adapter)"),
        gr.Textbox("", label="System prompt", elem_id="system-prompt"),
        gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="Temperature (0 = greedy)"),
        gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top p"),
        gr.Slider(1, 2048, value=256, step=1, label="Max new tokens"),
    ]
    return gr.ChatInterface(
        respond,
        title="Chat with the model",
        chatbot=gr.Chatbot(elem_id="chat-log", label="Conversation"),
        textbox=gr.Textbox(elem_id="chat-input", placeholder="Type a message, Enter sends"),
        additional_inputs=settings,
        additional_inputs_accordion=gr.Accordion("Model and generation settings", open=False),
        api_visibility="private",
    )


def mount_ui(app: FastAPI, services: Services) -> None:
    gr.mount_gradio_app(
        app, build_ui(services), path=UI_PATH, footer_links=[], ssr_mode=False, css=_CSS
    )

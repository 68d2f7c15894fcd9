"""A person in a browser: sign in with the API key, then a two-turn streamed conversation in the
Gradio chat UI, driven in headless Chromium. The screenshot is kept under test-artifacts/."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.inference_app.cdp import chromium_page, find_chromium
from tests.inference_app.conftest import PRIMARY_KEY, RealServer
from tests.inference_app.servers import REPO_ROOT, wait_until

pytestmark = pytest.mark.browser

SCREENSHOT = REPO_ROOT / "test-artifacts" / "ui-two-turn-chat.png"
BOT = "#chat-log [data-testid=bot]"
INPUT = "#chat-input textarea"
# What floats over the top edge of the chat log: its label and its share/clear/copy icons.
COVERS = "#chat-log .top-panel, #chat-log [data-testid=block-label]"
USER = "#chat-log [data-testid=user]"


def counter(server: RealServer, name: str) -> float:
    text = httpx.get(server.url + "/metrics", headers={"api-key": PRIMARY_KEY}).text
    return sum(
        float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    )


def test_two_turn_conversation_in_the_chat_ui(real_server: RealServer) -> None:
    binary = find_chromium()
    assert binary, "Chromium is required for this test: apt-get install -y chromium"
    with chromium_page(binary) as page:
        page.navigate(real_server.url + "/ui/")
        # Not signed in: the UI sends the browser to the key form first.
        page.wait_for("document.querySelector('#api-key')", 60, "the sign-in form")
        assert "/login" in page.evaluate("location.pathname")
        page.evaluate(
            f"document.querySelector('#api-key').value = {PRIMARY_KEY!r};"
            "document.querySelector('form').submit(); true"
        )
        page.wait_for("document.querySelector('#chat-input textarea')", 60, "the chat UI")

        prompt_tokens: list[float] = []
        for turn, message in enumerate(["Hello! Who are you?", "Tell me more, please."], 1):
            generations = counter(real_server, "aca_infer_generations_total")
            tokens = counter(real_server, "aca_infer_prompt_tokens_total")
            # The box is disabled while an answer streams: typing there would be lost.
            page.wait_for(f"!document.querySelector('{INPUT}').disabled", 60, "the input box")
            page.evaluate(f"document.querySelector('{INPUT}').focus()")
            page.type_text(message)
            page.press_enter()
            page.wait_for(
                f"document.querySelectorAll('{BOT}').length === {turn}"
                f" && document.querySelectorAll('{BOT}')[{turn - 1}].innerText.trim().length > 0",
                120,
                f"answer {turn} to appear",
            )
            _wait_until_counted(real_server, generations)
            prompt_tokens.append(counter(real_server, "aca_infer_prompt_tokens_total") - tokens)

        users = page.evaluate(f"Array.from(document.querySelectorAll('{USER}'), e => e.innerText)")
        assert [u.strip() for u in users] == ["Hello! Who are you?", "Tell me more, please."]
        # The second turn sent the whole conversation, not just the new message.
        assert prompt_tokens[1] > prompt_tokens[0]
        # A message scrolled to the top of the log stays clear of the log's label and icons.
        hidden = page.evaluate(
            f"""(() => {{
                const users = document.querySelectorAll('{USER}');
                const last = users[users.length - 1];
                last.scrollIntoView({{block: 'start'}});
                const m = last.getBoundingClientRect();
                const covers = Array.from(
                    document.querySelectorAll('{COVERS}'), e => e.getBoundingClientRect());
                return covers.filter(c => c.left < m.right && m.left < c.right
                                          && c.top < m.bottom && m.top < c.bottom).length;
            }})()"""
        )
        assert hidden == 0, "the user's message is under the chat log's label or icons"
        page.screenshot(SCREENSHOT)
    assert SCREENSHOT.stat().st_size > 0


def _wait_until_counted(server: RealServer, before: float) -> None:
    wait_until(
        lambda: counter(server, "aca_infer_generations_total") > before,
        120,
        "the answer to finish",
        interval=0.2,
    )

from __future__ import annotations

import pytest

from provision.azure.startup import is_ai_toolkit_startup


@pytest.mark.parametrize(
    "commands",
    [
        ["cd /mount", "pip install -r ./setup/requirements.txt", "python3 ./inference/app.py"],
        ["pip3 install gradio", "python3 ./gradio_chat.py"],
        ["python -m pip install x"],
    ],
)
def test_the_ai_toolkits_commands_are_recognised(commands: list[str]) -> None:
    assert is_ai_toolkit_startup(commands)


@pytest.mark.parametrize(
    "commands", [["python /mount/app/bootstrap.py"], ["echo hi", "python3 serve.py"], [], None]
)
def test_other_commands_are_honoured(commands: list[str] | None) -> None:
    assert not is_ai_toolkit_startup(commands)

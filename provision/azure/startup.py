"""The AI Toolkit's startup commands, recognised and replaced by the bootstrap.

Its parameters file ships `defaultCommands` that pip-install packages at every container start
and then start its own Gradio script on port 7860, without API keys or the /ready probe. Run
with the template, they would bypass authentication; the bootstrap on the share starts the
server with keys, probes and no installs (the image has the packages).
"""

from __future__ import annotations

import re
from typing import Any

_PIP_INSTALL = re.compile(r"\bpip3?\s+install\b|\bpython3?\s+-m\s+pip\s+install\b")
_TOOLKIT_SERVER = re.compile(r"\bpython3?\s+\S*(gradio_chat\.py|inference/app\.py)\b")


def is_ai_toolkit_startup(commands: Any) -> bool:
    if not isinstance(commands, list) or not all(isinstance(c, str) for c in commands):
        return False
    return any(_PIP_INSTALL.search(c) or _TOOLKIT_SERVER.search(c) for c in commands)


REPLACED_NOTE = (
    "defaultCommands are the AI Toolkit's (pip install at every start, then its own server "
    "without API keys): running the bootstrap on the share instead; give other commands to "
    "override"
)

"""The README as a user follows it: the `make demo` recipe prints what the README shows, the
"Calling the endpoint" examples run as written, and after `make stop` the documented way brings
the demo back. Runs in a copy of the project with the demo model, on a free port of its own."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.make_demo_model import DemoModel
from tests.inference_app.servers import free_port

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
MAKEFILE = (REPO / "Makefile").read_text(encoding="utf-8")
BRING_BACK = ".venv/bin/aca-infer up --target local"

pytestmark = pytest.mark.e2e


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start : end if end >= 0 else None]


def code_blocks(text: str, language: str = "") -> list[str]:
    """The fenced blocks with this info string (empty: none), in order."""
    blocks: list[str] = []
    current: list[str] | None = None
    info = ""
    for line in text.splitlines(keepends=True):
        if line.startswith("```") and current is None:
            current, info = [], line[3:].strip()
        elif line.startswith("```"):
            if info == language:
                blocks.append("".join(current or []))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def make_variables() -> dict[str, str]:
    return dict(re.findall(r"^(?:export )?(\w+) :?= (.*)$", MAKEFILE, flags=re.MULTILINE))


def expand(line: str, variables: dict[str, str]) -> str:
    while "$(" in line:
        line = re.sub(r"\$\((\w+)\)", lambda m: variables[m.group(1)], line)
    return line


def recipe_script(target: str) -> str:
    """The recipe of a make target as a bash script that prints what make prints: each command
    line not marked `@` is echoed before it runs."""
    lines = MAKEFILE.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    variables = make_variables()
    script = ["set -e"]
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        command = expand(line[1:].lstrip("@"), variables)
        if not line[1:].startswith("@"):
            script.append(f"echo {shlex.quote(command)}")
        script.append(command)
    return "\n".join(script)


def sample_pattern(sample: str) -> re.Pattern[str]:
    """The README sample as a pattern: `<...>` placeholders stand for any text (the model's
    answer for any lines), numbers and release ids for any number and release id."""
    pattern = ""
    for index, part in enumerate(re.split(r"(<[^<>\n]+>|r-1a2b3c4d5e6f|\d+(?:\.\d+)?)", sample)):
        if index % 2 == 0:
            pattern += re.escape(part)
        elif part == "<the model's answer>":
            pattern += r".*?"
        elif part.startswith("<"):
            pattern += r"[^\n]+"
        elif part.startswith("r-"):
            pattern += r"r-[0-9a-f]{12}"
        else:
            pattern += r"\d+(?:\.\d+)?"
    return re.compile(pattern, flags=re.DOTALL)


class Project:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ACA_INFER_")},
            **{k: v for k, v in make_variables().items() if k in MAKEFILE_EXPORTS},
            # A port of its own: the test never relies on 7860 being free.
            "ACA_INFER_LOCAL_PORT": str(port),
        }

    def bash(self, script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", script],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
        )


MAKEFILE_EXPORTS = set(re.findall(r"^export (\w+)", MAKEFILE, flags=re.MULTILINE))


@pytest.fixture
def project(tmp_path: Path, demo_model: DemoModel) -> Iterator[Project]:
    shutil.copytree(REPO / "inference_app", tmp_path / "inference_app")
    shutil.copytree(demo_model.share_dir, tmp_path / ".aca-infer/local/share")
    # The README's commands use the project's virtual environment, as `make setup` makes it.
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    project = Project(tmp_path, free_port())
    yield project
    project.bash(f"{BRING_BACK.replace(' up ', ' down ')} --purge --yes")


def test_the_readme_works_as_written(project: Project) -> None:
    demo = project.bash(recipe_script("demo"))
    assert demo.returncode == 0, demo.stderr
    (sample,) = code_blocks(section("Two commands"))
    assert sample_pattern(sample).fullmatch(demo.stdout), demo.stdout

    (shell_example,) = code_blocks(section("Calling the endpoint"), "sh")
    called = project.bash("set -e\n" + shell_example)
    assert called.returncode == 0, called.stderr
    answers, rest = [], called.stdout.strip()
    while rest:
        answer, end = json.JSONDecoder().raw_decode(rest)
        answers.append(answer)
        rest = rest[end:].strip()
    models, chat, score = answers
    assert [m["id"] for m in models["data"]][-1] == "qlora"
    assert chat["object"] == "chat.completion" and "output" in score

    (python_example,) = code_blocks(section("Calling the endpoint"), "python")
    ran = project.bash(f"source .venv/bin/activate\npython -c {shlex.quote(python_example)}")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip()

    stopped = project.bash(recipe_script("stop"))
    assert stopped.returncode == 0 and "Stopped the replica" in stopped.stdout
    assert BRING_BACK in README
    back = project.bash(f"set -e\n{BRING_BACK}\n.venv/bin/aca-infer invoke -m 'Hello again'")
    assert back.returncode == 0, back.stderr
    assert "Release r-" in back.stdout and "is ready" in back.stdout

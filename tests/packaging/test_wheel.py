"""The installed wheel in an AI Toolkit-shaped project, as a user runs it: no checkout anywhere.

The project holds only what an AI Toolkit fine-tuning run leaves: infra/finetuning.config.json
and its infra/provision/inference.parameters.json (names null, pip-install defaultCommands).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import httpx
import pytest

from provision.demo_model import BASE_MODEL_RELPATH
from provision.targets import TARGET_NAMES
from tests.packaging.conftest import REPO, Dist, Installed

AI_TOOLKIT_PARAMETERS = REPO / "tests/infra/fixtures/ai_toolkit_inference.parameters.json"
FINETUNING_CONFIG = {
    "SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "RESOURCE_GROUP_NAME": "rg-finetune",
    "STORAGE_ACCOUNT_NAME": "aistorageabcde",
    "FILE_SHARE_NAME": "aifileshareabcde",
    "ACA_JOB_NAME": "aiacajobabcde",
    "COMMANDS": ["cd /mount", "python3 ./finetuning/invoke_olive.py"],
}


class UserShell:
    def __init__(self, installed: Installed, cwd: Path) -> None:
        self.installed = installed
        self.cwd = cwd

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.installed.command), *args],
            cwd=self.cwd,
            env=self.installed.env(**env),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )

    def ok(self, *args: str, **env: str) -> str:
        done = self.run(*args, **env)
        assert done.returncode == 0, f"aca-infer {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def json(self, *args: str) -> dict:
        value: dict = json.loads(self.ok(*args))
        return value


def _tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _tracked(folder: str) -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", folder], cwd=REPO, capture_output=True, text=True, check=True
    )
    return set(listed.stdout.split())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def ai_toolkit_project(tmp_path: Path) -> Path:
    project = tmp_path / "my-finetune"
    (project / "infra/provision").mkdir(parents=True)
    shutil.copyfile(AI_TOOLKIT_PARAMETERS, project / "infra/provision/inference.parameters.json")
    (project / "infra/finetuning.config.json").write_text(json.dumps(FINETUNING_CONFIG))
    return project


@pytest.fixture
def shell(installed: Installed, ai_toolkit_project: Path) -> Iterator[UserShell]:
    shell = UserShell(installed, ai_toolkit_project)
    yield shell
    shell.run("down", "--target", "local", "--purge", "--yes")


def test_wheel_carries_the_server_the_templates_and_the_bootstrap(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as wheel:
        names = set(wheel.namelist())
    bundled = "provision/bundled/"
    assert {name.removeprefix(bundled) for name in names if name.startswith(bundled)} == (
        _tracked("inference_app") | _tracked("infra/provision")
    )
    assert "provision/share_files/bootstrap.py" in names
    assert "provision/demo_model.py" in names
    # The server is data for the share, not a package of the CLI's environment.
    assert not {name.split("/")[0] for name in names} & {"inference_app", "scripts", "tests"}
    with tarfile.open(dist.sdist) as sdist:
        members = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"pyproject.toml", "infra/provision/inference.bicep", "inference_app/__main__.py"} <= (
        members
    )


def test_installed_command_imports_nothing_from_the_checkout(
    installed: Installed, ai_toolkit_project: Path
) -> None:
    probe = (
        "import importlib.util, json, sys, provision; print(json.dumps({'path': sys.path, "
        "'provision': provision.__file__, "
        "'others': [m for m in ('inference_app', 'scripts', 'tests', 'bench') "
        "if importlib.util.find_spec(m)]}))"
    )
    done = subprocess.run(
        [str(installed.python), "-c", probe],
        cwd=ai_toolkit_project,
        env=installed.env(),
        capture_output=True,
        text=True,
        check=True,
    )
    seen = json.loads(done.stdout)
    assert Path(seen["provision"]).is_relative_to(installed.venv)
    assert seen["others"] == []
    from_checkout = [p for p in seen["path"] if p and Path(p).resolve().is_relative_to(REPO)]
    assert set(from_checkout) <= {str(installed.dependencies)}  # dependencies only, no source


def test_help_version_completion_and_init_twice(installed: Installed, shell: UserShell) -> None:
    assert "init" in shell.ok("--help") and "Examples:" in shell.ok("init", "--help")
    assert metadata.version("aca-infer") in shell.ok("--version")
    completion = shell.ok(
        _ACA_INFER_COMPLETE="bash_complete", COMP_WORDS="aca-infer in", COMP_CWORD="1"
    )
    assert "plain,init" in completion.splitlines()

    parameters_before = (shell.cwd / "infra/provision/inference.parameters.json").read_bytes()
    first = shell.ok("init")
    assert "Created .gitignore" in first
    assert "defaultCommands" in first  # the AI Toolkit's start commands would replace ours
    assert (shell.cwd / ".gitignore").read_text() == ".aca-infer/\n"
    assert (shell.cwd / "infra/provision/inference.parameters.json").read_bytes() == (
        parameters_before
    )

    tree = _tree(shell.cwd)
    second = shell.ok("init")
    assert second.startswith("Nothing to add")
    assert _tree(shell.cwd) == tree


def test_local_flow_with_the_packaged_demo_model(shell: UserShell) -> None:
    assert "Serve it:" in shell.ok("local", "demo-model")
    up = shell.json(
        "up",
        "--target",
        "local",
        "--set",
        f"modelPath={BASE_MODEL_RELPATH}",
        "--set",
        f"localPort={_free_port()}",
        "--output",
        "json",
    )
    endpoint = up["deploy"]["endpoint"]
    assert up["deploy"]["ready"] and up["deploy"]["uploaded"] > 0

    # Global options after the subcommand print what they print before it.
    after = shell.json("deploy", "--target", "local", "--output", "json")
    before = shell.json("--output", "json", "deploy", "--target", "local")
    assert after == before and after["release"] == up["deploy"]["release"]

    status = shell.json("status", "--output", "json")  # the target this project provisioned
    assert status["target"] == "local" and status["ready"]

    key = shell.json("keys", "show", "--output", "json")["primary"]
    body = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8}
    assert httpx.post(f"{endpoint}/v1/chat/completions", json=body).status_code == 401
    answer = httpx.post(
        f"{endpoint}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
    )
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["message"]["content"]

    down = shell.json("down", "--target", "local", "--yes", "--output", "json")
    assert down["stopped"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{endpoint}/health")


@pytest.mark.skipif(
    "azure" not in TARGET_NAMES, reason="the azure target is not part of this version yet"
)
def test_provision_azure_dry_run(shell: UserShell) -> None:
    result = shell.json("provision", "--target", "azure", "--dry-run", "--output", "json")
    assert isinstance(result, dict) and "error" not in result

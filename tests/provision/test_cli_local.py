"""The CLI against the local target, with a real replica process running a stand-in app."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from provision.cli import cli
from provision.local.replica import pid_alive
from tests.provision.standin_app import write_model_files, write_standin_app


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.runner = CliRunner()

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        env = {"ACA_INFER_TARGET": "local", **(env or {})}  # the default target is azure
        return self.runner.invoke(
            cli, ["--project-dir", str(self.root), *args], env=env, catch_exceptions=False
        )

    def json(self, *args: str) -> dict:
        result = self.run("--output", "json", *args)
        assert result.exit_code == 0, result.output + result.stderr
        value: dict = json.loads(result.stdout)
        return value

    @property
    def state(self) -> Path:
        return self.root / ".aca-infer/local"


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    write_standin_app(tmp_path)
    project = Project(tmp_path)
    yield project
    project.run("down", "--purge")


def provisioned(project: Project) -> dict:
    result = project.json("provision", "--set", "localPort=0")
    write_model_files(project.state / "share")
    return result


def test_provision_creates_share_keys_0600_and_config_without_secrets(project: Project) -> None:
    result = provisioned(project)
    assert result["endpoint"].startswith("http://127.0.0.1:")
    secrets_file = project.state / "secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    keys = project.json("keys", "show")
    config_text = (project.state / "inference.config.json").read_text()
    assert keys["primary"] not in config_text and keys["secondary"] not in config_text
    assert keys["primary"] != keys["secondary"] and len(keys["primary"]) >= 32


def test_reprovision_keeps_keys_and_port(project: Project) -> None:
    first = provisioned(project)
    keys = project.json("keys", "show")
    second = project.json("provision")
    assert second["endpoint"] == first["endpoint"] and not second["created"]
    assert project.json("keys", "show") == keys


def test_deploy_invoke_status_redeploy_down(project: Project) -> None:
    provisioned(project)
    first = project.json("deploy", "--ready-timeout", "60")
    assert first["ready"] and first["uploaded"] == 3 and first["previous_release"] is None
    health = httpx.get(first["endpoint"] + "/health").json()
    assert health["release"] == first["release"]  # the replica runs the code from the share

    answer = project.run("invoke", "--message", "hi there")
    assert answer.exit_code == 0 and answer.stdout.strip() == "echo: hi there"

    second = project.json("deploy")
    assert (second["uploaded"], second["release"], second["restarted"]) == (
        0,
        first["release"],
        False,
    )

    logs = project.run("logs", "--lines", "5")
    assert logs.exit_code == 0 and f"starting release {first['release']}" in logs.stdout

    status = project.json("status")
    assert status["running"] and status["ready"] and status["release"] == first["release"]

    pid = int((project.state / "replica.pid").read_text())
    down = project.run("down")
    assert down.exit_code == 0 and "Stopped the replica" in down.stdout
    assert not pid_alive(pid)
    assert not (project.state / "secrets.json").exists()
    assert (project.state / "share/model-cache").is_dir()  # model files kept without --purge


def test_release_that_crashes_is_rolled_back_with_exit_5(project: Project) -> None:
    provisioned(project)
    good = project.json("deploy", "--ready-timeout", "60")["release"]
    (project.root / "inference_app/extra.py").write_text("# a change\n")
    bad_release = _release_id_after_change(project)
    result = project.run(
        "deploy", "--ready-timeout", "60", env={"STANDIN_CRASH_RELEASE": bad_release}
    )
    assert result.exit_code == 5
    assert f"rolled back to {good} (ready)" in result.stderr
    assert "Traceback" not in result.stderr
    assert httpx.get(project.json("status")["endpoint"] + "/health").json()["release"] == good


def _release_id_after_change(project: Project) -> str:
    from provision.release import scan_tree

    manifest, _ = scan_tree(project.root / "inference_app", "inference_app")
    return manifest.release_id


def test_deploy_before_provision_says_what_to_run(project: Project) -> None:
    result = project.run("deploy")
    assert result.exit_code == 3
    assert "run: aca-infer provision --target local" in result.stderr


def test_deploy_without_model_names_the_parameter(project: Project) -> None:
    project.json("provision")
    result = project.run("deploy")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: modelPath 'model-cache/microsoft/")
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_parameter_value_is_one_line_exit_2_and_changes_nothing(project: Project) -> None:
    result = project.run("provision", "--set", "modelPath=../outside")
    assert result.exit_code == 2
    assert "modelPath '../outside'" in result.stderr
    assert not project.state.exists()


def test_json_errors_are_json_on_stdout(project: Project) -> None:
    result = project.run("--output", "json", "status")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["error"]["exit_code"] == 3


def test_help_imports_neither_torch_nor_azure() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from provision.cli import cli\n"
        "r = CliRunner().invoke(cli, ['--help'])\n"
        "assert r.exit_code == 0 and 'provision' in r.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'azure')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""CLI conventions of az and azd: global options anywhere, the project root found from a
subfolder, the default target, --version, NO_COLOR, an example in every --help."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from provision.cli import cli
from provision.targets import TARGET_NAMES
from tests.provision.standin_app import write_model_files, write_standin_app

LOCAL_ONLY = pytest.mark.skipif(
    "azure" in TARGET_NAMES, reason="checks the message for a build without the azure target"
)


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    environment: dict[str, str | None] = {"ACA_INFER_TARGET": None}  # None: unset
    environment.update(env or {})
    return CliRunner().invoke(cli, list(args), env=environment)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    write_standin_app(tmp_path)
    (tmp_path / "infra").mkdir()
    (tmp_path / "docs/deep").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "docs/deep")
    yield tmp_path
    invoke("--project-dir", str(tmp_path), "down", "--target", "local", "--purge", "--yes")


def _provision_local(project: Path) -> dict:
    result = invoke("provision", "--target", "local", "--output", "json")
    assert result.exit_code == 0, result.output
    write_model_files(project / ".aca-infer/local/share")
    value: dict = json.loads(result.stdout)
    return value


def test_global_options_after_the_subcommand_print_the_same_json(project: Path) -> None:
    _provision_local(project)
    first = invoke("deploy", "--target", "local", "--ready-timeout", "60")
    assert first.exit_code == 0, first.output

    after = invoke("deploy", "--target", "local", "--output", "json")
    before = invoke("--output", "json", "deploy", "--target", "local")

    assert after.exit_code == before.exit_code == 0
    assert json.loads(after.stdout) == json.loads(before.stdout)
    assert json.loads(after.stdout)["ready"]


def test_an_error_is_json_too_when_output_comes_last(project: Path) -> None:
    result = invoke("status", "--target", "local", "--output", "json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["error"]["exit_code"] == 3


def test_project_root_is_found_from_a_subfolder(project: Path) -> None:
    provisioned = _provision_local(project)
    assert provisioned["config_path"] == str(project / ".aca-infer/local/inference.config.json")
    keys = invoke("keys", "show", "--target", "local", "--output", "json")
    assert keys.exit_code == 0 and json.loads(keys.stdout)["primary"]


def test_a_project_dir_that_does_not_exist_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-project"
    result = invoke("--project-dir", str(missing), "status", "--target", "local")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: --project-dir {missing}: {missing} does not exist; pass the project's folder "
        "(the one holding infra/), or leave the option out to use the working directory's"
    ]


def test_target_defaults_to_the_one_this_project_last_provisioned(project: Path) -> None:
    _provision_local(project)
    status = invoke("status", "--output", "json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["target"] == "local"

    down = invoke("down", "--yes")
    assert down.exit_code == 0, down.output
    # After `down` the project has no target any more: the default is azure again.
    assert not (project / ".aca-infer/last-target").exists()


@LOCAL_ONLY
def test_default_target_azure_unavailable_is_one_line_exit_3(project: Path) -> None:
    result = invoke("status")
    assert result.exit_code == 3
    assert result.stderr.splitlines() == [
        "error: the azure target is not available in this version of aca-infer; "
        "pass --target local or set ACA_INFER_TARGET=local"
    ]


def test_target_from_the_environment(project: Path) -> None:
    _provision_local(project)
    (project / ".aca-infer/last-target").unlink()
    assert invoke("keys", "show", env={"ACA_INFER_TARGET": "local"}).exit_code == 0
    wrong = invoke("keys", "show", env={"ACA_INFER_TARGET": "moon"})
    assert wrong.exit_code == 2
    assert "ACA_INFER_TARGET='moon'" in wrong.stderr


def test_version_is_the_installed_distribution() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"aca-infer, version {metadata.version('aca-infer')}"


def test_no_color_keeps_escape_codes_out_of_progress(project: Path) -> None:
    colored = invoke("provision", "--target", "local", env={"FORCE_COLOR": "1"})
    plain = invoke("provision", "--target", "local", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    assert colored.exit_code == plain.exit_code == 0
    assert "\x1b[" in colored.stderr
    assert "\x1b[" not in plain.stderr and "wrote" in plain.stderr


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


@pytest.mark.parametrize("path", list(_commands(cli)), ids=" ".join)
def test_every_command_help_has_an_example_and_the_global_options(path: tuple[str, ...]) -> None:
    result = invoke(*path, "--help")
    assert result.exit_code == 0
    examples = result.stdout.split("Examples:", 1)[1]
    assert f"aca-infer {path[-1]}" in examples or f"aca-infer {' '.join(path)}" in examples
    assert all(option in result.stdout for option in ("--output", "--project-dir", "--debug"))

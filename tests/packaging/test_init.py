"""`aca-infer init [--eject]`: adds what is missing, never overwrites, recognises the AI
Toolkit's own template."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from provision import assets
from provision.cli import cli
from provision.parameters import read_parameters_file
from provision.template_params import load_declarations
from tests.infra import bicep_checks as checks
from tests.packaging.conftest import REPO

PARAMETERS = Path("infra/provision/inference.parameters.json")
AI_TOOLKIT_PARAMETERS = REPO / "tests/infra/fixtures/ai_toolkit_inference.parameters.json"
# The shape of the AI Toolkit's inference.bicep: no API keys, probes on its UI page.
AI_TOOLKIT_BICEP = """\
param defaultCommands array
param maximumInstanceCount int
param location string = resourceGroup().location
param acaAppName string = 'aiacaapp${substring(uniqueString(resourceGroup().id), 0, 5)}'

resource acaApp 'Microsoft.App/containerApps@2023-11-02-preview' = {
  name: acaAppName
  location: location
  properties: {
    template: {
      containers: [
        {
          probes: [ { type: 'Liveness', httpGet: { path: '/', port: 7860 } } ]
        }
      ]
    }
  }
}
"""


def init(project: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--project-dir", str(project), "init", *args])


def _tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def ai_toolkit_project(tmp_path: Path) -> Path:
    (tmp_path / "infra/provision").mkdir(parents=True)
    shutil.copyfile(AI_TOOLKIT_PARAMETERS, tmp_path / PARAMETERS)
    (tmp_path / "infra/provision/inference.bicep").write_text(AI_TOOLKIT_BICEP)
    (tmp_path / "infra/finetuning.config.json").write_text('{"RESOURCE_GROUP_NAME": "rg"}')
    return tmp_path


def test_empty_folder_gets_every_parameter_with_its_meaning(tmp_path: Path) -> None:
    result = init(tmp_path)

    assert result.exit_code == 0, result.output
    assert f"Created {PARAMETERS}" in result.stdout
    document = json.loads((tmp_path / PARAMETERS).read_text())
    declared = load_declarations(assets.packaged_templates_dir() / "inference.bicep")
    assert list(document["parameters"]) == [p.name for p in declared.values() if not p.secure]
    for name, entry in document["parameters"].items():
        assert entry["value"] is None, name
        assert entry["metadata"]["description"].startswith(("Optional.", "Required.")), name
    defaults = {
        name: entry["metadata"].get("default") for name, entry in document["parameters"].items()
    }
    assert defaults["modelPath"] == "model-cache/microsoft/Phi-3-mini-4k-instruct"
    assert defaults["maximumInstanceCount"] == 1
    assert defaults["location"] == "resourceGroup().location"  # an expression, as written
    # The file fits the template by the same checks as the repository's own parameters file.
    main = checks.parse_file(checks.MAIN_TEMPLATE)
    assert checks.check_parameters_file(main, document) == []
    assert read_parameters_file(tmp_path / PARAMETERS, {}) == dict.fromkeys(document["parameters"])
    assert (tmp_path / ".gitignore").read_text() == ".aca-infer/\n"


def test_second_init_changes_nothing(tmp_path: Path) -> None:
    assert init(tmp_path, "--eject").exit_code == 0
    tree = _tree(tmp_path)

    again = init(tmp_path, "--eject")

    assert again.exit_code == 0
    assert again.stdout.startswith(f"Nothing to add in {tmp_path}.")
    assert _tree(tmp_path) == tree


def test_gitignore_is_appended_to_never_rewritten(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.log\n/outputs")

    result = init(tmp_path)

    assert "Updated .gitignore (+ .aca-infer/)" in result.stdout
    assert (tmp_path / ".gitignore").read_text() == "*.log\n/outputs\n.aca-infer/\n"


def test_ai_toolkit_files_are_kept_and_its_template_is_passed_over(
    ai_toolkit_project: Path,
) -> None:
    before = _tree(ai_toolkit_project)

    result = init(ai_toolkit_project)

    assert result.exit_code == 0
    assert f"Kept {PARAMETERS}" in result.stdout
    assert {k: v for k, v in _tree(ai_toolkit_project).items() if k != ".gitignore"} == before
    template_notes = [
        line for line in result.stdout.splitlines() if "AI Toolkit's template" in line
    ]
    assert len(template_notes) == 1 and "aca-infer init --eject" in template_notes[0]
    chosen = assets.templates(ai_toolkit_project)
    assert chosen.source == "packaged" and chosen.note is not None
    assert chosen.main == assets.packaged_templates_dir() / "inference.bicep"


def test_eject_writes_our_templates_which_then_win(tmp_path: Path) -> None:
    result = init(tmp_path, "--eject")

    assert result.exit_code == 0, result.output
    ejected = tmp_path / "infra/provision"
    assert {p.relative_to(ejected) for p in ejected.rglob("*.bicep")} == set(
        assets.packaged_template_files()
    )
    assert (ejected / "modules/app.bicep").read_bytes() == (
        assets.packaged_templates_dir() / "modules/app.bicep"
    ).read_bytes()
    assert assets.templates(tmp_path) == assets.Templates(ejected, "project")


def test_eject_over_the_ai_toolkit_template_changes_nothing(ai_toolkit_project: Path) -> None:
    before = _tree(ai_toolkit_project)

    result = init(ai_toolkit_project, "--eject")

    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1
    assert "move it aside" in result.stderr
    assert _tree(ai_toolkit_project) == before


def test_provision_says_once_that_the_ai_toolkit_template_is_not_used(
    ai_toolkit_project: Path,
) -> None:
    runner = CliRunner()
    base = ["--project-dir", str(ai_toolkit_project)]
    try:
        result = runner.invoke(cli, [*base, "provision", "--target", "local"])
        assert result.exit_code == 0, result.output
        notes = [line for line in result.stderr.splitlines() if "AI Toolkit's template" in line]
        assert len(notes) == 1 and "aca-infer init --eject" in notes[0]
    finally:
        runner.invoke(cli, [*base, "down", "--target", "local", "--purge", "--yes"])

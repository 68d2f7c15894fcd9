"""provision/assets.py decides where the templates, the server package and the bootstrap come
from: the project's own copy wins, else what ships with aca-infer."""

from __future__ import annotations

from pathlib import Path

import pytest

from provision import assets
from provision.deploy import DeploySettings
from provision.errors import InputError
from tests.packaging.conftest import REPO
from tests.provision.standin_app import write_standin_app


def test_in_a_checkout_the_packaged_copies_are_the_checkout_folders() -> None:
    # An editable install has no provision/bundled/: the sources are the bundle.
    assert assets.packaged_templates_dir() == REPO / "infra/provision"
    assert assets.packaged_app_dir() == REPO / "inference_app"
    assert assets.bootstrap_source() == (REPO / "provision/share_files/bootstrap.py").read_bytes()
    assert Path("inference.bicep") in assets.packaged_template_files()
    assert Path("modules/app.bicep") in assets.packaged_template_files()


def test_app_dir_prefers_the_option_then_the_project_then_the_packaged(tmp_path: Path) -> None:
    assert assets.app_dir(tmp_path) == assets.packaged_app_dir()
    own = write_standin_app(tmp_path)
    assert assets.app_dir(tmp_path) == own
    custom = write_standin_app(tmp_path / "custom")
    assert assets.app_dir(tmp_path, tmp_path / "custom" / "inference_app") == custom


def test_an_app_dir_without_a_package_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"--app-dir .*missing __main__\.py"):
        DeploySettings(source_dir=assets.app_dir(tmp_path, tmp_path))


def test_a_project_without_templates_uses_the_packaged_ones(tmp_path: Path) -> None:
    assert assets.templates(tmp_path) == assets.Templates(
        assets.packaged_templates_dir(), "packaged"
    )


def test_only_a_container_app_without_keys_or_our_probes_is_the_ai_toolkit_template(
    tmp_path: Path,
) -> None:
    own = tmp_path / "infra/provision/inference.bicep"
    own.parent.mkdir(parents=True)
    app = "resource app 'Microsoft.App/containerApps@2025-07-01' = {\n  name: 'x'\n}\n"
    own.write_text(f"param defaultCommands array\n{app}")
    assert assets.templates(tmp_path).source == "packaged"
    own.write_text(f"@secure()\nparam apiKeyPrimary string\n{app}")
    assert assets.templates(tmp_path) == assets.Templates(own.parent, "project")
    own.write_text("param replicas int = 2\n")  # a template of the project's own making
    assert assets.templates(tmp_path).source == "project"

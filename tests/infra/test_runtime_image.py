"""The template's runtime parameters agree with the code that relies on them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from inference_app.settings import QUANTIZATIONS
from provision.cli import cli
from provision.wheelhouse import DEFAULT_IMAGE, platform_for_image
from tests.infra import bicep_checks as checks

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def test_the_default_image_is_public_pinned_by_digest_and_known_to_deploy() -> None:
    main = checks.parse_file(checks.MAIN_TEMPLATE)
    image = main.params["containerImage"]["default"]

    assert image == DEFAULT_IMAGE
    assert DIGEST.search(image)
    assert image.startswith("docker.io/pytorch/pytorch:")  # pulled without credentials
    assert platform_for_image(image) is not None  # deploy brings the wheels for it


def test_quantization_is_declared_with_the_values_the_server_accepts() -> None:
    main = checks.parse_file(checks.MAIN_TEMPLATE)
    app = checks.parse_file(checks.PROVISION_DIR / "modules/app.bicep")

    for template in (main, app):
        assert tuple(checks.decorator(template.params["quantization"], "allowed")) == QUANTIZATIONS
    assert main.params["quantization"]["default"] == "none"
    assert "name: 'ACA_INFER_QUANTIZATION'" in app.source
    assert "value: quantization" in app.source


@pytest.mark.parametrize("value", ["3bit", "int8", ""])
def test_provision_refuses_an_unknown_quantization_with_exit_2(tmp_path: Path, value: str) -> None:
    arguments = ["--project-dir", str(tmp_path), "provision", "--target", "local"]
    result = CliRunner().invoke(cli, [*arguments, "--set", f"quantization={value}"])

    assert result.exit_code == 2
    assert "quantization" in result.stderr and '"none", "8bit", "4bit"' in result.stderr
    assert not (tmp_path / ".aca-infer/local/inference.config.json").exists()

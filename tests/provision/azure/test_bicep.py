"""Finding the Bicep CLI: PATH, ~/.azure/bin, ~/.azd/bin, `az bicep build`, else exit 3."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from provision.azure.bicep import bicep_command, compile_template
from provision.errors import InputError, PrerequisiteError

COMPILER = f"""#!{sys.executable}
import json, sys
if "fail" in sys.argv[-1]:
    print(sys.argv[-1] + "(3,7) : Error BCP018: Expected the ')' character.", file=sys.stderr)
    sys.exit(1)
print(json.dumps({{"argv": sys.argv[1:], "tool": sys.argv[0]}}))
"""


def tool(folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(COMPILER)
    path.chmod(0o755)
    return path


def test_bicep_on_path_comes_first(tmp_path: Path) -> None:
    on_path = tool(tmp_path / "bin", "bicep")
    tool(tmp_path / "home/.azure/bin", "bicep")
    environ = {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path / "home")}
    assert bicep_command(environ) == [str(on_path), "build", "--stdout"]


@pytest.mark.parametrize("folder", [".azure/bin", ".azd/bin"])
def test_bicep_where_az_and_azd_install_it(tmp_path: Path, folder: str) -> None:
    installed = tool(tmp_path / "home" / folder, "bicep")
    environ = {"PATH": str(tmp_path / "empty"), "HOME": str(tmp_path / "home")}
    assert bicep_command(environ)[0] == str(installed)


def test_az_bicep_build_when_no_bicep_binary(tmp_path: Path) -> None:
    az = tool(tmp_path / "bin", "az")
    environ = {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path / "home")}
    compiled = compile_template(tmp_path / "inference.bicep", environ)
    assert compiled["tool"] == str(az)
    assert compiled["argv"][:4] == ["bicep", "build", "--stdout", "--file"]


def test_no_bicep_at_all_is_exit_3_with_the_install_command(tmp_path: Path) -> None:
    environ = {"PATH": str(tmp_path / "empty"), "HOME": str(tmp_path / "home")}
    with pytest.raises(PrerequisiteError, match="az bicep install") as raised:
        bicep_command(environ)
    assert raised.value.exit_code == 3


def test_a_template_that_does_not_compile_is_one_line(tmp_path: Path) -> None:
    tool(tmp_path / "bin", "bicep")
    environ = {"PATH": str(tmp_path / "bin"), "HOME": str(tmp_path / "home")}
    with pytest.raises(InputError, match=r"does not compile: .*BCP018") as raised:
        compile_template(tmp_path / "fail.bicep", environ)
    assert "\n" not in str(raised.value)

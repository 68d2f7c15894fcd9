"""Finding the Bicep CLI and compiling the template to ARM JSON.

The Bicep CLI is in no package registry; it is found on PATH, where `az bicep install` and azd
put it (~/.azure/bin, ~/.azd/bin), or reached through `az bicep build`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from provision.errors import InputError, PrerequisiteError

INSTALL = (
    "install the Bicep CLI with `az bicep install` "
    "(or see https://learn.microsoft.com/azure/azure-resource-manager/bicep/install)"
)


def bicep_command(environ: Mapping[str, str]) -> list[str]:
    """The command that compiles a file to stdout, ending where the file name goes."""
    path = environ.get("PATH", "")
    found = shutil.which("bicep", path=path)
    if found:
        return [found, "build", "--stdout"]
    home = Path(environ.get("HOME", str(Path.home())))
    for folder in (home / ".azure" / "bin", home / ".azd" / "bin"):
        candidate = shutil.which("bicep", path=str(folder))
        if candidate:
            return [candidate, "build", "--stdout"]
    az = shutil.which("az", path=path)
    if az:
        return [az, "bicep", "build", "--stdout", "--file"]
    raise PrerequisiteError(f"no Bicep CLI found (PATH, ~/.azure/bin, ~/.azd/bin, az): {INSTALL}")


def compile_template(template: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    command = [*bicep_command(environ), str(template)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, env=dict(environ), timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise PrerequisiteError(f"{command[0]} could not compile {template}: {error}") from error
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "Error" in line or "error" in line]
        first = (errors or done.stderr.strip().splitlines() or ["no message"])[0]
        raise InputError(f"{template} does not compile: {first.strip()}")
    try:
        compiled: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError as error:
        raise PrerequisiteError(
            f"{command[0]} printed no ARM JSON for {template}: {error.msg}"
        ) from error
    return compiled

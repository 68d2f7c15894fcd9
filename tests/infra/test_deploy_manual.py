"""scripts/deploy_manual.sh against a stand-in `az` that records its calls and answers like the
real CLI: the config file it writes, what reaches az, and that keys never reach the output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.infra.bicep_checks import PARAMETERS_FILE, REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "deploy_manual.sh"
PRIMARY = "primary-key-for-tests-0123456789"
SECONDARY = "secondary-key-for-tests-0123456789"
OUTPUTS = {
    "SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
    "RESOURCE_GROUP_NAME": "rg-infer",
    "STORAGE_ACCOUNT_NAME": "stinferabc",
    "FILE_SHARE_NAME": "aca-infer",
    "ACA_APP_NAME": "ca-infer-abc",
    "ACA_APP_ENDPOINT": "https://ca-infer-abc.example.azurecontainerapps.io",
    "LOCATION": "swedencentral",
}
FAKE_AZ = f"""#!{sys.executable}
import json, os, sys
arguments = sys.argv[1:]
files = {{a: json.load(open(a[1:])) for a in arguments if a.startswith("@")}}
with open(os.environ["FAKE_AZ_LOG"], "a") as log:
    log.write(json.dumps({{"args": arguments, "files": files}}) + "\\n")
if arguments[:3] == ["deployment", "group", "create"]:
    if os.environ.get("FAKE_AZ_FAIL"):
        print("ERROR: InvalidTemplateDeployment", file=sys.stderr)
        sys.exit(1)
    outputs = json.loads(os.environ["FAKE_AZ_OUTPUTS"])
    print(json.dumps({{k: {{"type": "String", "value": v}} for k, v in outputs.items()}}))
"""


@pytest.fixture
def fake_az(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(FAKE_AZ)
    az.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_AZ_LOG": str(tmp_path / "az.log"),
        "FAKE_AZ_OUTPUTS": json.dumps(OUTPUTS),
        "ACA_INFER_API_KEY_PRIMARY": PRIMARY,
        "ACA_INFER_API_KEY_SECONDARY": SECONDARY,
    }


def run_script(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def az_calls(env: dict[str, str]) -> list[dict[str, Any]]:
    log = Path(env["FAKE_AZ_LOG"])
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_deploy_writes_config_from_outputs(fake_az: dict[str, str], tmp_path: Path) -> None:
    config = tmp_path / "inference.config.json"

    completed = run_script(
        fake_az,
        "-g",
        "rg-infer",
        "-l",
        "swedencentral",
        "-o",
        str(config),
        "minimumInstanceCount=1",
    )

    assert completed.returncode == 0, completed.stderr
    assert json.loads(config.read_text()) == OUTPUTS
    assert OUTPUTS["ACA_APP_ENDPOINT"] in completed.stderr
    group, deployment = az_calls(fake_az)
    assert group["args"][:2] == ["group", "create"]
    assert deployment["args"][:3] == ["deployment", "group", "create"]
    arguments = deployment["args"]
    assert arguments[arguments.index("minimumInstanceCount=1") - 1] == "--parameters"


def test_nulls_are_dropped_and_keys_travel_in_a_file(
    fake_az: dict[str, str], tmp_path: Path
) -> None:
    completed = run_script(fake_az, "-g", "rg-infer", "-o", str(tmp_path / "config.json"))

    assert completed.returncode == 0, completed.stderr
    (deployment,) = az_calls(fake_az)
    sent: dict[str, Any] = {}
    for document in deployment["files"].values():
        sent.update(document["parameters"])
    file_values = json.loads(PARAMETERS_FILE.read_text())["parameters"]
    assert set(sent) == {n for n, e in file_values.items() if e["value"] is not None} | {
        "apiKeyPrimary",
        "apiKeySecondary",
    }
    assert sent["apiKeyPrimary"] == {"value": PRIMARY}
    assert PRIMARY not in " ".join(deployment["args"])
    assert PRIMARY not in completed.stdout + completed.stderr
    assert SECONDARY not in completed.stdout + completed.stderr


def test_failed_deployment_exits_4_and_keeps_old_config(
    fake_az: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "inference.config.json"
    config.write_text('{"ACA_APP_NAME": "previous"}\n')

    completed = run_script({**fake_az, "FAKE_AZ_FAIL": "1"}, "-g", "rg", "-o", str(config))

    assert completed.returncode == 4
    assert "deployment aca-infer-inference failed" in completed.stderr
    assert json.loads(config.read_text()) == {"ACA_APP_NAME": "previous"}


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ((), "-g RESOURCE_GROUP is required (see -h)"),
        (
            ("-g", "rg", "-p", "/nonexistent.json"),
            "parameters file /nonexistent.json not found (-p)",
        ),
        (
            ("-g", "rg", "minimumInstanceCount"),
            "override 'minimumInstanceCount' must be NAME=VALUE",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(
    fake_az: dict[str, str], arguments: tuple[str, ...], expected: str
) -> None:
    completed = run_script(fake_az, *arguments)

    assert completed.returncode == 2
    assert completed.stderr.strip().splitlines() == [f"deploy_manual: {expected}"]
    assert az_calls(fake_az) == []


@pytest.mark.skipif(
    shutil.which("az", path="/usr/bin:/bin") is not None, reason="a real az is installed"
)
def test_missing_az_exits_3(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin"}

    completed = run_script(env, "-g", "rg")

    assert completed.returncode == 3
    assert "the az CLI is not installed" in completed.stderr

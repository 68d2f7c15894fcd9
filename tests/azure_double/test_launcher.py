"""The launcher's contract, the stand-in tools on its PATH, and that nothing leaves loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.azure_double.api_versions import REPO_ROOT, TEMPLATE_DIR
from tests.azure_double.sdk import resources_client, storage_client, use_double_env
from tests.azure_double.server import AzureDouble

ENV_KEYS = {
    "ACA_INFER_ARM_ENDPOINT",
    "ACA_INFER_LOGS_ENDPOINT",
    "AZURE_SUBSCRIPTION_ID",
    "AZURE_TENANT_ID",
    "AZURE_TOKEN_CREDENTIALS",
    "AZURE_CONFIG_DIR",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "PATH",
}


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, object]]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.azure_double", "serve", "--state", str(tmp_path / "state")],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = json.loads(process.stdout.readline())
        yield process, line
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def test_serve_prints_one_json_line_whose_env_points_the_sdks_at_it(
    launched: tuple[subprocess.Popen[str], dict[str, object]], tmp_path: Path
) -> None:
    _, line = launched
    env = line["env"]
    assert isinstance(env, dict)
    assert set(env) == ENV_KEYS
    assert env["ACA_INFER_ARM_ENDPOINT"] == line["arm_endpoint"]
    assert env["AZURE_SUBSCRIPTION_ID"] == line["subscription_id"]
    assert env["REQUESTS_CA_BUNDLE"] == env["SSL_CERT_FILE"] == line["ca_bundle"]
    assert env["AZURE_TOKEN_CREDENTIALS"] == "dev"
    assert Path(str(line["state_dir"])) == tmp_path / "state"

    # A fresh process with only that environment drives the double with the real SDK.
    script = textwrap.dedent(
        """
        import os
        from azure.identity import DefaultAzureCredential
        from azure.mgmt.resource.resources import ResourceManagementClient
        endpoint = os.environ["ACA_INFER_ARM_ENDPOINT"]
        client = ResourceManagementClient(
            DefaultAzureCredential(), os.environ["AZURE_SUBSCRIPTION_ID"],
            base_url=endpoint, credential_scopes=[endpoint + "/.default"])
        print(client.resource_groups.create_or_update("rg-cli", {"location": "eastus"}).name)
        """
    )
    ran = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (ran.returncode, ran.stdout.strip()) == (0, "rg-cli"), ran.stderr

    requests = httpx.get(
        f"{line['arm_endpoint']}/_double/requests",
        verify=ssl.create_default_context(cafile=str(line["ca_bundle"])),
    ).json()
    assert [(r["method"], r["status"]) for r in requests] == [("PUT", 201)]


def test_sigterm_stops_the_double(
    launched: tuple[subprocess.Popen[str], dict[str, object]],
) -> None:
    process, line = launched
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(
            f"{line['arm_endpoint']}/_double/requests",
            verify=ssl.create_default_context(cafile=str(line["ca_bundle"])),
        )


@pytest.fixture
def double_env(azure_double: AzureDouble) -> Iterator[AzureDouble]:
    with use_double_env(azure_double):
        yield azure_double


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, check=False)


def test_stand_in_az_answers_the_calls_the_credential_chain_and_cli_make(
    double_env: AzureDouble,
) -> None:
    assert shutil.which("az") == str(double_env.state_dir / "bin" / "az")
    token = _run(
        "az",
        "account",
        "get-access-token",
        "--output",
        "json",
        "--resource",
        "https://management.azure.com/",
    )
    assert token.returncode == 0, token.stderr
    document = json.loads(token.stdout)
    assert {"accessToken", "expiresOn", "expires_on", "tenant", "subscription", "tokenType"} <= set(
        document
    )
    assert document["tenant"] == double_env.tenant_id
    shown = json.loads(_run("az", "account", "show").stdout)
    assert (shown["id"], shown["tenantId"]) == (double_env.subscription_id, double_env.tenant_id)
    # As after `az login`: the profile names the default subscription (with az's byte-order mark).
    profile = Path(double_env.env["AZURE_CONFIG_DIR"]) / "azureProfile.json"
    (account,) = json.loads(profile.read_text(encoding="utf-8-sig"))["subscriptions"]
    assert account == shown
    other_tenant = _run("az", "account", "get-access-token", "--tenant", "elsewhere")
    assert other_tenant.returncode == 1
    assert "Tenant 'elsewhere' not found" in other_tenant.stderr
    unknown = _run("az", "vm", "list")
    assert unknown.returncode == 2


def test_stand_in_bicep_emits_the_templates_parameters_and_outputs(
    double_env: AzureDouble, tmp_path: Path
) -> None:
    built = _run("bicep", "build", str(TEMPLATE_DIR / "inference.bicep"), "--stdout")
    assert built.returncode == 0, built.stderr
    template = json.loads(built.stdout)
    parameters = template["parameters"]
    assert parameters["gpuProfileType"]["allowedValues"][-1] == "Consumption"
    assert parameters["apiKeyPrimary"] == {
        "type": "securestring",
        "minLength": 16,
        "metadata": parameters["apiKeyPrimary"]["metadata"],
    }
    assert (
        parameters["maximumInstanceCount"]["minValue"],
        parameters["maximumInstanceCount"]["maxValue"],
    ) == (1, 30)
    assert parameters["location"]["defaultValue"] == "[resourceGroup().location]"
    assert template["outputs"]["FILE_SHARE_NAME"] == {"type": "string", "value": "[fileShareName]"}

    via_az = _run(
        "az",
        "bicep",
        "build",
        "--file",
        str(TEMPLATE_DIR / "inference.bicep"),
        "--outfile",
        str(tmp_path / "main.json"),
    )
    assert via_az.returncode == 0, via_az.stderr
    assert json.loads((tmp_path / "main.json").read_text()) == template

    broken = tmp_path / "broken.bicep"
    broken.write_text("param = oops\n")
    failed = _run("bicep", "build", str(broken))
    assert failed.returncode == 1
    assert str(broken) in failed.stderr
    assert not (tmp_path / "broken.json").exists()


def _loopback(url: str) -> bool:
    return urlsplit(url).hostname in ("127.0.0.1", "localhost")


def test_every_listener_and_every_url_the_double_hands_out_is_loopback(
    double_env: AzureDouble,
) -> None:
    assert {listener.host for listener in double_env._listeners} == {"127.0.0.1"}
    assert _loopback(double_env.arm_endpoint)
    resources_client(double_env).resource_groups.create_or_update("rg", {"location": "eastus"})
    account = (
        storage_client(double_env)
        .storage_accounts.begin_create(
            "rg",
            "stloop",
            {"location": "eastus", "kind": "StorageV2", "sku": {"name": "Standard_LRS"}},
        )
        .result()
    )
    assert _loopback(account.primary_endpoints.file)
    handed_out = double_env.internal_request(
        "DELETE",
        f"/subscriptions/{double_env.subscription_id}/resourcegroups/rg",
        "2025-04-01",
        None,
    )
    assert handed_out.status == 202
    assert _loopback(handed_out.headers["Location"])
    assert all(_loopback(value) for key, value in double_env.env.items() if "://" in value)


def _no_network_namespace() -> list[str] | None:
    """A command prefix that runs in a fresh network namespace holding only loopback."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    probe = _run("unshare", "-rn", "sh", "-c", "ip link set lo up")
    return ["unshare", "-rn"] if probe.returncode == 0 else None


def test_the_double_and_the_sdks_work_with_no_network_but_loopback(tmp_path: Path) -> None:
    prefix = _no_network_namespace()
    if prefix is None:
        pytest.skip("this machine cannot create a network namespace (unshare -rn)")
    script = tmp_path / "offline.py"
    script.write_text(
        textwrap.dedent(
            """
            from tests.azure_double.sdk import resources_client, storage_client, use_double_env
            from tests.azure_double.server import AzureDouble

            with AzureDouble() as double, use_double_env(double):
                double.retry_after_s = 0
                groups = resources_client(double).resource_groups
                groups.create_or_update("rg", {"location": "eastus"})
                account = storage_client(double).storage_accounts.begin_create(
                    "rg", "stoffline",
                    {"location": "eastus", "kind": "StorageV2", "sku": {"name": "Standard_LRS"}},
                ).result()
                print(account.primary_endpoints.file)
            """
        )
    )
    ran = subprocess.run(
        [*prefix, "sh", "-c", f'ip link set lo up && exec "{sys.executable}" "{script}"'],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert _loopback(ran.stdout.strip())

"""The Azure half of `aca-infer doctor`: the Bicep CLI, the sign-in (the real credential chain,
AZURE_TOKEN_CREDENTIALS=dev, a short timeout) and the resource providers the templates need.

`ACA_INFER_ARM_ENDPOINT` points the checks at another ARM endpoint (a sovereign cloud, or the
Azure double in tests)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from provision.doctor import Check
from provision.fsutil import read_json

ARM_ENDPOINT = "https://management.azure.com"
PROVIDERS = ("Microsoft.App", "Microsoft.OperationalInsights", "Microsoft.Storage")
TIMEOUT_SECONDS = 15


def _bicep() -> Check:
    found = shutil.which("bicep") or str(Path.home() / ".azure/bin/bicep")
    fix = "install it: az bicep install (or https://aka.ms/bicep-install)"
    if not Path(found).is_file():
        return Check("Bicep CLI", False, "not found on PATH nor in ~/.azure/bin", fix)
    try:
        out = subprocess.run(
            [found, "--version"], capture_output=True, text=True, timeout=TIMEOUT_SECONDS
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return Check("Bicep CLI", False, f"{found} does not run ({type(error).__name__})", fix)
    if out.returncode != 0:
        return Check("Bicep CLI", False, f"{found} --version failed", fix)
    return Check("Bicep CLI", True, out.stdout.strip().splitlines()[0])


def _subscription(config_path: Path) -> str | None:
    if os.environ.get("AZURE_SUBSCRIPTION_ID"):
        return os.environ["AZURE_SUBSCRIPTION_ID"]
    if config_path.is_file():
        value = read_json(config_path).get("AZURE_SUBSCRIPTION_ID")
        return str(value) if value else None
    return None


def azure_checks(config_path: Path) -> list[Check]:
    os.environ["AZURE_TOKEN_CREDENTIALS"] = "dev"  # developer sign-ins only, never a probe of IMDS
    from azure.core.exceptions import AzureError
    from azure.identity import CredentialUnavailableError, DefaultAzureCredential

    arm = os.environ.get("ACA_INFER_ARM_ENDPOINT", ARM_ENDPOINT).rstrip("/")
    checks = [_bicep()]
    credential = DefaultAzureCredential(process_timeout=TIMEOUT_SECONDS)
    try:
        credential.get_token(f"{arm}/.default")
    except (CredentialUnavailableError, AzureError) as error:
        detail = str(error).splitlines()[0][:160]
        checks.append(Check("Azure sign-in", False, detail, "sign in: az login"))
        return checks
    checks.append(Check("Azure sign-in", True, "a token for Azure Resource Manager"))
    subscription = _subscription(config_path)
    if subscription is None:
        checks.append(
            Check(
                "Subscription",
                False,
                "none chosen",
                "set AZURE_SUBSCRIPTION_ID, or provision with it",
            )
        )
        return checks
    checks.append(Check("Subscription", True, subscription))
    checks += _providers(credential, subscription, arm)
    return checks


def _providers(credential: Any, subscription: str, arm: str) -> list[Check]:
    from azure.core.exceptions import AzureError
    from azure.mgmt.resource.resources import ResourceManagementClient

    client = ResourceManagementClient(
        credential,
        subscription,
        base_url=arm,
        credential_scopes=[f"{arm}/.default"],
        retry_total=1,
        timeout=TIMEOUT_SECONDS,
    )
    checks = []
    for namespace in PROVIDERS:
        try:
            state = client.providers.get(namespace).registration_state
        except AzureError as error:
            message = str(error).splitlines()[0][:160]
            checks.append(Check(f"Provider {namespace}", False, message, "check the subscription"))
            continue
        ok = state == "Registered"
        fix = "" if ok else f"az provider register --namespace {namespace}"
        checks.append(Check(f"Provider {namespace}", ok, str(state), fix))
    return checks

"""The stand-in `az` and `bicep` the double puts first on PATH, and the environment (`env`) that
points the aca-infer CLI and the SDKs at the double.

The scripts run with the interpreter that runs the double (`sys.executable` shebang) and read the
double's identity (tenant, subscription, token signing key) from `<state_dir>/double.json`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.azure_double.api_versions import REPO_ROOT
from tests.azure_double.auth import issue_token

if TYPE_CHECKING:
    from tests.azure_double.server import AzureDouble

IDENTITY_FILE = "double.json"
USER_OBJECT_ID = "00000000-0000-0000-0000-00000000d0b1"
USER_NAME = "developer@double.invalid"

_SCRIPT = """#!{python}
# Stand-in `{tool}` of the aca-infer Azure double (tests/azure_double/tools.py).
import sys

sys.path.insert(0, {repo!r})
from tests.azure_double.tools import {entry}

sys.exit({entry}(sys.argv[1:], {identity!r}))
"""


def install(double: AzureDouble) -> dict[str, str]:
    """Write double.json and bin/{az,bicep} under the state dir; return the environment."""
    identity = double.state_dir / IDENTITY_FILE
    identity.touch(mode=0o600)
    identity.write_text(
        json.dumps(
            {
                "tenant_id": double.tenant_id,
                "subscription_id": double.subscription_id,
                "signing_key": double.signing_key,
                "arm_endpoint": double.arm_endpoint,
            }
        )
    )
    bin_dir = double.state_dir / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool, entry in (("az", "az_main"), ("bicep", "bicep_main")):
        script = bin_dir / tool
        script.write_text(
            _SCRIPT.format(
                python=sys.executable,
                tool=tool,
                repo=str(REPO_ROOT),
                entry=entry,
                identity=str(identity),
            )
        )
        script.chmod(0o755)
    config_dir = double.state_dir / "azure-config"
    config_dir.mkdir(exist_ok=True)
    # What `az login` leaves behind; az writes it with a byte-order mark.
    (config_dir / "azureProfile.json").write_text(
        json.dumps({"installationId": str(uuid.uuid4()), "subscriptions": [_account(identity)]}),
        encoding="utf-8-sig",
    )
    return {
        "ACA_INFER_ARM_ENDPOINT": double.arm_endpoint,
        "ACA_INFER_LOGS_ENDPOINT": double.arm_endpoint,
        "AZURE_SUBSCRIPTION_ID": double.subscription_id,
        "AZURE_TENANT_ID": double.tenant_id,
        "AZURE_TOKEN_CREDENTIALS": "dev",
        "AZURE_CONFIG_DIR": str(config_dir),
        "REQUESTS_CA_BUNDLE": str(double.ca_bundle),
        "SSL_CERT_FILE": str(double.ca_bundle),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def _identity(path: str) -> dict[str, Any]:
    return dict(json.loads(Path(path).read_text()))


def _account(identity: Path | str) -> dict[str, Any]:
    """The signed-in account, as `az account show` prints it and azureProfile.json keeps it."""
    known = _identity(str(identity))
    return {
        "environmentName": "AzureCloud",
        "homeTenantId": known["tenant_id"],
        "id": known["subscription_id"],
        "isDefault": True,
        "managedByTenants": [],
        "name": "aca-infer Azure double",
        "state": "Enabled",
        "tenantId": known["tenant_id"],
        "user": {"name": USER_NAME, "type": "user"},
    }


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _resource_of_scope(scope: str) -> str:
    return scope[: -len("/.default")] if scope.endswith("/.default") else scope


def az_main(argv: list[str], identity_path: str) -> int:
    """`az account get-access-token`, `az account show`, `az bicep build|version`."""
    identity = _identity(identity_path)
    if argv[:2] == ["account", "get-access-token"]:
        parser = argparse.ArgumentParser(prog="az account get-access-token")
        parser.add_argument("--output", "-o", default="json")
        parser.add_argument("--resource", default="https://management.core.windows.net/")
        parser.add_argument("--scope", "--scopes", nargs="*")
        parser.add_argument("--tenant", "-t")
        parser.add_argument("--subscription")
        options = parser.parse_args(argv[2:])
        if options.tenant and options.tenant != identity["tenant_id"]:
            print(
                f"ERROR: AADSTS90002: Tenant '{options.tenant}' not found. The signed-in "
                "account has no access to it.",
                file=sys.stderr,
            )
            return 1
        audience = _resource_of_scope(options.scope[0]) if options.scope else options.resource
        token, expires_on = issue_token(
            identity["signing_key"], identity["tenant_id"], audience, USER_OBJECT_ID
        )
        local_expiry = datetime.datetime.fromtimestamp(expires_on)
        _print_json(
            {
                "accessToken": token,
                "expiresOn": local_expiry.strftime("%Y-%m-%d %H:%M:%S.%f"),
                "expires_on": expires_on,
                "subscription": identity["subscription_id"],
                "tenant": identity["tenant_id"],
                "tokenType": "Bearer",
            }
        )
        return 0
    if argv[:2] == ["account", "show"]:
        _print_json(_account(identity_path))
        return 0
    if argv[:1] == ["bicep"]:
        if argv[1:2] == ["version"]:
            return bicep_main(["--version"], identity_path)
        if argv[1:2] == ["build"]:
            parser = argparse.ArgumentParser(prog="az bicep build")
            parser.add_argument("--file", "-f", required=True)
            parser.add_argument("--outfile")
            parser.add_argument("--outdir")
            parser.add_argument("--stdout", action="store_true")
            options = parser.parse_args(argv[2:])
            forwarded = [options.file]
            if options.stdout:
                forwarded.append("--stdout")
            elif options.outfile:
                forwarded += ["--outfile", options.outfile]
            elif options.outdir:
                forwarded += ["--outdir", options.outdir]
            return bicep_main(["build", *forwarded], identity_path)
    print(
        f"ERROR: 'az {' '.join(argv)}' is not something the Azure double stands in for.",
        file=sys.stderr,
    )
    return 2


def bicep_main(argv: list[str], identity_path: str) -> int:
    """`bicep build <file> [--stdout | --outfile F | --outdir D]`, `bicep --version`."""
    from tests.azure_double.bicep_arm import BicepCompileError, compile_file

    if argv[:1] in (["--version"], ["-v"]):
        print("Bicep CLI version 0.0.0 (aca-infer Azure double stand-in)")
        return 0
    if argv[:1] != ["build"]:
        print(
            f"Error: 'bicep {' '.join(argv)}' is not something the stand-in does.", file=sys.stderr
        )
        return 2
    parser = argparse.ArgumentParser(prog="bicep build")
    parser.add_argument("file")
    parser.add_argument("--outfile")
    parser.add_argument("--outdir")
    parser.add_argument("--stdout", action="store_true")
    options = parser.parse_args(argv[1:])
    source = Path(options.file)
    try:
        template = compile_file(source)
    except (BicepCompileError, OSError) as error:
        print(f"{source}: Error: {error}", file=sys.stderr)
        return 1
    text = json.dumps(template, indent=2) + "\n"
    if options.stdout:
        sys.stdout.write(text)
        return 0
    target = (
        Path(options.outfile)
        if options.outfile
        else Path(options.outdir or source.parent) / (source.stem + ".json")
    )
    target.write_text(text)
    return 0

"""`aca-infer doctor`: every prerequisite checked, each ✓ or ✗ with the fix.

Local checks: Python, the installed packages, the target's config, the model and adapter on the
share, the endpoint's `/ready`, and a request with the key. Azure checks (Bicep CLI, sign-in,
provider registrations, see `doctor_azure`) run with `--azure` or once an Azure config exists.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import httpx

from provision.errors import AcaInferError
from provision.readiness import probe
from provision.targets import Target

MIN_PYTHON = (3, 11)
PACKAGES = ("aca-infer", "click", "httpx", "jinja2", "rich", "azure-identity")
AZURE_CONFIG = Path("infra/inference.config.json")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class DoctorResult:
    target: str
    ok: bool
    checks: list[Check]


def _python() -> Check:
    version = ".".join(str(part) for part in sys.version_info[:3])
    ok = sys.version_info[:2] >= MIN_PYTHON
    wanted = ".".join(map(str, MIN_PYTHON))
    return Check("Python", ok, version, "" if ok else f"install Python {wanted} or newer")


def _packages() -> Check:
    found, missing = [], []
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        return Check(
            "Packages", False, f"missing: {', '.join(missing)}", "pip install --upgrade aca-infer"
        )
    return Check("Packages", True, ", ".join(found))


def _target_checks(target: Target) -> list[Check]:
    try:
        endpoint = target.endpoint()
    except AcaInferError as error:
        return [Check("Config", False, str(error).split(";")[0], _fix_of(error))]
    checks = [Check("Config", True, f"endpoint {endpoint}")]
    try:
        target.check_deployable()
        checks.append(Check("Share", True, f"model and adapter on {target.share.describe()}"))
    except AcaInferError as error:
        checks.append(Check("Share", False, str(error).split(";")[0], _fix_of(error)))
    checks += _endpoint_checks(target)
    return checks


def _endpoint_checks(target: Target) -> list[Check]:
    identity = target.replica.identity()
    start = (
        f"aca-infer start --target {target.name} (or deploy: aca-infer up --target {target.name})"
    )
    if identity is None:
        return [
            Check("Ready", False, "no replica runs", start),
            Check("Keyed request", False, "not tried: no replica runs", start),
        ]
    with httpx.Client(timeout=10.0) as client:
        ready, reason = probe(client, identity)
        if not ready:
            logs = f"aca-infer logs --target {target.name}"
            return [
                Check("Ready", False, reason, f"see why: {logs}"),
                Check("Keyed request", False, "not tried: the replica is not ready", start),
            ]
        headers = {"Authorization": f"Bearer {target.keys().primary}"}
        try:
            status = client.get(f"{identity.endpoint}/v1/models", headers=headers).status_code
        except httpx.HTTPError as error:
            status, reason = 0, type(error).__name__
    checks = [Check("Ready", True, f"{identity.endpoint}/ready answers 200")]
    if status == 200:
        checks.append(Check("Keyed request", True, "GET /v1/models with the primary key: 200"))
    else:
        checks.append(
            Check(
                "Keyed request",
                False,
                f"GET /v1/models with the primary key: {status or reason}",
                f"rotate the key and retry: aca-infer keys rotate --primary --target {target.name}",
            )
        )
    return checks


def _fix_of(error: AcaInferError) -> str:
    # Our messages end with the fix after "; " (e.g. "...; run: aca-infer provision").
    return str(error).rpartition("; ")[2] if "; " in str(error) else ""


def doctor(target: Target, project_dir: Path, azure: bool) -> DoctorResult:
    checks = [_python(), _packages()]
    if azure or (project_dir / AZURE_CONFIG).is_file():
        from provision.doctor_azure import azure_checks

        checks += azure_checks(project_dir / AZURE_CONFIG)
    checks += _target_checks(target)
    return DoctorResult(target.name, all(check.ok for check in checks), checks)

"""The api-versions the double accepts: exactly those the pinned SDKs send (their client
configuration's default) and those our templates declare. Anything else is what ARM answers
to an unknown version: 400 InvalidApiVersionParameter."""

from __future__ import annotations

import functools
import importlib
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_DIR = REPO_ROOT / "infra" / "provision"

# Namespace -> the SDK configuration classes whose default api_version the double accepts.
SDK_CONFIGURATIONS: dict[str, tuple[str, ...]] = {
    "Microsoft.Resources": (
        "azure.mgmt.resource.resources._configuration.ResourceManagementClientConfiguration",
    ),
    "Microsoft.Resources/deployments": (
        "azure.mgmt.resource.deployments._configuration.DeploymentsMgmtClientConfiguration",
    ),
    "Microsoft.Storage": (
        "azure.mgmt.storage._configuration.StorageManagementClientConfiguration",
    ),
    "Microsoft.OperationalInsights": (
        "azure.mgmt.loganalytics._configuration.LogAnalyticsManagementClientConfiguration",
    ),
    "Microsoft.App": (
        "azure.mgmt.appcontainers._configuration.ContainerAppsAPIClientConfiguration",
    ),
}

_TEMPLATE_TYPE = re.compile(r"'(Microsoft\.\w+)/[\w/]+@(\d{4}-\d{2}-\d{2}(?:-preview)?)'")


def sdk_default_api_version(dotted: str) -> str:
    module_name, _, class_name = dotted.rpartition(".")
    configuration = getattr(importlib.import_module(module_name), class_name)
    # The configuration only stores what it is given; an object() credential is never used.
    return str(configuration(credential=object(), subscription_id="0").api_version)


def template_api_versions(directory: Path = TEMPLATE_DIR) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(directory.rglob("*.bicep")):
        for namespace, version in _TEMPLATE_TYPE.findall(path.read_text(encoding="utf-8")):
            found.setdefault(namespace.lower(), set()).add(version)
    return found


@functools.cache
def accepted(namespace: str) -> frozenset[str]:
    """Versions accepted for a provider namespace (or "Microsoft.Resources/deployments")."""
    versions = {sdk_default_api_version(d) for d in SDK_CONFIGURATIONS.get(namespace, ())}
    versions |= template_api_versions().get(namespace.lower(), set())
    return frozenset(versions)

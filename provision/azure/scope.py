"""Where to provision: subscription, resource group, location and the ARM endpoint.

Each comes from, highest first: a flag, azd's environment variables, the fine-tuning run's
`infra/finetuning.config.json`, then (subscription only) the Azure CLI's default subscription,
read from its profile file without running anything. A missing value is asked for only when a
terminal is attached; otherwise the error names the flag.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from provision.azure.naming import (
    LOCATION_RULE,
    RESOURCE_GROUP_RULE,
    check_subscription_id,
    normalise_location,
)
from provision.errors import InputError

PUBLIC_ARM_ENDPOINT = "https://management.azure.com"
PUBLIC_ARM_SCOPE = "https://management.azure.com/.default"
ARM_ENDPOINT_ENV = "ACA_INFER_ARM_ENDPOINT"
ARM_SCOPE_ENV = "ACA_INFER_ARM_SCOPE"
PUBLIC_LOGS_ENDPOINT = "https://api.loganalytics.io"
LOGS_ENDPOINT_ENV = "ACA_INFER_LOGS_ENDPOINT"
LOGS_SCOPE_ENV = "ACA_INFER_LOGS_SCOPE"

Ask = Callable[[str], str]


@dataclass(frozen=True)
class ScopeFlags:
    subscription: str | None = None
    resource_group: str | None = None
    location: str | None = None
    arm_endpoint: str | None = None


@dataclass(frozen=True)
class ArmEndpoint:
    """The Resource Manager to talk to, and the token scope it accepts."""

    url: str
    credential_scope: str
    source: str


@dataclass(frozen=True)
class Scope:
    subscription_id: str
    resource_group: str
    location: str | None  # None: the resource group's own location (known at preflight)
    arm: ArmEndpoint
    sources: Mapping[str, str] = field(default_factory=dict)


def _https_root(url: str, source: str, what: str, example: str) -> str:
    """`url` without its trailing slash, once it is the HTTPS root of `what`."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc or parts.path not in ("", "/"):
        raise InputError(f"{source} {url!r}: give the HTTPS root of {what}, e.g. https://{example}")
    return url.rstrip("/")


def arm_endpoint(flag: str | None, environ: Mapping[str, str]) -> ArmEndpoint:
    """`--arm-endpoint`, else ACA_INFER_ARM_ENDPOINT, else the public cloud.

    The token scope is ACA_INFER_ARM_SCOPE when set (a sovereign cloud whose token audience
    differs from its endpoint), else `<endpoint>/.default`.
    """
    if flag:
        url, source = flag, "--arm-endpoint"
    elif environ.get(ARM_ENDPOINT_ENV):
        url, source = environ[ARM_ENDPOINT_ENV], ARM_ENDPOINT_ENV
    else:
        url, source = PUBLIC_ARM_ENDPOINT, "public cloud"
    url = _https_root(url, source, "a Resource Manager endpoint", "management.usgovcloudapi.net")
    if environ.get(ARM_SCOPE_ENV):
        scope = environ[ARM_SCOPE_ENV]
    else:
        scope = PUBLIC_ARM_SCOPE if url == PUBLIC_ARM_ENDPOINT else f"{url}/.default"
    return ArmEndpoint(url=url, credential_scope=scope, source=source)


def logs_endpoint(environ: Mapping[str, str]) -> ArmEndpoint:
    """The Log Analytics query API: ACA_INFER_LOGS_ENDPOINT, else the public cloud's.

    Its token scope is ACA_INFER_LOGS_SCOPE when set, else `<endpoint>/.default`, as for ARM.
    """
    url = environ.get(LOGS_ENDPOINT_ENV) or PUBLIC_LOGS_ENDPOINT
    source = LOGS_ENDPOINT_ENV if environ.get(LOGS_ENDPOINT_ENV) else "public cloud"
    url = _https_root(url, source, "a Log Analytics query endpoint", "api.loganalytics.us")
    scope = environ.get(LOGS_SCOPE_ENV) or f"{url}/.default"
    return ArmEndpoint(url=url, credential_scope=scope, source=source)


def cli_default_subscription(environ: Mapping[str, str]) -> str | None:
    """The Azure CLI's default subscription, from its profile file (no process, no network)."""
    config_dir = environ.get("AZURE_CONFIG_DIR") or str(Path(environ.get("HOME", "~")) / ".azure")
    profile = Path(config_dir).expanduser() / "azureProfile.json"
    try:
        document: Any = json.loads(profile.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    for subscription in document.get("subscriptions", []) if isinstance(document, dict) else []:
        if isinstance(subscription, dict) and subscription.get("isDefault"):
            value = subscription.get("id")
            return str(value) if value else None
    return None


def _first(*candidates: tuple[Any, str]) -> tuple[str, str] | None:
    for value, source in candidates:
        if isinstance(value, str) and value.strip():
            return value.strip(), source
    return None


def resolve_scope(
    flags: ScopeFlags,
    environ: Mapping[str, str],
    finetuning: Mapping[str, Any],
    location_parameter: tuple[Any, str] | None,
    ask: Ask | None,
) -> Scope:
    finetuning_file = "infra/finetuning.config.json"
    sources: dict[str, str] = {}

    subscription = _first(
        (flags.subscription, "--subscription"),
        (environ.get("AZURE_SUBSCRIPTION_ID"), "AZURE_SUBSCRIPTION_ID"),
        (finetuning.get("SUBSCRIPTION_ID"), f"SUBSCRIPTION_ID in {finetuning_file}"),
        (cli_default_subscription(environ), "the Azure CLI's default subscription"),
    )
    if subscription is None:
        subscription = _ask(ask, "Azure subscription id", "--subscription", "AZURE_SUBSCRIPTION_ID")
    check_subscription_id(subscription[1], subscription[0])
    sources["subscription"] = subscription[1]

    group = _first(
        (flags.resource_group, "--resource-group"),
        (environ.get("AZURE_RESOURCE_GROUP"), "AZURE_RESOURCE_GROUP"),
        (finetuning.get("RESOURCE_GROUP_NAME"), f"RESOURCE_GROUP_NAME in {finetuning_file}"),
    )
    if group is None:
        group = _ask(ask, "Resource group", "--resource-group", "AZURE_RESOURCE_GROUP")
    RESOURCE_GROUP_RULE.check(group[1], group[0])
    sources["resource_group"] = group[1]

    location = _first(
        (flags.location, "--location"),
        (environ.get("AZURE_LOCATION"), "AZURE_LOCATION"),
        location_parameter or (None, ""),
    )
    region: str | None = None
    if location is not None:
        region = normalise_location(location[0])
        LOCATION_RULE.check(location[1], region)
        sources["location"] = location[1]
    return Scope(
        subscription_id=subscription[0],
        resource_group=group[0],
        location=region,
        arm=arm_endpoint(flags.arm_endpoint, environ),
        sources=sources,
    )


def _ask(ask: Ask | None, prompt: str, flag: str, variable: str) -> tuple[str, str]:
    if ask is None:
        raise InputError(f"no {prompt.lower()}: give {flag} (or set {variable})")
    answer = ask(prompt).strip()
    if not answer:
        raise InputError(f"no {prompt.lower()}: give {flag} (or set {variable})")
    return answer, "asked"

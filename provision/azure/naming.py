"""Azure's naming rules per resource type, and the AI Toolkit's names for a resource group.

The AI Toolkit's templates name every resource `<prefix><suffix>`, the suffix being
`substring(uniqueString(resourceGroup().id), 0, 5)`, so its fine-tuning and inference templates
land on the same storage, share, environment and workspace. A null name here resolves the same
way, taking the suffix from the fine-tuning run's names when there is one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from provision.azure.uniquestring import unique_string
from provision.errors import InputError


@dataclass(frozen=True)
class NameRule:
    resource: str
    pattern: str
    minimum: int
    maximum: int
    described: str

    def check(self, parameter: str, value: Any) -> None:
        if (
            not isinstance(value, str)
            or not self.minimum <= len(value) <= self.maximum
            or not re.fullmatch(self.pattern, value)
            or "--" in value
        ):
            raise InputError(
                f"{parameter} {value!r}: not a valid {self.resource} name "
                f"({self.minimum}-{self.maximum} {self.described})"
            )


_HYPHENATED = "[a-z][a-z0-9-]*[a-z0-9]"
NAME_RULES: dict[str, NameRule] = {
    "storageAccountName": NameRule(
        "storage account", "[a-z0-9]+", 3, 24, "lowercase letters and digits, globally unique"
    ),
    "fileShareName": NameRule(
        "file share",
        "[a-z0-9][a-z0-9-]*[a-z0-9]",
        3,
        63,
        "lowercase letters, digits and single hyphens, starting and ending with a letter or digit",
    ),
    "acaEnvironmentName": NameRule(
        "Container Apps environment",
        _HYPHENATED,
        2,
        60,
        "lowercase letters, digits and single hyphens, starting with a letter",
    ),
    "acaEnvironmentStorageName": NameRule(
        "environment storage",
        "[a-z0-9][a-z0-9-]*[a-z0-9]",
        2,
        32,
        "lowercase letters, digits and single hyphens",
    ),
    "acaAppName": NameRule(
        "container app",
        _HYPHENATED,
        2,
        32,
        "lowercase letters, digits and single hyphens, starting with a letter",
    ),
    "acaLogAnalyticsName": NameRule(
        "Log Analytics workspace",
        "[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]",
        4,
        63,
        "letters, digits and single hyphens, starting and ending with a letter or digit",
    ),
    "workloadProfileName": NameRule(
        "workload profile",
        "[A-Za-z][A-Za-z0-9-]*",
        1,
        15,
        "letters, digits and hyphens, starting with a letter",
    ),
}
RESOURCE_GROUP_RULE = NameRule(
    "resource group",
    r"[\w().-]*[\w()-]",
    1,
    90,
    "letters, digits, underscores, hyphens, periods and parentheses, not ending with a period",
)
LOCATION_RULE = NameRule("location", "[a-z0-9]+", 2, 40, "lowercase letters and digits")
_GUID = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def check_subscription_id(source: str, value: str) -> None:
    if not _GUID.fullmatch(value):
        raise InputError(
            f"{source} {value!r}: not a subscription id (a GUID such as "
            "00000000-0000-0000-0000-000000000000); list yours with: az account list -o table"
        )


def normalise_location(value: str) -> str:
    """'West US 3' and 'westus3' name the same region; ARM wants the latter."""
    return value.replace(" ", "").lower()


def check_names(values: Mapping[str, Any]) -> None:
    for parameter, rule in NAME_RULES.items():
        if parameter in values:
            rule.check(parameter, values[parameter])


# -- the AI Toolkit's names ---------------------------------------------------------------

AI_TOOLKIT_PREFIXES: dict[str, str] = {
    "storageAccountName": "aistorage",
    "fileShareName": "aifileshare",
    "acaEnvironmentName": "aienv",
    "acaEnvironmentStorageName": "aienvstorage",
    "acaAppName": "aiacaapp",
    "acaLogAnalyticsName": "ailog",
}
# finetuning.config.json keys whose values carry the suffix, with the prefix before it.
_SUFFIX_CARRIERS = (
    ("STORAGE_ACCOUNT_NAME", "aistorage"),
    ("FILE_SHARE_NAME", "aifileshare"),
    ("ACA_JOB_NAME", "aiacajob"),
)
SUFFIX_LENGTH = 5


@dataclass(frozen=True)
class Suffix:
    value: str
    source: str


def resource_group_id(subscription_id: str, resource_group: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{resource_group}"


def ai_toolkit_suffix(
    finetuning: Mapping[str, Any], subscription_id: str, resource_group: str
) -> Suffix:
    """The fine-tuning run's suffix when its names carry one, else the template derivation."""
    for key, prefix in _SUFFIX_CARRIERS:
        name = finetuning.get(key)
        if isinstance(name, str) and re.fullmatch(f"{prefix}[a-z0-9]{{{SUFFIX_LENGTH}}}", name):
            return Suffix(
                name[len(prefix) :], f"the suffix of {key} in infra/finetuning.config.json"
            )
    derived = unique_string(resource_group_id(subscription_id, resource_group))[:SUFFIX_LENGTH]
    return Suffix(derived, "the AI Toolkit's uniqueString(resourceGroup().id) suffix")


def ai_toolkit_names(suffix: str) -> dict[str, str]:
    return {parameter: prefix + suffix for parameter, prefix in AI_TOOLKIT_PREFIXES.items()}

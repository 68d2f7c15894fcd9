"""Each check reports the defect it looks for: the real templates, with one defect introduced,
go through the same checker functions as the clean ones."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.infra import bicep_checks as checks

Checker = Callable[[checks.Template], list[str]]


def mutated(relative: str, old: str, new: str) -> checks.Template:
    """The template at infra/provision/<relative> with one text replaced (which must exist)."""
    path = checks.PROVISION_DIR / relative
    source = path.read_text(encoding="utf-8")
    assert source.count(old) == 1, f"{old!r} must occur once in {relative}"
    return checks.parse_text(source.replace(old, new), path)


DEFECTS: list[tuple[str, str, str, str, Checker, str]] = [
    # (id, file, text, replacement, checker, expected words in a problem)
    (
        "misspelt-nested-property",
        "modules/app.bicep",
        "path: '/health'",
        "pathh: '/health'",
        checks.check_resource_properties,
        "no property 'pathh' in ContainerAppProbeHttpGet",
    ),
    (
        "misspelt-top-level-property",
        "modules/monitoring.bicep",
        "  tags: tags\n",
        "  tag: tags\n",
        checks.check_resource_properties,
        "no property 'tag' in Workspace",
    ),
    (
        "misspelt-property-inside-variable",
        "modules/environment.bicep",
        "  minimumCount: dedicatedMinimumCount",
        "  minimumCont: dedicatedMinimumCount",
        checks.check_resource_properties,
        "no property 'minimumCont' in WorkloadProfile",
    ),
    (
        "read-only-property",
        "modules/storage.bicep",
        "    shareQuota: shareQuotaGiB\n",
        "    shareQuota: shareQuotaGiB\n    shareUsageBytes: 1\n",
        checks.check_resource_properties,
        "'shareUsageBytes' is read-only",
    ),
    (
        "unmapped-resource-type",
        "modules/monitoring.bicep",
        "'Microsoft.OperationalInsights/workspaces@2025-07-01'",
        "'Microsoft.Insights/components@2020-02-02'",
        checks.check_resource_properties,
        "no SDK model mapped for Microsoft.Insights/components",
    ),
    (
        "preview-api-version",
        "modules/app.bicep",
        "'Microsoft.App/containerApps@2025-07-01'",
        "'Microsoft.App/containerApps@2025-10-02-preview'",
        checks.check_api_versions,
        "preview API version",
    ),
    (
        "old-app-api-version",
        "modules/app.bicep",
        "'Microsoft.App/containerApps@2025-07-01'",
        "'Microsoft.App/containerApps@2024-03-01'",
        checks.check_api_versions,
        "< 2025-07-01",
    ),
    (
        "param-without-description",
        "inference.bicep",
        "@description('Optional. Days the Log Analytics workspace keeps logs.')\n",
        "",
        checks.check_param_descriptions,
        "param logRetentionInDays has no @description",
    ),
    (
        "required-param-described-optional",
        "inference.bicep",
        "param concurrentRequests int = 4",
        "param concurrentRequests int",
        checks.check_param_descriptions,
        "concurrentRequests description must start with 'Required.'",
    ),
    (
        "secure-param-with-default",
        "inference.bicep",
        "param apiKeyPrimary string\n",
        "param apiKeyPrimary string = 'not-a-secret-default'\n",
        checks.check_secure_params,
        "@secure() param apiKeyPrimary must not have a default",
    ),
    (
        "secret-param-not-secure",
        "modules/app.bicep",
        "@secure()\nparam apiKeySecondary string",
        "param apiKeySecondary string",
        checks.check_secure_params,
        "apiKeySecondary looks secret",
    ),
    (
        "output-leaks-secure-param",
        "inference.bicep",
        "output LOCATION string = location",
        "output LOCATION string = apiKeyPrimary",
        checks.check_outputs_not_secret,
        "uses secure param apiKeyPrimary",
    ),
    (
        "output-leaks-list-keys",
        "modules/environment.bicep",
        "output storageName string = environmentStorage.name",
        "output storageName string = storageAccount.listKeys().keys[0].value",
        checks.check_outputs_not_secret,
        "exposes a list*() result",
    ),
    (
        "output-named-like-a-secret",
        "inference.bicep",
        "output LOG_ANALYTICS_NAME string",
        "output LOG_ANALYTICS_KEY string",
        checks.check_outputs_not_secret,
        "is named like a secret",
    ),
    (
        "missing-config-output",
        "inference.bicep",
        "output FILE_SHARE_NAME string",
        "output SHARE string",
        checks.check_outputs_are_config_keys,
        "missing output FILE_SHARE_NAME",
    ),
    (
        "module-param-misspelt",
        "inference.bicep",
        "    retentionInDays: logRetentionInDays",
        "    retentionDays: logRetentionInDays",
        checks.check_module_params,
        "passes unknown param retentionDays",
    ),
    (
        "module-param-missing",
        "inference.bicep",
        "    apiKeySecondary: apiKeySecondary\n",
        "",
        checks.check_module_params,
        "misses required param apiKeySecondary",
    ),
    (
        "storage-allows-http",
        "modules/storage.bicep",
        "supportsHttpsTrafficOnly: true",
        "supportsHttpsTrafficOnly: false",
        checks.check_storage_security,
        "supportsHttpsTrafficOnly must be true",
    ),
    (
        "storage-old-tls",
        "modules/storage.bicep",
        "minimumTlsVersion: 'TLS1_2'",
        "minimumTlsVersion: 'TLS1_0'",
        checks.check_storage_security,
        "minimumTlsVersion must be TLS1_2+",
    ),
    (
        "storage-public-blobs",
        "modules/storage.bicep",
        "allowBlobPublicAccess: false",
        "allowBlobPublicAccess: true",
        checks.check_storage_security,
        "allowBlobPublicAccess must be false",
    ),
    (
        "probe-on-the-ui-page",
        "modules/app.bicep",
        "path: '/health'",
        "path: '/'",
        checks.check_probes,
        "Liveness probe must GET /health",
    ),
    (
        "probe-limit-exceeded",
        "modules/app.bicep",
        "@maxValue(10)\nparam startupProbeFailureThreshold",
        "@maxValue(30)\nparam startupProbeFailureThreshold",
        checks.check_probes,
        "Startup failureThreshold may exceed 10",
    ),
    (
        "node-counts-on-serverless-gpu",
        "modules/environment.bicep",
        "var isDedicated = startsWith(gpuProfileType, 'NC')",
        "var isDedicated = true",
        checks.check_workload_profiles,
        "gpuProfileType=Consumption-GPU-NC8as-T4: serverless profile sets maximumCount",
    ),
    (
        "dedicated-gpu-without-node-counts",
        "modules/environment.bicep",
        "var isDedicated = startsWith(gpuProfileType, 'NC')",
        "var isDedicated = startsWith(gpuProfileType, 'XX')",
        checks.check_workload_profiles,
        "gpuProfileType=NC24-A100: dedicated profile needs minimumCount and maximumCount",
    ),
    (
        "consumption-profile-dropped",
        "modules/environment.bicep",
        ": [consumptionProfile, gpuProfile]",
        ": [gpuProfile]",
        checks.check_workload_profiles,
        "gpuProfileType=NC96-A100: no Consumption profile",
    ),
    (
        "insecure-ingress",
        "modules/app.bicep",
        "allowInsecure: false",
        "allowInsecure: true",
        checks.check_app_contract,
        "HTTPS-only",
    ),
    (
        "multiple-revisions",
        "modules/app.bicep",
        "activeRevisionsMode: 'Single'",
        "activeRevisionsMode: 'Multiple'",
        checks.check_app_contract,
        "activeRevisionsMode must be Single",
    ),
    (
        "key-as-plain-env-value",
        "modules/app.bicep",
        "secretRef: 'api-key-primary'",
        "value: apiKeyPrimary",
        checks.check_app_contract,
        "ACA_INFER_API_KEY_PRIMARY must be secretRef api-key-primary",
    ),
    (
        "share-not-at-mount",
        "modules/app.bicep",
        "var mountRoot = '/mount'",
        "var mountRoot = '/data'",
        checks.check_app_contract,
        "mounted at /mount",
    ),
]


@pytest.mark.parametrize(
    ("relative", "old", "new", "checker", "expected"),
    [case[1:] for case in DEFECTS],
    ids=[case[0] for case in DEFECTS],
)
def test_check_reports_introduced_defect(
    relative: str, old: str, new: str, checker: Checker, expected: str
) -> None:
    clean = checks.parse_file(checks.PROVISION_DIR / relative)
    assert checker(clean) == []

    problems = checker(mutated(relative, old, new))

    assert any(expected in problem for problem in problems), problems


def test_syntax_error_is_reported_with_the_file() -> None:
    source = (checks.PROVISION_DIR / "modules/app.bicep").read_text()
    broken = source.replace("resource app 'Microsoft.App", "resource app = 'Microsoft.App", 1)

    with pytest.raises(checks.BicepSyntaxError, match=r"app\.bicep"):
        checks.parse_text(broken, checks.PROVISION_DIR / "modules/app.bicep")


def parameters(**values: Any) -> dict[str, Any]:
    return {"parameters": {name: {"value": value} for name, value in values.items()}}


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (parameters(gpuProfile="Consumption"), "gpuProfile: not a parameter"),
        (parameters(gpuProfileType="NC8-T4"), "is not one of"),
        (parameters(maximumInstanceCount="2"), "expected int"),
        (parameters(maximumInstanceCount=True), "expected int"),
        (parameters(maximumInstanceCount=0), "below the minimum 1"),
        (parameters(defaultCommands="cd /mount"), "expected array"),
        (parameters(storageAccountName="st"), "shorter than 3"),
        (parameters(apiKeyPrimary=None), "null but the template has no default"),
        (parameters(apiKeyPrimary="a" * 32), "secure value in a parameters file"),
        ({"parameters": {"acaAppName": "ca-x"}}, "expected {'value': ...}"),
        ({"values": {}}, "no 'parameters' object"),
    ],
)
def test_parameters_file_defects_are_reported(document: dict[str, Any], expected: str) -> None:
    main = checks.parse_file(checks.MAIN_TEMPLATE)

    problems = checks.check_parameters_file(main, document)

    assert any(expected in problem for problem in problems), problems


def test_linter_rule_left_at_warning_is_reported() -> None:
    config = json.loads((checks.INFRA_DIR / "bicepconfig.json").read_text())
    config["analyzers"]["core"]["rules"]["outputs-should-not-contain-secrets"]["level"] = "warning"

    assert checks.check_bicepconfig(config) == [
        "bicepconfig.json: rule outputs-should-not-contain-secrets must have level error"
    ]


def test_extra_output_outside_the_config_keys_is_reported() -> None:
    template = mutated("inference.bicep", "output LOCATION string", "output REGION string")

    assert checks.check_outputs_are_config_keys(template) == [
        f"{template.path}: output REGION is not an inference.config.json key"
    ]


def test_typed_array_items_are_checked() -> None:
    template = checks.parse_text(
        "@description('Optional. Commands.')\nparam commands string[] = []\n"
    )

    problems = checks.check_parameters_file(template, parameters(commands=["ok", 2]))

    assert problems == ["commands: expected an array of string"]


def test_undocumented_parameter_is_reported() -> None:
    main = checks.parse_file(checks.MAIN_TEMPLATE)
    readme = (checks.INFRA_DIR / "README.md").read_text(encoding="utf-8")

    problems = checks.check_params_documented(main, readme.replace("`concurrentRequests`", "x"))

    assert problems == ["infra/README.md does not document param concurrentRequests"]

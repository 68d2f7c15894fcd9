"""The project's inference template deployed into the double: the deployment engine creates the
environment, its storage and the container app through Microsoft.App, and the app's replica
runs the project's bootstrap on a release that is on the share, behind the endpoint the
template outputs."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError

from provision.deploy import sync_release
from provision.local.share import LocalShare
from provision.release import scan_tree
from provision.release_history import read_history, record_live
from tests.azure_double.api_versions import TEMPLATE_DIR
from tests.azure_double.sdk import (
    create_share,
    deployments_client,
    resources_client,
    use_double_env,
)
from tests.azure_double.server import AzureDouble
from tests.azure_double.test_arm import bicep_build, deployment
from tests.provision.standin_app import write_standin_app

KEYS = {"apiKeyPrimary": {"value": "p" * 16}, "apiKeySecondary": {"value": "s" * 16}}


@pytest.fixture
def double(azure_double: AzureDouble) -> Iterator[AzureDouble]:
    azure_double.retry_after_s = 0
    # app.bicep's startup budget (30 s + 10 x 60 s) scaled to about 30 s.
    azure_double.config.extra["probe_time_scale"] = 0.05
    with use_double_env(azure_double):
        resources_client(azure_double).resource_groups.create_or_update(
            "rg", {"location": "westus3"}
        )
        yield azure_double


def _share_with_a_release(double: AzureDouble, tmp_path: Path) -> str:
    share = LocalShare(create_share(double, "rg", "stmodels", "aca-infer", "westus3"))
    manifest, bodies = scan_tree(write_standin_app(tmp_path / "src"), "inference_app")
    sync_release(share, manifest, lambda path: bodies[path].read_bytes(), None, lambda _m: None)
    record_live(share, read_history(share), manifest.release_id)
    return manifest.release_id


def _deploy(double: AzureDouble, parameters: dict[str, Any]) -> Any:
    template = bicep_build(TEMPLATE_DIR / "inference.bicep")
    return (
        deployments_client(double, polling_interval=0.1)
        .deployments.begin_create_or_update("rg", "infer", deployment(template, parameters))
        .result()
    )


def test_the_inference_template_serves_the_release_at_its_endpoint(
    double: AzureDouble, tmp_path: Path
):
    release = _share_with_a_release(double, tmp_path)

    result = _deploy(
        double,
        {
            **KEYS,
            "storageAccountName": {"value": "stmodels"},
            "useExistingStorageAccount": {"value": True},
            "gpuProfileType": {"value": "Consumption"},
        },
    )

    assert result.properties.provisioning_state == "Succeeded"
    endpoint = result.properties.outputs["ACA_APP_ENDPOINT"]["value"]
    chat = {"model": "standin", "messages": [{"role": "user", "content": "hi"}]}
    trust = ssl.create_default_context(cafile=double.ca_bundle)
    with httpx.Client(verify=trust, timeout=60) as https:
        health = https.get(f"{endpoint}/health")
        answer = https.post(
            f"{endpoint}/v1/chat/completions",
            json=chat,
            headers={"Authorization": "Bearer " + "s" * 16},
        )
    assert health.json()["release"] == release
    assert answer.json()["choices"][0]["message"]["content"] == "echo: hi"


def test_a_deployment_whose_app_never_gets_ready_fails_with_acas_error(double: AzureDouble):
    # No release on the share: the bootstrap exits at every start, as it would on ACA, until
    # the startup budget (scaled to about 3 s here) runs out.
    double.config.extra["probe_time_scale"] = 0.005
    with pytest.raises(HttpResponseError) as failed:
        _deploy(double, {**KEYS, "gpuProfileType": {"value": "Consumption"}})

    assert "ContainerAppOperationError" in str(failed.value)
    assert "Failed to provision revision" in str(failed.value)

"""The double's Log Analytics query API, driven by the real LogsQueryClient: it answers only
the KQL aca-infer sends, for a known workspace, with a valid bearer token."""

from __future__ import annotations

import ssl
from datetime import timedelta

import httpx
import pytest
from azure.core.exceptions import HttpResponseError
from azure.monitor.query import LogsQueryClient, LogsQueryStatus

from tests.azure_double import api_versions
from tests.azure_double.loganalytics import NAMESPACE
from tests.azure_double.sdk import credential
from tests.azure_double.server import AzureDouble

KQL = (
    "ContainerAppConsoleLogs_CL | where ContainerAppName_s == 'app-x'"
    " | where TimeGenerated > ago(3600s) | order by TimeGenerated asc"
    " | project TimeGenerated, Log_s"
)


def _workspace(double: AzureDouble) -> str:
    group = f"/subscriptions/{double.subscription_id}/resourceGroups/rg-logs"
    double.internal_request(
        "PUT", group, min(api_versions.accepted("Microsoft.Resources")), {"location": "eastus"}
    )
    created = double.internal_request(
        "PUT",
        f"{group}/providers/{NAMESPACE}/workspaces/log-x",
        min(api_versions.accepted(NAMESPACE)),
        {"location": "eastus"},
    )
    return str(created.json()["properties"]["customerId"])


def _client(double: AzureDouble) -> LogsQueryClient:
    return LogsQueryClient(credential(), endpoint=double.env["ACA_INFER_LOGS_ENDPOINT"])


def test_the_query_of_aca_infer_is_answered_as_tables(double: AzureDouble) -> None:
    result = _client(double).query_workspace(_workspace(double), KQL, timespan=timedelta(hours=1))
    assert result.status == LogsQueryStatus.SUCCESS
    assert list(result.tables[0].columns) == ["TimeGenerated", "Log_s"]
    assert result.tables[0].rows == []  # no app of that name runs


@pytest.mark.parametrize(
    "query",
    ["ContainerAppConsoleLogs_CL | take 10", KQL.replace("ago(3600s)", "ago(1h) or true")],
)
def test_any_other_query_is_rejected_with_400(double: AzureDouble, query: str) -> None:
    with pytest.raises(HttpResponseError) as raised:
        _client(double).query_workspace(_workspace(double), query, timespan=None)
    assert raised.value.status_code == 400


def test_an_unknown_workspace_is_404_and_no_token_401(double: AzureDouble) -> None:
    with pytest.raises(HttpResponseError) as raised:
        _client(double).query_workspace("0000", KQL, timespan=None)
    assert raised.value.status_code == 404
    url = f"{double.env['ACA_INFER_LOGS_ENDPOINT']}/v1/workspaces/{_workspace(double)}/query"
    answer = httpx.post(
        url, json={"query": KQL}, verify=ssl.create_default_context(cafile=str(double.ca_bundle))
    )
    assert answer.status_code == 401

"""Microsoft.App in the double, driven by the real ContainerAppsAPIClient: environments, storages,
apps whose replicas really run and serve HTTPS at their fqdn, revisions, replicas, stop/start."""

from __future__ import annotations

import http.client
import json
import os
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from provision.deploy import sync_release
from provision.local.share import LocalShare
from provision.release import scan_tree
from provision.release_history import read_history, record_live
from tests.azure_double.apps_testing import (
    ACCOUNT,
    MOUNT,
    RESOURCE_GROUP,
    SHARE,
    app_body,
    create_environment,
    environment_body,
    error_of,
    storage_body,
)
from tests.azure_double.server import AzureDouble
from tests.provision.standin_app import write_standin_app


def _https(double: AzureDouble) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=double.ca_bundle), timeout=30)


def _fqdn(app: Any) -> str:
    return str(app.properties.configuration.ingress.fqdn)


def test_environment_lifecycle_and_storage(double: AzureDouble, client: Any):
    environment = client.managed_environments.begin_create_or_update(
        RESOURCE_GROUP, "env", environment_body()
    ).result()
    assert environment.properties.provisioning_state == "Succeeded"
    types = {p.workload_profile_type for p in environment.properties.workload_profiles}
    assert types == {"Consumption", "Consumption-GPU-NC8as-T4"}
    assert [e.name for e in client.managed_environments.list_by_resource_group(RESOURCE_GROUP)] == [
        "env"
    ]

    storage = client.managed_environments_storages.create_or_update(
        RESOURCE_GROUP, "env", "data", storage_body(double)
    )
    assert storage.properties.azure_file.share_name == "models"
    assert storage.properties.azure_file.account_key is None  # write-only, never returned

    wrong_key = storage_body(double)
    wrong_key["properties"]["azureFile"]["accountKey"] = "bm90LXRoZS1rZXk="
    with pytest.raises(HttpResponseError) as refused:
        client.managed_environments_storages.create_or_update(
            RESOURCE_GROUP, "env", "other", wrong_key
        )
    assert refused.value.status_code == 400
    assert "not one of its keys" in str(refused.value)

    client.managed_environments.begin_delete(RESOURCE_GROUP, "env").result()
    with pytest.raises(ResourceNotFoundError):
        client.managed_environments.get(RESOURCE_GROUP, "env")


def test_app_replica_serves_from_the_share_at_its_fqdn(double: AzureDouble, client: Any):
    environment_id = create_environment(double, client)
    app = client.container_apps.begin_create_or_update(
        RESOURCE_GROUP, "web", app_body(environment_id, env={"GREETING": "hi"})
    ).result()

    assert app.properties.provisioning_state == "Succeeded"
    assert app.properties.latest_revision_name.startswith("web--")
    assert app.properties.latest_ready_revision_name == app.properties.latest_revision_name
    assert _fqdn(app).startswith("127.0.0.1:")
    with _https(double) as https:
        hello = https.get(f"https://{_fqdn(app)}/hello").json()
        echoed = https.post(f"https://{_fqdn(app)}/echo", content=b"x" * 100_000).json()
        # A body of unknown length goes out chunked; the proxy streams it on.
        chunked = https.post(
            f"https://{_fqdn(app)}/echo", content=iter([b"ab", b"cd" * 5000, b"ef"])
        ).json()
    assert hello["greeting"] == "hi"
    assert hello["key"] == "key-1"  # secretRef resolved
    share = double.share_root("appsdata", "models")
    assert hello["mount"] == str(share)  # /mount rewritten to the share folder
    assert hello["argv"] == [str(share / "server.py")]
    assert echoed["echo"] == "x" * 100_000
    assert chunked["echo"] == "ab" + "cd" * 5000 + "ef"

    secrets = client.container_apps.list_secrets(RESOURCE_GROUP, "web")
    assert [(s.name, s.value) for s in secrets.value] == [("api-key", "key-1")]
    fetched = client.container_apps.get(RESOURCE_GROUP, "web")
    assert [s.name for s in fetched.properties.configuration.secrets] == ["api-key"]
    assert fetched.properties.configuration.secrets[0].value is None

    revision = client.container_apps_revisions.get_revision(
        RESOURCE_GROUP, "web", app.properties.latest_revision_name
    )
    assert (revision.properties.active, revision.properties.traffic_weight) == (True, 100)
    assert revision.properties.running_state == "Running"
    replicas = client.container_apps_revision_replicas.list_replicas(
        RESOURCE_GROUP, "web", revision.name
    ).value
    assert len(replicas) == 1
    assert replicas[0].properties.containers[0].ready is True
    replica = client.container_apps_revision_replicas.get_replica(
        RESOURCE_GROUP, "web", revision.name, replicas[0].name
    )
    assert replica.properties.running_state == "Running"
    assert [a.name for a in client.container_apps.list_by_resource_group(RESOURCE_GROUP)] == ["web"]
    assert [a.name for a in client.container_apps.list_by_subscription()] == ["web"]

    client.container_apps.begin_delete(RESOURCE_GROUP, "web").result()
    with pytest.raises(ResourceNotFoundError):
        client.container_apps.get(RESOURCE_GROUP, "web")
    with _https(double) as https, pytest.raises(httpx.ConnectError):
        https.get(f"https://{_fqdn(app)}/hello")


def test_server_sent_events_pass_through_chunk_by_chunk(
    double: AzureDouble, client: Any, tmp_path: Path
):
    app = client.container_apps.begin_create_or_update(
        RESOURCE_GROUP, "web", app_body(create_environment(double, client))
    ).result()
    events = []
    with (
        _https(double) as https,
        https.stream("GET", f"https://{_fqdn(app)}/stream?acks={tmp_path}") as response,
    ):
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line.removeprefix("data: "))
                # The server sends the next event only once this one is acknowledged.
                (tmp_path / f"ack-{len(events) - 1}").touch()

    assert response.headers["content-type"] == "text/event-stream"
    assert events == ["0", "1", "2"]


def test_get_modify_update_round_trip_and_unknown_properties(double: AzureDouble, client: Any):
    environment_id = create_environment(double, client)
    client.container_apps.begin_create_or_update(
        RESOURCE_GROUP, "web", app_body(environment_id, env={"GREETING": "one"})
    ).result()
    app = client.container_apps.get(RESOURCE_GROUP, "web")
    for variable in app.properties.template.containers[0].env:
        if variable.name == "GREETING":
            variable.value = "two"

    updated = client.container_apps.begin_update(RESOURCE_GROUP, "web", app).result()

    assert updated.properties.latest_revision_name != app.properties.latest_revision_name
    with _https(double) as https:
        hello = https.get(f"https://{_fqdn(updated)}/hello").json()
    assert (hello["greeting"], hello["key"]) == ("two", "key-1")  # secret kept by the PATCH
    body = app_body(environment_id)
    body["properties"]["template"]["containers"][0]["gpu"] = 1
    with pytest.raises(HttpResponseError) as refused:
        client.container_apps.begin_create_or_update(RESOURCE_GROUP, "web", body)
    assert error_of(refused.value).code == "InvalidRequestContent"
    assert "gpu" in str(error_of(refused.value).message)
    with pytest.raises(HttpResponseError) as too_patient:
        client.container_apps.begin_create_or_update(
            RESOURCE_GROUP, "web", app_body(environment_id, startup_failures=11)
        )
    assert error_of(too_patient.value).code == "ContainerAppProbeInvalid"


def test_log_stream_serves_the_replica_console_as_the_cli_reads_it(
    double: AzureDouble, client: Any
):
    app = client.container_apps.begin_create_or_update(
        RESOURCE_GROUP, "web", app_body(create_environment(double, client), env={"GREETING": "hi"})
    ).result()
    revision = app.properties.latest_revision_name
    replica = client.container_apps_revision_replicas.list_replicas(
        RESOURCE_GROUP, "web", revision
    ).value[0]
    endpoint = replica.properties.containers[0].log_stream_endpoint
    assert endpoint.startswith(app.properties.event_stream_endpoint.split("/subscriptions/")[0])
    token = client.container_apps.get_auth_token(RESOURCE_GROUP, "web").properties.token
    params = {"tailLines": "50", "follow": "false", "output": "json"}

    with _https(double) as https:
        refused = https.get(endpoint, params=params)
        response = https.get(endpoint, params=params, headers={"Authorization": f"Bearer {token}"})

    assert refused.status_code == 401
    assert response.status_code == 200
    logs = [json.loads(line)["Log"] for line in response.text.splitlines()]
    assert "stand-in server starting, greeting hi" in logs


def test_the_projects_bootstrap_runs_a_release_from_the_share(
    double: AzureDouble, client: Any, tmp_path: Path
):
    share = LocalShare(double.share_root(ACCOUNT, SHARE))
    manifest, bodies = scan_tree(write_standin_app(tmp_path / "src"), "inference_app")
    sync_release(share, manifest, lambda path: bodies[path].read_bytes(), None, lambda _m: None)
    record_live(share, read_history(share), manifest.release_id)
    body = app_body(
        create_environment(double, client), secrets={"primary": "key-a", "secondary": "key-b"}
    )
    container = body["properties"]["template"]["containers"][0]
    container["command"] = ["python", f"{MOUNT}/app/bootstrap.py"]
    container["env"] = [
        {"name": "ACA_INFER_MOUNT_ROOT", "value": MOUNT},
        {"name": "ACA_INFER_PORT", "value": "7860"},
        {"name": "ACA_INFER_API_KEY_PRIMARY", "secretRef": "primary"},
        {"name": "ACA_INFER_API_KEY_SECONDARY", "secretRef": "secondary"},
    ]

    app = client.container_apps.begin_create_or_update(RESOURCE_GROUP, "web", body).result()

    chat = {"model": "standin", "messages": [{"role": "user", "content": "hi"}]}
    with _https(double) as https:
        health = https.get(f"https://{_fqdn(app)}/health").json()
        answer = https.post(
            f"https://{_fqdn(app)}/v1/chat/completions",
            json=chat,
            headers={"Authorization": "Bearer key-b"},
        )
        refused = https.post(
            f"https://{_fqdn(app)}/v1/chat/completions",
            json=chat,
            headers={"Authorization": "Bearer key-c"},
        )
    assert health["release"] == manifest.release_id  # the release the bootstrap started
    # The stand-in speaks HTTP/1.0 and closes each connection; the client's stays open.
    host, port = _fqdn(app).split(":")
    trust = ssl.create_default_context(cafile=double.ca_bundle)
    connection = http.client.HTTPSConnection(host, int(port), context=trust, timeout=30)
    try:
        statuses = []
        for _ in range(2):
            connection.request("GET", "/health")
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
    finally:
        connection.close()
    assert statuses == [200, 200]
    assert answer.json()["choices"][0]["message"]["content"] == "echo: hi"
    assert refused.status_code == 401


def test_stopping_the_double_stops_every_replica(double: AzureDouble, client: Any):
    environment_id = create_environment(double, client)
    pids = []
    for name in ("one", "two"):
        app = client.container_apps.begin_create_or_update(
            RESOURCE_GROUP, name, app_body(environment_id)
        ).result()
        with _https(double) as https:
            pids.append(https.get(f"https://{_fqdn(app)}/hello").json()["pid"])

    double.stop()

    assert [pid for pid in pids if _alive(pid)] == []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but was not reaped yet is no longer running either.
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"


def test_log_stream_follows_new_console_lines(double: AzureDouble, client: Any):
    app = client.container_apps.begin_create_or_update(
        RESOURCE_GROUP, "web", app_body(create_environment(double, client))
    ).result()
    replica = client.container_apps_revision_replicas.list_replicas(
        RESOURCE_GROUP, "web", app.properties.latest_revision_name
    ).value[0]
    token = client.container_apps.get_auth_token(RESOURCE_GROUP, "web").properties.token
    seen: list[str] = []
    with (
        _https(double) as https,
        https.stream(
            "GET",
            replica.properties.containers[0].log_stream_endpoint,
            params={"tailLines": "50", "follow": "true", "output": "text"},
            headers={"Authorization": f"Bearer {token}"},
        ) as stream,
    ):
        # Asked once the stream is open: its log line can only come through follow.
        https.get(f"https://{_fqdn(app)}/hello")
        for line in stream.iter_lines():
            seen.append(line)
            if "request" in line and "/hello" in line:
                break

    assert any("listening" in line for line in seen)  # the tail
    assert seen[-1].endswith("request GET /hello HTTP/1.1")  # followed

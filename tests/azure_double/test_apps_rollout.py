"""Revisions in the double behave as ACA's do: zero-downtime rollout in Single revision mode, a
revision that never gets ready leaves the old one serving, restart without dropping requests,
scale to zero with a cold start, stop/start, and the crash-at-start fault."""

from __future__ import annotations

import json
import os
import ssl
import threading
from typing import Any

import httpx
import pytest
from azure.core.exceptions import HttpResponseError

from tests.azure_double.apps_testing import (
    RESOURCE_GROUP,
    app_body,
    error_of,
    wait_for,
)
from tests.azure_double.server import AzureDouble


def _https(double: AzureDouble) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=double.ca_bundle), timeout=60)


def _fqdn(app: Any) -> str:
    return str(app.properties.configuration.ingress.fqdn)


class RequestLoop:
    """GET /hello in a loop on one thread until stopped; keeps every outcome."""

    def __init__(self, double: AzureDouble, fqdn: str) -> None:
        self.outcomes: list[tuple[int, Any]] = []
        self._stop = threading.Event()
        self._https = _https(double)
        self._url = f"https://{fqdn}/hello"
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = self._https.get(self._url)
                self.outcomes.append((response.status_code, response.json()))
            except (httpx.HTTPError, ValueError) as error:
                self.outcomes.append((0, repr(error)))

    def greetings(self) -> list[Any]:
        return [body.get("greeting") for status, body in self.outcomes if status == 200]

    def stop(self) -> list[tuple[int, Any]]:
        self._stop.set()
        self._thread.join(timeout=60)
        self._https.close()
        return [o for o in self.outcomes if o[0] != 200]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _serving_pid(double: AzureDouble, app: Any) -> int:
    with _https(double) as https:
        return int(https.get(f"https://{_fqdn(app)}/hello").json()["pid"])


def _create(client: Any, body: dict[str, Any]) -> Any:
    return client.container_apps.begin_create_or_update(RESOURCE_GROUP, "web", body).result()


def test_rollout_switches_traffic_only_when_ready_and_drops_nothing(
    double: AzureDouble, client: Any, environment_id: str
):
    first = _create(client, app_body(environment_id, env={"GREETING": "one"}))
    old_pid = _serving_pid(double, first)
    loop = RequestLoop(double, _fqdn(first))
    wait_for(lambda: len(loop.greetings()) >= 5)

    second = _create(client, app_body(environment_id, env={"GREETING": "two"}))
    seen = len(loop.outcomes)
    wait_for(lambda: len(loop.outcomes) >= seen + 5)
    failures = loop.stop()

    assert failures == []
    greetings = loop.greetings()
    switch = greetings.index("two")
    assert set(greetings[:switch]) == {"one"} and set(greetings[switch:]) == {"two"}
    assert second.properties.latest_revision_name != first.properties.latest_revision_name
    assert second.properties.latest_ready_revision_name == second.properties.latest_revision_name
    old = client.container_apps_revisions.get_revision(
        RESOURCE_GROUP, "web", first.properties.latest_revision_name
    )
    assert (old.properties.active, old.properties.traffic_weight) == (False, 0)
    assert old.properties.replicas == 0
    wait_for(lambda: not _pid_alive(old_pid))


def test_revision_suffix_names_the_revision_and_secrets_alone_make_no_revision(
    double: AzureDouble, client: Any, environment_id: str
):
    body = app_body(environment_id)
    body["properties"]["template"]["revisionSuffix"] = "v1"
    first = _create(client, body)
    assert first.properties.latest_revision_name == "web--v1"
    pid = _serving_pid(double, first)

    body["properties"]["configuration"]["secrets"] = [{"name": "api-key", "value": "key-2"}]
    second = _create(client, body)

    assert second.properties.latest_revision_name == "web--v1"
    revisions = list(client.container_apps_revisions.list_revisions(RESOURCE_GROUP, "web"))
    assert [r.name for r in revisions] == ["web--v1"]
    with _https(double) as https:
        hello = https.get(f"https://{_fqdn(second)}/hello").json()
    assert (hello["pid"], hello["key"]) == (pid, "key-1")  # nothing restarted
    reused = app_body(environment_id, env={"GREETING": "changed"})
    reused["properties"]["template"]["revisionSuffix"] = "v1"
    with pytest.raises(HttpResponseError) as conflict:
        _create(client, reused)
    assert error_of(conflict.value).code == "ContainerAppRevisionSuffixConflict"


def test_restart_takes_the_new_secret_without_dropping_requests(
    double: AzureDouble, client: Any, environment_id: str
):
    body = app_body(environment_id)
    app = _create(client, body)
    revision = app.properties.latest_revision_name
    old_pid = _serving_pid(double, app)
    body["properties"]["configuration"]["secrets"] = [{"name": "api-key", "value": "key-2"}]
    _create(client, body)

    loop = RequestLoop(double, _fqdn(app))
    wait_for(lambda: len(loop.outcomes) >= 5)
    client.container_apps_revisions.restart_revision(RESOURCE_GROUP, "web", revision)
    wait_for(lambda: any(b.get("key") == "key-2" for s, b in loop.outcomes if s == 200))
    seen = len(loop.outcomes)
    wait_for(lambda: len(loop.outcomes) >= seen + 5)
    failures = loop.stop()

    assert failures == []
    assert _serving_pid(double, app) != old_pid
    wait_for(lambda: not _pid_alive(old_pid))


def test_a_revision_that_never_gets_ready_fails_and_the_old_one_keeps_serving(
    double: AzureDouble, client: Any, environment_id: str
):
    double.config.extra["probe_time_scale"] = 0.5  # the bad one's budget: (1 + 1 x 3) s -> 2 s
    # A generous budget for the good revision: only the bad one is meant to run out of time.
    good = _create(client, app_body(environment_id, env={"GREETING": "good"}, startup_period=6))
    loop = RequestLoop(double, _fqdn(good))

    with pytest.raises(HttpResponseError) as failed:
        _create(
            client,
            app_body(
                environment_id, env={"NEVER_READY": "1"}, startup_failures=3, startup_period=1
            ),
        )
    failures = loop.stop()

    assert error_of(failed.value).code == "ContainerAppOperationError"
    assert "Failed to provision revision for container app 'web'" in str(
        error_of(failed.value).message
    )
    assert failures == []
    assert set(loop.greetings()) == {"good"}
    app = client.container_apps.get(RESOURCE_GROUP, "web")
    assert app.properties.provisioning_state == "Failed"
    assert app.properties.latest_ready_revision_name == good.properties.latest_revision_name
    bad = client.container_apps_revisions.get_revision(
        RESOURCE_GROUP, "web", app.properties.latest_revision_name
    )
    assert bad.properties.provisioning_state == "Failed"
    assert (bad.properties.running_state, bad.properties.health_state) == ("Failed", "Unhealthy")
    assert bad.properties.traffic_weight == 0
    with _https(double) as https:
        assert https.get(f"https://{_fqdn(app)}/hello").json()["greeting"] == "good"

    client.container_apps_revisions.deactivate_revision(RESOURCE_GROUP, "web", bad.name)
    assert not client.container_apps_revisions.get_revision(
        RESOURCE_GROUP, "web", bad.name
    ).properties.active


def test_deactivate_then_activate_a_revision(double: AzureDouble, client: Any, environment_id: str):
    app = _create(client, app_body(environment_id))
    revision = app.properties.latest_revision_name
    pid = _serving_pid(double, app)

    client.container_apps_revisions.deactivate_revision(RESOURCE_GROUP, "web", revision)

    wait_for(lambda: not _pid_alive(pid))
    with _https(double) as https:
        assert https.get(f"https://{_fqdn(app)}/hello").status_code == 404
    client.container_apps_revisions.activate_revision(RESOURCE_GROUP, "web", revision)
    wait_for(
        lambda: (
            client.container_apps_revisions.get_revision(
                RESOURCE_GROUP, "web", revision
            ).properties.health_state
            == "Healthy"
        )
    )
    with _https(double) as https:
        assert https.get(f"https://{_fqdn(app)}/hello").status_code == 200


def test_scale_to_zero_then_a_request_waits_for_the_cold_start(
    double: AzureDouble, client: Any, environment_id: str
):
    double.config.scale_to_zero_idle_s = 0.5
    app = _create(client, app_body(environment_id, min_replicas=0))
    revision = app.properties.latest_revision_name
    first_pid = _serving_pid(double, app)

    def replica_count() -> int:
        return len(
            client.container_apps_revision_replicas.list_replicas(
                RESOURCE_GROUP, "web", revision
            ).value
        )

    wait_for(lambda: replica_count() == 0)
    wait_for(lambda: not _pid_alive(first_pid))
    with _https(double) as https:
        response = https.get(f"https://{_fqdn(app)}/hello")
    assert response.status_code == 200
    assert response.json()["pid"] != first_pid
    assert client.container_apps_revisions.get_revision(
        RESOURCE_GROUP, "web", revision
    ).properties.running_state in ("Running", "Processing")


def test_stop_answers_404_and_start_serves_again(
    double: AzureDouble, client: Any, environment_id: str
):
    app = _create(client, app_body(environment_id))
    pid = _serving_pid(double, app)

    stopped = client.container_apps.begin_stop(RESOURCE_GROUP, "web").result()

    assert stopped.properties.running_status == "Stopped"
    assert not _pid_alive(pid)
    with _https(double) as https:
        assert https.get(f"https://{_fqdn(app)}/hello").status_code == 404
    started = client.container_apps.begin_start(RESOURCE_GROUP, "web").result()
    assert started.properties.running_status == "Running"
    with _https(double) as https:
        assert https.get(f"https://{_fqdn(app)}/hello").status_code == 200


def test_replica_crash_fault_fails_the_revision_with_the_console_kept(
    double: AzureDouble, client: Any, environment_id: str
):
    double.config.replica_crash = True
    double.config.extra["probe_time_scale"] = 0.5

    with pytest.raises(HttpResponseError) as failed:
        _create(client, app_body(environment_id, startup_failures=3, startup_period=1))

    assert error_of(failed.value).code == "ContainerAppOperationError"
    app = client.container_apps.get(RESOURCE_GROUP, "web")
    assert app.properties.latest_ready_revision_name is None
    revision = client.container_apps_revisions.get_revision(
        RESOURCE_GROUP, "web", app.properties.latest_revision_name
    )
    assert revision.properties.running_state == "Failed"
    (replica,) = client.container_apps_revision_replicas.list_replicas(
        RESOURCE_GROUP, "web", revision.name
    ).value
    assert replica.properties.containers[0].restart_count >= 1
    token = client.container_apps.get_auth_token(RESOURCE_GROUP, "web").properties.token
    system_events = app.properties.event_stream_endpoint
    with _https(double) as https:
        assert https.get(f"https://{_fqdn(app)}/hello").status_code == 404
        events = https.get(
            system_events,
            params={"tailLines": "50", "follow": "false", "output": "json"},
            headers={"Authorization": f"Bearer {token}"},
        )
    messages = [json.loads(line)["Msg"] for line in events.text.splitlines()]
    assert "container 'server' exited with code 1" in messages


def test_a_command_the_double_cannot_run_fails_the_revision_and_says_why(
    double: AzureDouble, client: Any, environment_id: str
):
    double.config.extra["probe_time_scale"] = 0.5
    body = app_body(environment_id, startup_failures=3, startup_period=1)
    container = body["properties"]["template"]["containers"][0]
    container["command"] = ["/bin/bash", "-c", "pip install gradio; python app.py"]

    with pytest.raises(HttpResponseError):
        _create(client, body)

    app = client.container_apps.get(RESOURCE_GROUP, "web")
    revision = app.properties.latest_revision_name
    (replica,) = client.container_apps_revision_replicas.list_replicas(
        RESOURCE_GROUP, "web", revision
    ).value
    assert replica.properties.running_state == "NotRunning"
    assert "the double runs only Python commands" in replica.properties.running_state_details
    token = client.container_apps.get_auth_token(RESOURCE_GROUP, "web").properties.token
    with _https(double) as https:
        logs = https.get(
            replica.properties.containers[0].log_stream_endpoint,
            params={"tailLines": "10", "follow": "false", "output": "text"},
            headers={"Authorization": f"Bearer {token}"},
        ).text
    assert "the double runs only Python commands" in logs

"""The azure replica: the container app's revisions (azure-mgmt-appcontainers).

A roll-out updates the app's template so that ACA creates a new revision pinned to a release:
`ACA_INFER_RELEASE` (the bootstrap reads it first) and `ACA_INFER_INSTANCE_ID` (one
per revision; the server's /health names both) in the container's environment, and a revision
suffix naming the release. In Single revision mode ACA keeps the old revision serving until the
new one is ready, so the deploy waits for the public endpoint's /health to name the new revision
and its /ready to answer 200 (a serverless GPU cold start takes minutes: 502/503/504 are waited
through until the timeout). A revision that fails, or is not ready in time, is deactivated, and
the reason carries the last lines of its replica's console (the log stream).

Only the template is sent (a PATCH): secrets and ingress stay as provision set them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from provision.azure.arm import Arm, azure_errors
from provision.errors import OperationError
from provision.readiness import wait_until_ready
from provision.targets import Progress, ReadyState, ReplicaIdentity

RELEASE_VARIABLE = "ACA_INFER_RELEASE"
INSTANCE_VARIABLE = "ACA_INFER_INSTANCE_ID"
FAILED_LOG_LINES = 15
ALIVE_CHECK_SECONDS = 3.0  # how often the wait asks ARM whether the new revision failed


def container_env(template: dict[str, Any]) -> dict[str, str]:
    containers = template.get("containers") or [{}]
    return {str(v.get("name")): str(v.get("value", "")) for v in containers[0].get("env") or []}


def pinned_template(template: dict[str, Any], release: str, instance_id: str) -> dict[str, Any]:
    """The app's template with the first container pinned to `release` and a new instance id,
    and a revision suffix naming the release (unique: a release may be rolled out again)."""
    containers = [dict(c) for c in template.get("containers") or []]
    pinned = {RELEASE_VARIABLE: release, INSTANCE_VARIABLE: instance_id}
    kept = [v for v in containers[0].get("env") or [] if v.get("name") not in pinned]
    containers[0]["env"] = [*kept, *({"name": k, "value": v} for k, v in pinned.items())]
    return {**template, "containers": containers, "revisionSuffix": f"{release}-{instance_id[:6]}"}


class AzureReplica:
    def __init__(self, arm: Arm, app_name: str, endpoint: str) -> None:
        self.arm = arm
        self.app_name = app_name
        self.endpoint = endpoint.rstrip("/")

    # -- the app as ARM has it -----------------------------------------------------------------

    def _app(self) -> dict[str, Any]:
        with azure_errors(f"reading container app {self.app_name}"):
            app = self.arm.apps.container_apps.get(self.arm.group, self.app_name)
        body: dict[str, Any] = app.as_dict()
        return body

    @staticmethod
    def _properties(app: dict[str, Any]) -> dict[str, Any]:
        properties: dict[str, Any] = app.get("properties") or {}
        return properties

    def template(self) -> dict[str, Any]:
        """The app's template as ARM has it (what its next revision runs)."""
        template: dict[str, Any] = self._properties(self._app()).get("template") or {}
        return template

    def _revision(self, name: str) -> dict[str, Any]:
        with azure_errors(f"reading revision {name}"):
            revision = self.arm.apps.container_apps_revisions.get_revision(
                self.arm.group, self.app_name, name
            )
        body: dict[str, Any] = revision.as_dict()
        return body

    def _identity_of(self, template: dict[str, Any]) -> ReplicaIdentity | None:
        env = container_env(template)
        if RELEASE_VARIABLE not in env or INSTANCE_VARIABLE not in env:
            return None  # not rolled out by a deploy: nothing pins a release
        return ReplicaIdentity(self.endpoint, env[RELEASE_VARIABLE], env[INSTANCE_VARIABLE])

    def _live(self) -> tuple[str, ReplicaIdentity] | None:
        """The revision ACA last made ready (the one serving; a failed roll-out never is) and
        whom it pins; None when there is none, it pins nothing, or the app is stopped."""
        properties = self._properties(self._app())
        revision = properties.get("latestReadyRevisionName")
        if not revision or properties.get("runningStatus") == "Stopped":
            return None
        served = self._properties(self._revision(revision)).get("template") or {}
        identity = self._identity_of(served)
        return (str(revision), identity) if identity is not None else None

    # -- the Replica protocol ------------------------------------------------------------------

    def identity(self) -> ReplicaIdentity | None:
        live = self._live()
        return live[1] if live else None

    def is_running(self) -> bool:
        return self._live() is not None

    def settings_changed(self) -> list[str]:
        return []  # provision applies runtime settings by rolling out the app's template itself

    def _update(self, release: str) -> tuple[str, ReplicaIdentity, Any]:
        app = self._app()
        instance_id = secrets.token_hex(8)
        current = self._properties(app).get("template") or {}
        template = pinned_template(current, release, instance_id)
        with azure_errors(f"updating container app {self.app_name}"):
            poller = self.arm.apps.container_apps.begin_update(
                self.arm.group,
                self.app_name,
                {"location": app["location"], "properties": {"template": template}},
            )
        revision = f"{self.app_name}--{template['revisionSuffix']}"
        return revision, ReplicaIdentity(self.endpoint, release, instance_id), poller

    def restart(self, release: str | None = None) -> None:
        """In place: restart the live revision when it already runs `release` (only the model
        on the share changed); otherwise the app's template is updated to pin it."""
        live = self._live()
        if live is not None and (release is None or live[1].release == release):
            with azure_errors(f"restarting revision {live[0]}"):
                self.arm.apps.container_apps_revisions.restart_revision(
                    self.arm.group, self.app_name, live[0]
                )
            return
        if release is None:
            raise OperationError(
                f"container app {self.app_name} has no live revision to restart; deploy first"
            )
        self._update(release)

    def wait_ready(self, timeout: float, progress: Progress) -> ReadyState:
        """Wait until the revision rolled out last serves (its identity on /health) and is
        ready; when that one was deactivated (a roll-out that never got ready: the app's
        template still names it), the revision serving instead."""
        properties = self._properties(self._app())
        revision = str(properties.get("latestRevisionName"))
        template = properties.get("template") or {}
        serving = properties.get("latestReadyRevisionName")
        if serving and serving != revision:
            latest = self._properties(self._revision(revision))
            if not latest.get("active", True):
                revision = str(serving)
                template = self._properties(self._revision(revision)).get("template") or {}
        identity = self._identity_of(template)
        if identity is None:
            return ReadyState(False, f"container app {self.app_name} runs no pinned release")
        return wait_until_ready(identity, timeout, self._failure_check(revision, None), progress)

    def roll_out(self, release: str, timeout: float, progress: Progress) -> ReadyState:
        revision, identity, poller = self._update(release)
        progress(f"rolling out revision {revision} (release {release}); the live one keeps serving")
        state = wait_until_ready(identity, timeout, self._failure_check(revision, poller), progress)
        if state.ready:
            return state
        logs = self._revision_logs(revision, FAILED_LOG_LINES)
        progress(f"deactivating revision {revision}")
        with azure_errors(f"deactivating revision {revision}"):
            self.arm.apps.container_apps_revisions.deactivate_revision(
                self.arm.group, self.app_name, revision
            )
        tail = f"\nlast lines of {revision}'s console:\n{logs}" if logs else ""
        return ReadyState(False, f"revision {revision}: {state.reason}{tail}")

    def _failure_check(self, revision: str, poller: Any) -> Callable[[], str | None]:
        """Why the revision will never get ready (it failed), or None while it may still."""
        last = [0.0]

        def failed() -> str | None:
            if poller is not None and poller.done():
                try:
                    poller.result()
                except Exception as error:  # ARM's failure, whatever its type, is the reason shown
                    return " ".join(str(getattr(error, "message", error)).split())[:400]
            if time.monotonic() - last[0] < ALIVE_CHECK_SECONDS:
                return None
            last[0] = time.monotonic()
            properties = self._properties(self._revision(revision))
            if properties.get("provisioningState") == "Failed":
                return str(properties.get("runningStateDetails") or "the revision failed")
            return None

        return failed

    def stop(self) -> bool:
        if not self.is_running():
            return False
        with azure_errors(f"stopping container app {self.app_name}"):
            self.arm.apps.container_apps.begin_stop(self.arm.group, self.app_name).result()
        return True

    # -- logs ----------------------------------------------------------------------------------

    def _revision_logs(self, revision: str, lines: int) -> str:
        """The console of the revision's replicas (ACA's log stream), newest replica last."""
        with azure_errors(f"reading the replicas of revision {revision}"):
            replicas = self.arm.apps.container_apps_revision_replicas.list_replicas(
                self.arm.group, self.app_name, revision
            )
            token = self.arm.apps.container_apps.get_auth_token(self.arm.group, self.app_name)
        urls = [
            container.log_stream_endpoint
            for replica in replicas.value
            for container in (replica.properties.containers or [])
            if container.log_stream_endpoint
        ]
        if not urls:
            return ""
        headers = {"Authorization": f"Bearer {token.properties.token}"}
        params: dict[str, str | int] = {"tailLines": lines, "follow": "false", "output": "text"}
        try:
            response = httpx.get(urls[-1], headers=headers, params=params, timeout=10.0)
        except httpx.HTTPError as error:
            return f"(the log stream of {urlsplit(urls[-1]).netloc} did not answer: {error})"
        if response.status_code != 200:
            return f"(the log stream answered {response.status_code})"
        return "\n".join(response.text.splitlines()[-lines:])

    def logs(self, lines: int = 40) -> str:
        revision = self._properties(self._app()).get("latestRevisionName")
        return self._revision_logs(str(revision), lines) if revision else ""

"""Day-two operations of the azure target: `down`, `status`, `stop|start`, `keys rotate`, `logs`.

`down` deletes only what provision created: the resources it tagged `created-by: aca-infer`.
Everything it merely referenced (the fine-tuning run's environment, storage account, share,
workspace) is kept, and so is the resource group, which may hold resources of others. Without
--purge a storage account provision created is kept too: it holds the share with the model
files. With --purge it goes (share and all) when it is aca-infer's, and otherwise only the
share's `app/` area (what deploy wrote) and the model files `aca-infer upload-model` uploaded
(recorded on the share) are deleted; every other file on the share is kept.

`keys rotate` stores the new key in the app's secrets, then rolls out a new revision on the live
release (a secret change alone restarts nothing); in Single revision mode ACA keeps the old
revision serving until the new one is ready, so the other key works throughout.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from provision.azure.arm import Arm, azure_errors
from provision.azure.preflight import CREATED_BY, CREATED_BY_TAG, Existing
from provision.azure.replica import RELEASE_VARIABLE, AzureReplica, container_env
from provision.azure.scope import logs_endpoint
from provision.azure.share import AzureShare
from provision.errors import NotReadyError, OperationError, PrerequisiteError
from provision.keys import KEY_NAMES, generate_key
from provision.release import APP_DIR as APP_AREA
from provision.targets import (
    DownPlan,
    DownResult,
    LogQuery,
    PlannedItem,
    Progress,
    RotateResult,
    ScaleResult,
    TargetDescription,
)
from provision.upload_record import NOT_UPLOADED_REASON, UPLOADED_REASON, purge_split

TARGET = "azure"
MAX_TAIL = 300  # what the Container Apps log stream accepts for tailLines
CONSOLE_TABLE = "ContainerAppConsoleLogs_CL"
SYSTEM_TABLE = "ContainerAppSystemLogs_CL"
OURS = f"created by provision (tag {CREATED_BY_TAG}={CREATED_BY})"
NOT_OURS = f"not created by aca-infer (no {CREATED_BY_TAG}={CREATED_BY} tag): never deleted"


@dataclass(frozen=True)
class Resource:
    kind: str  # "container app", ...
    name: str
    resource_id: str
    ours: bool
    delete: Callable[[], None]


def _delete_empty_folders(share: AzureShare, files: tuple[str, ...]) -> None:
    """The folders the deleted files leave empty, deepest first; a folder that still holds
    another's file stays."""
    folders = {
        "/".join(parts[:depth])
        for parts in (path.split("/") for path in files)
        for depth in range(1, len(parts))
    }
    for folder in sorted(folders, key=lambda f: f.count("/"), reverse=True):
        share.delete_empty_folder(folder)


def _tagged(found: Existing | None) -> bool:
    return found is not None and found.tags.get(CREATED_BY_TAG) == CREATED_BY


class AzureDayTwo:
    """The operations on a provisioned app; `config` is infra/inference.config.json."""

    def __init__(self, arm: Arm, config: dict[str, Any], replica: AzureReplica) -> None:
        self.arm = arm
        self.config = config
        self.replica = replica
        self.app_name = str(config["ACA_APP_NAME"])

    def _id(self, resource_type: str, name: str) -> str:
        scope = self.arm.scope
        return (
            f"/subscriptions/{scope.subscription_id}/resourceGroups/{scope.resource_group}"
            f"/providers/{resource_type}/{name}"
        )

    # -- down ----------------------------------------------------------------------------------

    def _resources(self) -> list[Resource]:
        """The resources provision deploys, in deletion order (an app before its environment),
        each that exists with whether provision created it."""
        arm, group = self.arm, self.arm.group
        apps, logs, storage = arm.apps, arm.logs, arm.storage
        environment = str(self.config.get("ACA_ENVIRONMENT_NAME") or "")
        workspace = str(self.config.get("LOG_ANALYTICS_NAME") or "")
        account = str(self.config.get("STORAGE_ACCOUNT_NAME") or "")
        candidates: list[tuple[str, str, str, Any, Callable[[], None]]] = [
            (
                "container app",
                self.app_name,
                "Microsoft.App/containerApps",
                arm.app,
                lambda: apps.container_apps.begin_delete(group, self.app_name).result(),
            ),
            (
                "Container Apps environment",
                environment,
                "Microsoft.App/managedEnvironments",
                arm.environment,
                lambda: apps.managed_environments.begin_delete(group, environment).result(),
            ),
            (
                "Log Analytics workspace",
                workspace,
                "Microsoft.OperationalInsights/workspaces",
                arm.workspace,
                lambda: logs.workspaces.begin_delete(group, workspace).result(),
            ),
            (
                "storage account",
                account,
                "Microsoft.Storage/storageAccounts",
                arm.storage_account,
                lambda: storage.storage_accounts.delete(group, account),
            ),
        ]
        found: list[Resource] = []
        for kind, name, resource_type, read, delete in candidates:
            existing = read(name) if name else None
            if existing is not None:
                resource_id = self._id(resource_type, name)
                found.append(Resource(kind, name, resource_id, _tagged(existing), delete))
        return found

    def _split(self, purge: bool) -> tuple[list[tuple[Resource, str]], list[tuple[Resource, str]]]:
        delete: list[tuple[Resource, str]] = []
        keep: list[tuple[Resource, str]] = []
        for resource in self._resources():
            if not resource.ours:
                keep.append((resource, NOT_OURS))
            elif resource.kind == "storage account" and not purge:
                keep.append(
                    (
                        resource,
                        f"{OURS}, but it holds the share and the model files (--purge deletes it)",
                    )
                )
            elif resource.kind == "storage account":
                delete.append((resource, f"{OURS}; --purge: with its share and model files"))
            else:
                delete.append((resource, OURS))
        return delete, keep

    def _share_area(self, purge: bool, delete: list[tuple[Resource, str]]) -> str | None:
        """The share's app area that --purge deletes when its storage account stays."""
        if not purge or any(r.kind == "storage account" for r, _ in delete):
            return None
        return f"{self.config.get('STORAGE_ACCOUNT_NAME')}/{self.config.get('FILE_SHARE_NAME')}"

    def plan_down(self, purge: bool, share: Callable[[], AzureShare]) -> DownPlan:
        delete, keep = self._split(purge)
        planned = [PlannedItem(f"{r.kind} {r.resource_id}", why) for r, why in delete]
        kept = [PlannedItem(f"{r.kind} {r.resource_id}", why) for r, why in keep]
        area = self._share_area(purge, delete)
        if area is not None:
            planned.append(
                PlannedItem(f"{APP_AREA}/ on share {area}", "the app area deploy wrote (--purge)")
            )
            split = purge_split(share())
            planned += [
                PlannedItem(f"{folder}/ on share {area}", UPLOADED_REASON)
                for folder in split.uploaded
            ]
            kept += [
                PlannedItem(f"{folder}/ on share {area}", NOT_UPLOADED_REASON)
                for folder in split.others
            ]
        group = self.arm.scope.resource_group
        kept.append(
            PlannedItem(
                f"resource group {group}",
                "it may hold resources aca-infer did not create; delete it yourself if empty: "
                f"az group delete --name {group}",
            )
        )
        return DownPlan(TARGET, planned, kept)

    def down(self, purge: bool, share: Callable[[], AzureShare], progress: Progress) -> DownResult:
        delete, keep = self._split(purge)
        removed: list[str] = []
        for resource, _ in delete:
            progress(f"deleting {resource.kind} {resource.name}")
            with azure_errors(f"deleting {resource.kind} {resource.name}"):
                resource.delete()
            removed.append(f"{resource.kind} {resource.resource_id}")
        area = self._share_area(purge, delete)
        uploaded: tuple[str, ...] = ()
        others: tuple[str, ...] = ()
        if area is not None:
            files = share()
            split = purge_split(files)  # before app/ goes: the record of uploads lives there
            uploaded, others = split.uploaded, split.others
            progress(
                f"deleting {len(split.uploaded_files)} file(s) upload-model uploaded on "
                f"{files.describe()}"
            )
            for path in split.uploaded_files:
                files.delete(path)
            _delete_empty_folders(files, split.uploaded_files)
            removed += [f"{folder}/ on share {area}" for folder in uploaded]
            paths = list(files.list_files(f"{APP_AREA}/"))
            progress(f"deleting {len(paths)} file(s) under {APP_AREA}/ on {files.describe()}")
            for path in paths:
                files.delete(path)
            removed.append(f"{APP_AREA}/ on share {area}")
        kept = [f"{r.kind} {r.resource_id}" for r, _ in keep]
        kept += [f"{folder}/ on share {area}" for folder in others]
        kept.append(f"resource group {self.arm.scope.resource_group}")
        stopped = any(r.kind == "container app" for r, _ in delete)
        return DownResult(target=TARGET, stopped=stopped, removed=removed, kept=kept)

    # -- status --------------------------------------------------------------------------------

    def _app(self) -> dict[str, Any]:
        with azure_errors(f"reading container app {self.app_name}"):
            app = self.arm.apps.container_apps.get(self.arm.group, self.app_name)
        properties: dict[str, Any] = app.as_dict().get("properties") or {}
        return properties

    def _profile_type(self, environment_id: str, profile: str | None) -> str | None:
        if not environment_id or not profile:
            return None
        environment = self.arm.environment(environment_id.rstrip("/").rsplit("/", 1)[-1])
        if environment is None:
            return None
        types = {name.lower(): kind for name, kind in environment.profiles}
        return types.get(profile.lower())

    def _replicas(self, revision: str) -> list[dict[str, Any]]:
        with azure_errors(f"reading the replicas of revision {revision}"):
            listed = self.arm.apps.container_apps_revision_replicas.list_replicas(
                self.arm.group, self.app_name, revision
            )
        return [replica.as_dict().get("properties") or {} for replica in listed.value]

    def describe(self) -> TargetDescription:
        app = self._app()
        scale = (app.get("template") or {}).get("scale") or {}
        revision = app.get("latestReadyRevisionName")
        state = str(app.get("runningStatus") or app.get("provisioningState") or "unknown")
        replicas = self._replicas(str(revision)) if revision and state != "Stopped" else []
        states = sorted({str(r.get("runningState") or "unknown") for r in replicas})
        profile = app.get("workloadProfileName")
        return TargetDescription(
            app_state=state,
            replica_count=len(replicas),
            replica_state=", ".join(states) or None,
            workload_profile=profile,
            workload_profile_type=self._profile_type(
                str(app.get("managedEnvironmentId") or app.get("environmentId") or ""), profile
            ),
            min_replicas=scale.get("minReplicas"),
            max_replicas=scale.get("maxReplicas"),
            revision=revision,
        )

    # -- stop / start --------------------------------------------------------------------------

    def scale(self, running: bool, ready_timeout: float, progress: Progress) -> ScaleResult:
        """The app's stop/start operations: stopped, no replica runs (nothing billed) and the
        app, its revisions, secrets and share stay; started, its replicas come back at
        minReplicas (a scale-to-zero app starts one at the first request)."""
        endpoint = self.replica.endpoint
        stopped = self._app().get("runningStatus") == "Stopped"
        apps = self.arm.apps.container_apps
        if not running:
            if stopped:
                return ScaleResult(TARGET, "stopped", False, endpoint)
            progress(f"stopping container app {self.app_name} (scaled to zero, nothing deleted)")
            with azure_errors(f"stopping container app {self.app_name}"):
                apps.begin_stop(self.arm.group, self.app_name).result()
            return ScaleResult(TARGET, "stopped", True, endpoint)
        if not stopped and self.replica.is_running():
            return ScaleResult(TARGET, "started", False, endpoint, ready=True)
        if RELEASE_VARIABLE not in container_env(self.replica.template()):
            # Started or not, a revision no deploy made serves nothing: say so, change nothing.
            raise PrerequisiteError(
                "nothing is deployed on the azure target yet; run: aca-infer deploy --target azure"
            )
        if stopped:
            progress(f"starting container app {self.app_name}")
            with azure_errors(f"starting container app {self.app_name}"):
                apps.begin_start(self.arm.group, self.app_name).result()
        progress("waiting until the replica is ready")
        state = self.replica.wait_ready(ready_timeout, progress)
        if not state.ready:
            raise NotReadyError(f"the replica did not become ready: {state.reason}")
        return ScaleResult(TARGET, "started", stopped, endpoint, ready=True)

    # -- keys rotate ---------------------------------------------------------------------------

    def rotate_key(self, which: str, ready_timeout: float, progress: Progress) -> RotateResult:
        secret = KEY_NAMES[which]
        current = self.arm.app_secrets(self.app_name)
        if secret not in current:
            raise OperationError(
                f"container app {self.app_name} has no {secret} secret; "
                "run: aca-infer provision --target azure --force"
            )
        live = self.replica.identity()
        secrets = [{"name": name, "value": value} for name, value in current.items()]
        for entry in secrets:
            if entry["name"] == secret:
                entry["value"] = generate_key()
        with azure_errors(f"updating the secrets of container app {self.app_name}"):
            location = self.arm.apps.container_apps.get(self.arm.group, self.app_name).location
            self.arm.apps.container_apps.begin_update(
                self.arm.group,
                self.app_name,
                {"location": location, "properties": {"configuration": {"secrets": secrets}}},
            ).result()
        progress(f"stored a new {which} key in container app {self.app_name}'s secrets")
        if live is None or live.release is None:
            return RotateResult(
                TARGET, which, False, False, "no revision serves: the next deploy uses it"
            )
        # Replicas read secrets when they start: a new revision on the same release takes the
        # new key over, and ACA switches traffic to it only once it is ready.
        state = self.replica.roll_out(live.release, ready_timeout, progress)
        if not state.ready:
            raise NotReadyError(
                f"a revision with the new {which} key did not become ready ({state.reason}); "
                "the live revision keeps serving with the old key, and the new key is stored: "
                f"retry with aca-infer keys rotate --{which}"
            )
        return RotateResult(
            TARGET,
            which,
            True,
            True,
            "a new revision with the new key took over once ready (Single revision mode)",
        )

    # -- logs ----------------------------------------------------------------------------------

    def log_lines(self, query: LogQuery) -> Iterator[str]:
        if query.since is not None:
            yield from self._workspace_lines(query.since, query.system, query.tail)
            return
        tail = min(query.tail or MAX_TAIL, MAX_TAIL)
        url = self._stream_url(query.system)
        if url is None:
            return
        with azure_errors(f"getting a log stream token for container app {self.app_name}"):
            token = self.arm.apps.container_apps.get_auth_token(self.arm.group, self.app_name)
        headers = {"Authorization": f"Bearer {token.properties.token}"}
        params: dict[str, str | int] = {
            "tailLines": tail,
            "follow": "true" if query.follow else "false",
            "output": "text",
        }
        try:
            with (
                httpx.Client(timeout=httpx.Timeout(10.0, read=None)) as client,
                client.stream("GET", url, headers=headers, params=params) as response,
            ):
                if response.status_code != 200:
                    raise OperationError(
                        f"the log stream of container app {self.app_name} answered "
                        f"{response.status_code}: {response.read().decode()[:200]}"
                    )
                yield from response.iter_lines()
        except httpx.HTTPError as error:
            raise OperationError(
                f"the log stream of container app {self.app_name} did not answer: {error}"
            ) from error

    def _workspace_lines(self, since: timedelta, system: bool, tail: int | None) -> Iterator[str]:
        """The app's lines of the last `since` from the environment's Log Analytics workspace
        (where Container Apps sends console and system logs, a few minutes behind)."""
        from azure.monitor.query import LogsQueryClient, LogsQueryStatus

        name = str(self.config.get("LOG_ANALYTICS_NAME") or "")
        if not name:
            raise PrerequisiteError(
                "logs --since: infra/inference.config.json names no LOG_ANALYTICS_NAME; "
                "run aca-infer provision --target azure again"
            )
        with azure_errors(f"reading Log Analytics workspace {name}"):
            workspace = self.arm.logs.workspaces.get(self.arm.group, name)
        endpoint = logs_endpoint(os.environ)
        client = LogsQueryClient(
            self.arm.credential,
            endpoint=endpoint.url,
            credential_scopes=[endpoint.credential_scope],
        )
        seconds = max(int(since.total_seconds()), 1)
        kql = (
            f"{SYSTEM_TABLE if system else CONSOLE_TABLE}"
            f" | where ContainerAppName_s == '{self.app_name}'"
            f" | where TimeGenerated > ago({seconds}s)"
            " | order by TimeGenerated asc"
            " | project TimeGenerated, Log_s"
        )
        action = f"querying Log Analytics workspace {name}"
        with azure_errors(action):
            result = client.query_workspace(workspace.customer_id, kql, timespan=since)
        if result.status == LogsQueryStatus.SUCCESS:
            tables, problem = result.tables, None
        else:
            tables, problem = result.partial_data, result.partial_error
        rows = [row for table in tables for row in table.rows]
        for row in rows[-tail:] if tail else rows:
            yield f"{row[0].isoformat()} {row[1]}"
        if problem is not None:
            raise OperationError(
                f"{action}: partial results only ({len(rows)} lines above): "
                f"{getattr(problem, 'code', 'Error')}: {getattr(problem, 'message', problem)}"
            )

    def _stream_url(self, system: bool) -> str | None:
        """The live revision's newest replica console, or the app's event stream."""
        app = self._app()
        if system:
            base = str(app.get("eventStreamEndpoint") or "")
            if not base:
                raise OperationError(f"container app {self.app_name} has no event stream")
            return base
        revision = app.get("latestReadyRevisionName") or app.get("latestRevisionName")
        if not revision:
            return None
        with azure_errors(f"reading the replicas of revision {revision}"):
            listed = self.arm.apps.container_apps_revision_replicas.list_replicas(
                self.arm.group, self.app_name, revision
            )
        urls = [
            container.log_stream_endpoint
            for replica in listed.value
            for container in (replica.properties.containers or [])
            if container.log_stream_endpoint
        ]
        if not urls:
            raise PrerequisiteError(
                f"revision {revision} of container app {self.app_name} has no replica to read "
                "the console of (stopped or scaled to zero): aca-infer start --target azure, "
                "or logs --system for the platform's events"
            )
        return str(urls[-1])

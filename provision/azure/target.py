"""The azure target: provision = resolve → validate → preflight → compile → deploy → config.

Deploy works on the share (Azure Files, share.py) and the replica (the container app's
revisions, replica.py) named by what provision wrote in infra/inference.config.json.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import Any

from provision.azure.arm import Arm, azure_errors
from provision.azure.bicep import compile_template
from provision.azure.day_two import AzureDayTwo
from provision.azure.deployment import (
    DeploymentRecord,
    deploy,
    digest,
    succeeded_outputs,
    what_if,
)
from provision.azure.naming import check_subscription_id
from provision.azure.preflight import CREATED_BY, CREATED_BY_TAG, Preflight, run_preflight
from provision.azure.profiles import cold_start_note
from provision.azure.replica import AzureReplica, container_env
from provision.azure.request import SECURE_PARAMETERS, ProvisionRequest, build_request
from provision.azure.scope import PUBLIC_ARM_ENDPOINT, Scope, ScopeFlags, arm_endpoint
from provision.azure.share import AzureShare, ShareLocation
from provision.errors import InputError, OperationError
from provision.fsutil import write_json_atomic
from provision.keys import PRIMARY, SECONDARY, generate_keys
from provision.parameters import template_path
from provision.target_state import TargetState
from provision.targets import (
    ApiKeys,
    DownPlan,
    DownResult,
    LogQuery,
    PlannedItem,
    Progress,
    ProvisionPlan,
    ProvisionResult,
    ProvisionSettings,
    RotateResult,
    ScaleResult,
    TargetDescription,
    read_provisioned_config,
)
from provision.wheelhouse import DEFAULT_IMAGE, ImagePlatform, platform_for_image

CONFIG_FILE = Path("infra/inference.config.json")
RECORD_FILE = Path(".aca-infer/azure/last-deployment.json")


class AzureTarget:
    name = "azure"

    def __init__(self, project_dir: Path, environ: Mapping[str, str] | None = None) -> None:
        self.project_dir = project_dir.resolve()
        self.environ = dict(os.environ if environ is None else environ)
        self.config_path = self.project_dir / CONFIG_FILE
        self.record_path = self.project_dir / RECORD_FILE

    # -- what provision wrote --------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return read_provisioned_config(self.config_path, self.name)

    def _arm_from_config(self) -> tuple[Arm, dict[str, Any]]:
        config = self._config()
        subscription = str(config.get("SUBSCRIPTION_ID", ""))
        check_subscription_id(f"SUBSCRIPTION_ID in {self.config_path}", subscription)
        scope = Scope(
            subscription_id=subscription,
            resource_group=str(config["RESOURCE_GROUP_NAME"]),
            location=config.get("LOCATION"),
            arm=arm_endpoint(config.get("ARM_ENDPOINT"), self.environ),
        )
        return Arm(scope), config

    def image_platform(self) -> ImagePlatform | None:
        """The replica image's platform, when deploy must bring the server's wheels for it."""
        image = self._config().get("CONTAINER_IMAGE") or DEFAULT_IMAGE
        return platform_for_image(str(image))

    def endpoint(self) -> str:
        return str(self._config()["ACA_APP_ENDPOINT"])

    def ui_url(self) -> str:
        return self.endpoint() + "/ui"

    def keys(self) -> ApiKeys:
        arm, config = self._arm_from_config()
        arm.check_credential()
        secrets = arm.app_secrets(str(config["ACA_APP_NAME"]))
        if PRIMARY not in secrets or SECONDARY not in secrets:
            raise OperationError(
                f"container app {config['ACA_APP_NAME']} has no {PRIMARY}/{SECONDARY} secrets; "
                "run: aca-infer provision --target azure --force"
            )
        return ApiKeys(primary=secrets[PRIMARY], secondary=secrets[SECONDARY])

    @cached_property
    def _deploy_arm(self) -> tuple[Arm, dict[str, Any]]:
        arm, config = self._arm_from_config()
        arm.check_credential()
        return arm, config

    @cached_property
    def share(self) -> AzureShare:
        arm, config = self._deploy_arm
        account, name = str(config["STORAGE_ACCOUNT_NAME"]), str(config["FILE_SHARE_NAME"])
        with azure_errors(f"reading storage account {account}"):
            properties = arm.storage.storage_accounts.get_properties(arm.group, account)
        endpoint = str(properties.primary_endpoints.file)
        return AzureShare(ShareLocation(account, name, endpoint), arm)

    @cached_property
    def replica(self) -> AzureReplica:
        arm, config = self._deploy_arm
        return AzureReplica(arm, str(config["ACA_APP_NAME"]), self.endpoint())

    def check_deployable(self) -> None:
        """The model and the adapter the app's template names are on the share."""
        template = self.replica.template()
        env = container_env(template)
        for parameter, variable, marker in (
            ("modelPath", "ACA_INFER_MODEL_PATH", "config.json"),
            ("adapterPath", "ACA_INFER_ADAPTER_PATH", "adapter_config.json"),
        ):
            path = env.get(variable, "").strip("/")
            if not path:
                continue  # a template without it serves what the server defaults to
            if not self.share.exists(f"{path}/{marker}"):
                raise InputError(
                    f"{parameter} {path!r}: no {marker} at {path}/ on {self.share.describe()}; "
                    f"copy it there, or provision with --set {parameter}=..."
                )

    # -- day-two operations (day_two.py) ---------------------------------------------------

    @cached_property
    def _day_two(self) -> AzureDayTwo:
        arm, config = self._deploy_arm
        return AzureDayTwo(arm, config, self.replica)

    def _local_state(self) -> list[Path]:
        """What provision wrote here about the app: gone with it, so that the next provision
        deploys again rather than skip an unchanged deployment."""
        return [path for path in (self.config_path, self.record_path) if path.is_file()]

    def plan_down(self, purge: bool) -> DownPlan:
        plan = self._day_two.plan_down(purge, lambda: self.share)
        if not any(item.what.startswith("container app ") for item in plan.delete):
            return plan
        local = [
            PlannedItem(str(path), "what provision wrote about the deleted app")
            for path in self._local_state()
        ]
        return replace(plan, delete=[*plan.delete, *local])

    def down(self, purge: bool, progress: Progress) -> DownResult:
        local = self._local_state()
        result = self._day_two.down(purge, lambda: self.share, progress)
        if not result.stopped:
            return result
        for path in local:
            path.unlink()
        return replace(result, removed=[*result.removed, *(str(path) for path in local)])

    def describe(self) -> TargetDescription:
        return self._day_two.describe()

    def scale(self, running: bool, ready_timeout: float, progress: Progress) -> ScaleResult:
        return self._day_two.scale(running, ready_timeout, progress)

    def rotate_key(self, which: str, ready_timeout: float, progress: Progress) -> RotateResult:
        return self._day_two.rotate_key(which, ready_timeout, progress)

    def log_lines(self, query: LogQuery) -> Iterator[str]:
        return self._day_two.log_lines(query)

    # -- provision -----------------------------------------------------------------------

    def provision(
        self, settings: ProvisionSettings, progress: Progress
    ) -> ProvisionResult | ProvisionPlan:
        environ = dict(settings.environ) or self.environ
        flags = ScopeFlags(
            settings.subscription, settings.resource_group, settings.location, settings.arm_endpoint
        )
        request = build_request(self.project_dir, settings.set_flags, environ, flags, settings.ask)
        if settings.dry_run:
            return ProvisionPlan(target=self.name, request=request.describe())
        for note in request.notes:
            progress(note)
        # Compiling is local: a missing Bicep CLI or a broken template stops before Azure is asked.
        template_file = template_path(self.project_dir)
        template = compile_template(template_file, environ)
        arm = Arm(request.scope)
        preflight = run_preflight(arm, request, progress)
        values = _values(request, preflight)
        fingerprint = digest(template, values)
        if settings.what_if:
            return self._what_if(arm, request, preflight, template, values, environ)
        skipped = self._unchanged_outputs(arm, request, fingerprint, settings.force)
        if skipped is not None:
            progress(
                f"nothing changed since deployment {request.deployment_name} succeeded: "
                "skipping it (--force deploys anyway)"
            )
            return self._finish(request, values, skipped, skipped=True, progress=progress)
        for line in (
            *(f"reusing {what} (referenced, not modified)" for what in preflight.reused),
            *(f"updating {what} (created by aca-infer)" for what in preflight.updated),
            *(f"creating {what}" for what in preflight.created),
            *preflight.notes,
        ):
            progress(line)
        if not preflight.group_exists:
            progress(
                f"creating resource group {request.scope.resource_group} in {preflight.location}"
            )
            arm.create_resource_group(preflight.location, {CREATED_BY_TAG: CREATED_BY})
        keys = self._keys_for(arm, request, preflight, environ)
        progress(f"deploying {template_file.name} as {request.deployment_name} (several minutes)")
        outputs = deploy(arm, request.deployment_name, template, {**values, **keys}, progress)
        DeploymentRecord(
            request.deployment_name,
            request.scope.subscription_id,
            request.scope.resource_group,
            fingerprint,
        ).save(self.record_path)
        cold_start = cold_start_note(
            str(values.get("gpuProfileType", request.profile_type)),
            int(values.get("minimumInstanceCount", 0)),
        )
        if cold_start:
            progress(cold_start)
        return self._finish(
            request,
            values,
            outputs,
            skipped=False,
            progress=progress,
            created=not preflight.app_exists,
        )

    def _what_if(
        self,
        arm: Arm,
        request: ProvisionRequest,
        preflight: Preflight,
        template: Mapping[str, Any],
        values: Mapping[str, Any],
        environ: Mapping[str, str],
    ) -> ProvisionPlan:
        if preflight.group_exists:
            keys = self._keys_for(arm, request, preflight, environ)
            changes = [
                change.__dict__
                for change in what_if(arm, request.deployment_name, template, {**values, **keys})
            ]
        else:
            # ARM's what-if needs the resource group: without one, everything is new.
            group = request.scope.resource_group
            changes = [
                {"change_type": "Create", "resource_id": f"resource group {group}"},
                *({"change_type": "Create", "resource_id": what} for what in preflight.created),
            ]
        return ProvisionPlan(
            target=self.name,
            request=request.describe() | {"dry_run": False, "what_if": True},
            changes=tuple(changes),
        )

    def _keys_for(
        self,
        arm: Arm,
        request: ProvisionRequest,
        preflight: Preflight,
        environ: Mapping[str, str],
    ) -> dict[str, str]:
        """Given keys, else the app's own (kept across runs), else new ones."""
        stored = arm.app_secrets(str(request.value("acaAppName"))) if preflight.app_exists else {}
        generated = generate_keys()
        fallback = {PRIMARY: generated.primary, SECONDARY: generated.secondary}
        keys: dict[str, str] = {}
        for parameter, secret in zip(SECURE_PARAMETERS, (PRIMARY, SECONDARY), strict=True):
            keys[parameter] = (
                request.secure_from_environment.get(parameter)
                or stored.get(secret)
                or fallback[secret]
            )
        return keys

    def _unchanged_outputs(
        self, arm: Arm, request: ProvisionRequest, fingerprint: str, force: bool
    ) -> dict[str, Any] | None:
        record = DeploymentRecord.load(self.record_path)
        if force or record is None or not self.config_path.is_file():
            return None
        same = (
            record.digest == fingerprint
            and record.name == request.deployment_name
            and record.subscription_id == request.scope.subscription_id
            and record.resource_group == request.scope.resource_group
        )
        if not same or request.secure_from_environment:
            return None  # keys given in the environment may differ from the app's
        return succeeded_outputs(arm, request.deployment_name)

    def _finish(
        self,
        request: ProvisionRequest,
        values: Mapping[str, Any],
        outputs: Mapping[str, Any],
        skipped: bool,
        progress: Progress,
        created: bool = False,
    ) -> ProvisionResult:
        config = {name: value for name, value in outputs.items() if value is not None}
        endpoint = str(config.get("ACA_APP_ENDPOINT", ""))
        if endpoint and not endpoint.startswith(("https://", "http://")):
            endpoint = "https://" + endpoint
        config["ACA_APP_ENDPOINT"] = endpoint
        config["TARGET"] = self.name
        config["DEPLOYMENT_NAME"] = request.deployment_name
        config["CONTAINER_IMAGE"] = values.get("containerImage", DEFAULT_IMAGE)
        if request.scope.arm.url != PUBLIC_ARM_ENDPOINT:
            config["ARM_ENDPOINT"] = request.scope.arm.url
        write_json_atomic(self.config_path, config)
        TargetState(self.project_dir, self.name).save(request.stored)
        progress(f"wrote {self.config_path}")
        shown = {name: value for name, value in values.items() if name not in SECURE_PARAMETERS}
        return ProvisionResult(
            target=self.name,
            endpoint=endpoint,
            ui_url=endpoint + "/ui",
            config_path=str(self.config_path),
            share=f"{config.get('STORAGE_ACCOUNT_NAME')}/{config.get('FILE_SHARE_NAME')}",
            parameters=shown,
            created=created,
            skipped=skipped,
            notes=request.notes,
        )


def _values(request: ProvisionRequest, preflight: Preflight) -> dict[str, Any]:
    values = {name: entry.value for name, entry in request.parameters.items()}
    values.update(preflight.overrides)
    return values

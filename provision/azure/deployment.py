"""The ARM deployment: what-if, deploy with progress per operation, failures, outputs, and the
record of the last successful deployment that lets an unchanged re-run skip it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.azure.arm import Arm, arm_error_text, azure_errors
from provision.errors import OperationError
from provision.fsutil import read_json, write_json_atomic

Progress = Callable[[str], None]
NESTED = "microsoft.resources/deployments"
TERMINAL = ("succeeded", "failed", "canceled")
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class DeploymentRecord:
    """The last successful deployment (no secrets: a digest of what was deployed)."""

    name: str
    subscription_id: str
    resource_group: str
    digest: str

    @classmethod
    def load(cls, path: Path) -> DeploymentRecord | None:
        try:
            stored = read_json(path)
            return cls(**{key: str(stored[key]) for key in cls.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, path: Path) -> None:
        write_json_atomic(path, self.__dict__)


def state_of(value: Any) -> str:
    """A provisioning state as ARM spells it (the SDK hands out enum members or strings)."""
    return str(getattr(value, "value", value) or "")


def digest(template: Mapping[str, Any], parameters: Mapping[str, Any]) -> str:
    """Of the compiled template and the non-secret parameters: keys are kept across runs."""
    text = json.dumps({"template": template, "parameters": parameters}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _arm_parameters(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: {"value": value} for name, value in values.items()}


def _properties(template: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    return {"mode": "Incremental", "template": template, "parameters": _arm_parameters(values)}


# -- what-if ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WhatIfChange:
    change_type: str
    resource_id: str
    properties_changed: tuple[str, ...] = ()


def what_if(
    arm: Arm, name: str, template: Mapping[str, Any], values: Mapping[str, Any]
) -> list[WhatIfChange]:
    with azure_errors(f"what-if of deployment {name}"):
        poller = arm.deployments.deployments.begin_what_if(
            arm.group, name, {"properties": _properties(template, values)}
        )
        result = poller.result()
    if getattr(result, "error", None):
        raise OperationError(f"what-if of deployment {name}: {arm_error_text(result.error)}")
    changes = getattr(getattr(result, "properties", None), "changes", None) or []
    return [
        WhatIfChange(
            change_type=state_of(change.change_type),
            resource_id=str(change.resource_id or change.symbolic_name or ""),
            properties_changed=tuple(str(d.path) for d in (change.delta or [])),
        )
        for change in changes
    ]


# -- deploy -------------------------------------------------------------------------------


@dataclass(frozen=True)
class OperationLine:
    key: str
    resource: str
    state: str
    error: str | None


def _operations(arm: Arm, deployment: str, depth: int = 0) -> Iterator[OperationLine]:
    """Every operation of a deployment, nested module deployments' operations included."""
    with azure_errors(f"listing the operations of deployment {deployment}"):
        operations = list(arm.deployments.deployment_operations.list(arm.group, deployment))
    for operation in operations:
        properties = operation.properties
        target = properties.target_resource
        if target is None:
            continue
        resource_type = str(target.resource_type or "")
        resource = f"{resource_type} {target.resource_name}"
        state = state_of(properties.provisioning_state)
        error = None
        message = properties.status_message
        if state.lower() == "failed" and message is not None:
            detail = getattr(message, "error", None)
            error = arm_error_text(detail) if detail is not None else str(message.status or "")
        yield OperationLine(str(operation.operation_id or resource), resource, state, error)
        if resource_type.lower() == NESTED and depth < 5 and target.resource_name:
            yield from _operations(arm, str(target.resource_name), depth + 1)


def _report(arm: Arm, name: str, seen: set[str], progress: Progress) -> None:
    for line in _operations(arm, name):
        if line.state.lower() in TERMINAL and line.key not in seen:
            seen.add(line.key)
            if not line.resource.lower().startswith(NESTED):
                progress(f"{line.state.lower():9} {line.resource}")


def deploy(
    arm: Arm,
    name: str,
    template: Mapping[str, Any],
    values: Mapping[str, Any],
    progress: Progress,
) -> dict[str, Any]:
    """Run the deployment, print operations as they finish; return its outputs as values."""
    from azure.core.exceptions import HttpResponseError

    seen: set[str] = set()
    with azure_errors(f"starting deployment {name}"):
        poller = arm.deployments.deployments.begin_create_or_update(
            arm.group,
            name,
            {"properties": _properties(template, values)},
            polling_interval=POLL_SECONDS,
        )
    try:
        while not poller.done():
            poller.wait(POLL_SECONDS)
            _report(arm, name, seen, progress)
        result = poller.result()
    except HttpResponseError as error:
        _report_failure(arm, name, error.error, progress)
        raise OperationError(
            f"deployment {name} failed: {arm_error_text(error)}; failed operations are listed above"
        ) from error
    _report(arm, name, seen, progress)
    state = state_of(result.properties.provisioning_state)
    if state.lower() != "succeeded":
        failure = result.properties.error
        _report_failure(arm, name, failure, progress)
        reason = arm_error_text(failure) if failure is not None else state
        raise OperationError(f"deployment {name} ended {state}: {reason}")
    return outputs_of(result)


def nested_errors(error: Any) -> Iterator[str]:
    """The innermost errors of an ARM error (its `details`, recursively), as one line each."""
    details = list(getattr(error, "details", None) or [])
    if not details:
        yield arm_error_text(error)
        return
    for detail in details:
        yield from nested_errors(detail)


def _report_failure(arm: Arm, name: str, error: Any, progress: Progress) -> None:
    """Each failed operation's code, message and target; else the error's nested details."""
    try:
        failed = [line for line in _operations(arm, name) if line.error]
    except OperationError as listing:
        progress(f"could not list the failed operations: {listing}")
        failed = []
    for line in failed:
        progress(f"failed    {line.resource}: {line.error}")
    if not failed and error is not None:
        for text in nested_errors(error):
            progress(f"failed    {text}")


def outputs_of(deployment: Any) -> dict[str, Any]:
    outputs = deployment.properties.outputs or {}
    return {name: entry.get("value") for name, entry in outputs.items()}


def succeeded_outputs(arm: Arm, name: str) -> dict[str, Any] | None:
    """The outputs of deployment `name` when it exists and succeeded, else None."""
    from azure.core.exceptions import ResourceNotFoundError

    with azure_errors(f"reading deployment {name}"):
        try:
            found = arm.deployments.deployments.get(arm.group, name)
        except ResourceNotFoundError:
            return None
    if state_of(found.properties.provisioning_state).lower() != "succeeded":
        return None
    return outputs_of(found)

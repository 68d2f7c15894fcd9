"""How results look: one JSON object on stdout with --output json, else a few readable lines."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

from provision.client import StatusResult
from provision.demo_model import BASE_MODEL_RELPATH, DemoModel, summary_lines
from provision.deploy import DeployResult, ReleasesResult, RollbackResult
from provision.doctor import DoctorResult
from provision.invoke import InvokeResult
from provision.model_upload import UploadModelResult
from provision.project_init import InitResult
from provision.targets import (
    ApiKeys,
    DownPlan,
    DownResult,
    LogsResult,
    ProvisionPlan,
    ProvisionResult,
    RotateResult,
    ScaleResult,
    TargetDescription,
)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def as_json(value: Any) -> str:
    return json.dumps(_plain(value), indent=2, default=str)


def _size(count: int) -> str:
    size = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def _next_steps(target: str, endpoint: str, ui_url: str) -> list[str]:
    return [
        f"Endpoint: {endpoint}/v1  (OpenAI-compatible; Azure ML format at {endpoint}/score)",
        f"UI:       {ui_url}",
        f"API key:  aca-infer keys show --target {target}",
        f"Stop:     aca-infer stop --target {target}  (scale to zero; `down` deletes)",
    ]


def _pending_lines(pending: list[str] | None, target: str) -> list[str]:
    if not pending:
        return []
    return [
        f"The running replica still uses the previous {', '.join(pending)}: the change takes "
        f"effect at the next `aca-infer deploy --target {target}` (`aca-infer up` applies it now)."
    ]


def text(result: Any, target: str) -> str:
    if isinstance(result, ProvisionResult):
        verb = "Provisioned" if result.created else "Updated"
        if result.skipped:
            verb = "Unchanged (deployment skipped):"
        return "\n".join(
            [f"{verb} the {result.target} target; config: {result.config_path}"]
            + [f"  {name} = {value}" for name, value in sorted(result.parameters.items())]
            + _pending_lines(result.restart_pending, target)
        )
    if isinstance(result, ProvisionPlan):
        return _plan_text(result)
    if isinstance(result, DeployResult):
        previous = f" (previous {result.previous_release})" if result.previous_release else ""
        action = "restarted" if result.restarted else "already live"
        return "\n".join(
            [
                f"Release {result.release}{previous} is ready ({action}): "
                f"{result.uploaded} uploaded ({_size(result.bytes_uploaded)}), "
                f"{result.unchanged} unchanged, {result.deleted} deleted",
                *_next_steps(target, result.endpoint, result.ui_url),
            ]
        )
    if isinstance(result, RollbackResult):
        return f"Rolled back to release {result.release} (from {result.previous_release}); ready"
    if isinstance(result, ReleasesResult):
        if not result.releases:
            return f"No release on the {result.target} share yet: aca-infer deploy"
        rows = [f"{'RELEASE':<16} {'DEPLOYED':<26} {'SIZE':>9} {'FILES':>5}  LIVE"]
        for info in result.releases:
            rows.append(
                f"{info.release:<16} {info.deployed_at or '-':<26} {_size(info.size):>9} "
                f"{info.files:>5}  {'*' if info.live else ''}"
            )
        return "\n".join(rows)
    if isinstance(result, UploadModelResult):
        return "\n".join(
            [
                f"Uploaded {result.uploaded} files ({_size(result.bytes_uploaded)}), "
                f"{result.unchanged} unchanged; {result.verified} verified on the share",
                f"  modelPath = {result.model_path}",
                f"  adapterPath = {result.adapter_path}",
                f"Kept for the {result.target} target; make it live: {result.next_step}",
            ]
        )
    if isinstance(result, DownResult):
        lines = ["Stopped the replica." if result.stopped else "No replica was running."]
        lines += [f"Removed {path}" for path in result.removed]
        lines += [f"Kept {path}" for path in result.kept]  # why: in the plan shown before
        return "\n".join(lines)
    if isinstance(result, InvokeResult):
        if len(result.answers) == 1:
            return result.answers[0]
        return "\n".join(f"[{i}] {answer}" for i, answer in enumerate(result.answers, 1))
    if isinstance(result, StatusResult):
        return _status_text(result, target)
    if isinstance(result, DownPlan):
        if not result.delete:
            return f"Nothing of the {result.target} target to delete."
        return "\n".join(
            ["Will delete:"]
            + [f"  {item.what}  ({item.why})" for item in result.delete]
            + (["Will keep:"] + [f"  {item.what}  ({item.why})" for item in result.keep])
            * bool(result.keep)
        )
    if isinstance(result, DoctorResult):
        return "\n".join(
            f"{'✓' if check.ok else '✗'} {check.name}: {check.detail}"
            + (f"\n    fix: {check.fix}" if check.fix else "")
            for check in result.checks
        )
    if isinstance(result, RotateResult):
        return (
            f"Rotated the {result.rotated} key ({result.how}); the other key is unchanged. "
            f"The new key: aca-infer keys show --target {result.target}"
        )
    if isinstance(result, ScaleResult):
        return _scale_text(result)
    if isinstance(result, LogsResult):
        return "\n".join(result.lines)
    if isinstance(result, InitResult):
        lines = [f"Created {path}" for path in result.created]
        lines += [f"Updated {path}" for path in result.updated]
        lines += [f"Kept {path} (exists; never overwritten)" for path in result.kept]
        lines += [f"note: {note}" for note in result.notes]
        if not result.created and not result.updated:
            lines.insert(0, f"Nothing to add in {result.project_dir}.")
        lines.append("Next: aca-infer up   (Azure; add --target local to try it on this machine)")
        return "\n".join(lines)
    if isinstance(result, DemoModel):
        return "\n".join(
            [
                *summary_lines(result),
                f"Serve it: aca-infer up --target local --set modelPath={BASE_MODEL_RELPATH}",
            ]
        )
    if isinstance(result, ApiKeys):
        return f"primary:   {result.primary}\nsecondary: {result.secondary}"
    if isinstance(result, dict):
        return "\n\n".join(text(part, target) for part in result.values())
    raise TypeError(f"no text form for {type(result).__name__}")


def _app_lines(app: TargetDescription | None) -> list[str]:
    if app is None:
        return []
    facts = [f"{app.replica_count} replica(s)"]
    if app.replica_state:
        facts.append(app.replica_state)
    if app.pid is not None:
        facts.append(f"pid {app.pid}, port {app.port}")
    if app.min_replicas is not None:
        facts.append(f"min {app.min_replicas}, max {app.max_replicas}")
    lines = [f"App:      {app.app_state}; {', '.join(facts)}"]
    if app.workload_profile:
        lines.append(f"Profile:  {app.workload_profile} ({app.workload_profile_type or '-'})")
    if app.revision:
        lines.append(f"Revision: {app.revision}")
    return lines


def _status_text(result: StatusResult, target: str) -> str:
    state = "ready" if result.ready else f"not ready ({result.reason})"
    deployed = result.last_deploy
    last = (
        f"{deployed.get('action')} of {deployed.get('release')} at {deployed.get('at')} "
        f"({'ready' if deployed.get('ready') else 'not ready'})"
        if deployed
        else "-"
    )
    instance = f", instance {result.instance_id}" if result.instance_id else ""
    return "\n".join(
        [
            f"Target:   {result.target}",
            *_app_lines(result.app),
            f"Replica:  {'running' if result.running else 'stopped'}, {state}",
            f"Release:  {result.release or '-'} (previous {result.previous_release or '-'})"
            f"{instance}",
            f"Deployed: {last}",
            *_next_steps(target, result.endpoint, result.ui_url),
            *_pending_lines(result.restart_pending, target),
        ]
    )


def _scale_text(result: ScaleResult) -> str:
    if result.action == "stopped":
        if not result.changed:
            return "The app was already scaled to zero; nothing runs."
        return (
            "Scaled to zero: no replica runs (nothing is billed); everything is kept. "
            f"Start again: aca-infer start --target {result.target}"
        )
    if not result.changed:
        return f"The app already runs; ready at {result.endpoint}"
    return f"Started: a replica runs and is ready at {result.endpoint}"


def _plan_text(plan: ProvisionPlan) -> str:
    scope = plan.request["scope"]
    lines = [
        f"Subscription:   {scope['subscription_id']}  ({scope['sources']['subscription']})",
        f"Resource group: {scope['resource_group']}  ({scope['sources']['resource_group']})",
        f"Location:       {scope['location']}",
        f"ARM endpoint:   {scope['arm_endpoint']}",
        f"Deployment:     {plan.request['deployment_name']}",
        "Parameters:",
    ]
    for name, entry in plan.request["parameters"].items():
        lines.append(f"  {name} = {json.dumps(entry['value'])}  ({entry['source']})")
    lines += [f"Note: {note}" for note in plan.request.get("notes", [])]
    if plan.changes is not None:
        lines.append("What-if:" if plan.changes else "What-if: no change")
        for change in plan.changes:
            changed = ", ".join(change.get("properties_changed", ()))
            lines.append(
                f"  {change['change_type']:10} {change['resource_id']}"
                + (f"  ({changed})" if changed else "")
            )
    return "\n".join(lines)


def show(result: Any, output: str, target: str) -> None:
    click.echo(as_json(result) if output == "json" else text(result, target))

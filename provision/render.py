"""How results look: one JSON object on stdout with --output json, else a few readable lines."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import click

from provision.client import InvokeResult, StatusResult
from provision.demo_model import BASE_MODEL_RELPATH, DemoModel, summary_lines
from provision.deploy import DeployResult, ReleasesResult, RollbackResult
from provision.model_upload import UploadModelResult
from provision.project_init import InitResult
from provision.targets import ApiKeys, DownResult, LogsResult, ProvisionPlan, ProvisionResult


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
        f"Stop:     aca-infer down --target {target}",
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
        lines += [f"Kept {path} (--purge removes it)" for path in result.kept]
        return "\n".join(lines)
    if isinstance(result, InvokeResult):
        return result.answer
    if isinstance(result, StatusResult):
        state = "ready" if result.ready else f"not ready ({result.reason})"
        return "\n".join(
            [
                f"Target:   {result.target}",
                f"Replica:  {'running' if result.running else 'stopped'}, {state}",
                f"Release:  {result.release or '-'} (previous {result.previous_release or '-'})",
                *_next_steps(target, result.endpoint, result.ui_url),
                *_pending_lines(result.restart_pending, target),
            ]
        )
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

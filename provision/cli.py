"""`aca-infer`: parse, call one core function, print, map errors to exit codes. No logic here.

Heavy modules (targets, Azure SDKs) are imported inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from provision.errors import AcaInferError
from provision.targets import TARGET_NAMES

F = TypeVar("F", bound=Callable[..., Any])
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Context:
    output: str
    project_dir: Path
    debug: bool

    def progress(self, message: str) -> None:
        from rich.console import Console

        # soft_wrap: a long line stays one line in logs and captured output.
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"[dim]· {message}[/dim]", markup=True
        )


def _fail(ctx: click.Context, message: str, code: int) -> None:
    state: Context | None = ctx.find_object(Context)
    click.echo(f"error: {message}", err=True)
    if state is not None and state.output == "json":
        from provision.render import as_json

        click.echo(as_json({"error": {"message": message, "exit_code": code}}))
    ctx.exit(code)


class Cli(click.Group):
    """Maps expected errors to one line and their exit code; tracebacks only with --debug."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AcaInferError as error:
            if _debug(ctx):
                traceback.print_exc()
            _fail(ctx, str(error), error.exit_code)
        except KeyboardInterrupt:
            _fail(ctx, "interrupted", EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as error:
            if _debug(ctx):
                traceback.print_exc()
            _fail(ctx, f"unexpected {type(error).__name__}: {error} (rerun with --debug)", 1)
        return None


def _debug(ctx: click.Context) -> bool:
    state: Context | None = ctx.find_object(Context)
    return bool(state and state.debug)


target_option = click.option(
    "--target",
    type=click.Choice(TARGET_NAMES),
    default="local",
    show_default=True,
    help="Where to run: `local` uses a folder as the share and a local process as the replica.",
)
set_option = click.option(
    "--set",
    "set_flags",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set a template parameter (highest precedence; repeatable). The value is kept for the "
    "target until changed; NAME=null forgets it.",
)
timeout_option = click.option(
    "--ready-timeout",
    type=float,
    default=600.0,
    show_default=True,
    help="Seconds to wait for the replica's /ready.",
)
_deploy_option_list = (
    click.option(
        "--app-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="The inference_app folder to deploy [default: <project-dir>/inference_app].",
    ),
    timeout_option,
    click.option(
        "--break-lock", is_flag=True, help="Remove a deploy lock left behind by a crashed deploy."
    ),
    click.option(
        "--restart",
        is_flag=True,
        help="Restart even when the release is unchanged (e.g. the model on the share changed).",
    ),
)


def deploy_options(command: F) -> F:
    for option in reversed(_deploy_option_list):
        command = option(command)
    return command


@click.group(cls=Cli)
@click.option(
    "--output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="`json` prints one JSON object on stdout; progress always goes to stderr.",
)
@click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The project checkout (holds infra/ and inference_app/).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="aca-infer")
@click.pass_context
def cli(ctx: click.Context, output: str, project_dir: Path, debug: bool) -> None:
    """Serve a fine-tuned LLM as an authenticated, autoscaling HTTPS endpoint."""
    ctx.obj = Context(output=output, project_dir=project_dir.resolve(), debug=debug)


pass_state = click.make_pass_decorator(Context)


def _target(state: Context, name: str) -> Any:
    from provision.targets import get_target

    return get_target(name, state.project_dir)


def _show(state: Context, result: Any, target: str) -> None:
    from provision.render import show

    show(result, state.output, target)


def _provision(
    state: Context,
    target: str,
    set_flags: tuple[str, ...],
    deploy_follows: bool = False,
    **azure_options: Any,
) -> Any:
    from provision.targets import ProvisionSettings

    given = [f"--{name.replace('_', '-')}" for name, value in azure_options.items() if value]
    if target != "azure" and given:
        raise click.UsageError(f"{given[0]} is an option of --target azure")
    ask = _prompt if sys.stdin.isatty() else None
    settings = ProvisionSettings(
        target=target,
        set_flags=set_flags,
        environ=dict(os.environ),
        deploy_follows=deploy_follows,
        ask=ask,
        **azure_options,
    )
    return _target(state, target).provision(settings, state.progress)


def _prompt(question: str) -> str:
    return str(click.prompt(question, err=True))


def _deploy_settings(
    state: Context, app_dir: Path | None, ready_timeout: float, break_lock: bool, restart: bool
) -> Any:
    from provision.deploy import DeploySettings

    return DeploySettings(
        source_dir=(app_dir or state.project_dir / "inference_app").resolve(),
        ready_timeout=ready_timeout,
        break_lock=break_lock,
        restart=restart,
    )


def _deploy(state: Context, target: str, settings: Any) -> Any:
    from provision.deploy import deploy

    return deploy(_target(state, target), settings, state.progress)


_azure_option_list = (
    click.option(
        "--subscription",
        default=None,
        help="Azure subscription id [default: AZURE_SUBSCRIPTION_ID, finetuning.config.json, "
        "the Azure CLI's default].",
    ),
    click.option(
        "--resource-group",
        "-g",
        default=None,
        help="Resource group [default: AZURE_RESOURCE_GROUP, finetuning.config.json].",
    ),
    click.option(
        "--location",
        "-l",
        default=None,
        help="Region [default: AZURE_LOCATION, the location parameter, the group's region].",
    ),
    click.option(
        "--arm-endpoint",
        default=None,
        help="Resource Manager endpoint of a non-public cloud [default: ACA_INFER_ARM_ENDPOINT, "
        "else https://management.azure.com]; ACA_INFER_ARM_SCOPE sets its token scope.",
    ),
    click.option(
        "--dry-run",
        is_flag=True,
        help="Print the resolved request (scope, parameters and their sources); no network call.",
    ),
    click.option("--what-if", is_flag=True, help="Print ARM's what-if changes; deploy nothing."),
    click.option(
        "--force", is_flag=True, help="Deploy even if nothing changed since the last success."
    ),
)


def azure_options(command: F) -> F:
    for option in reversed(_azure_option_list):
        command = option(command)
    return command


@cli.command()
@target_option
@set_option
@azure_options
@pass_state
def provision(state: Context, target: str, set_flags: tuple[str, ...], **azure: Any) -> None:
    """Create or update the infrastructure and write the config."""
    _show(state, _provision(state, target, set_flags, **azure), target)


@cli.command()
@target_option
@deploy_options
@pass_state
def deploy(state: Context, target: str, **options: Any) -> None:
    """Sync the inference code to the share as a new release and restart the replica."""
    _show(state, _deploy(state, target, _deploy_settings(state, **options)), target)


@cli.command()
@target_option
@set_option
@deploy_options
@pass_state
def up(state: Context, target: str, set_flags: tuple[str, ...], **options: Any) -> None:
    """Provision, then deploy."""
    settings = _deploy_settings(state, **options)  # bad deploy options change nothing
    provisioned = _provision(state, target, set_flags, deploy_follows=True)
    deployed = _deploy(state, target, settings)
    _show(state, {"provision": provisioned, "deploy": deployed}, target)


@cli.command()
@target_option
@timeout_option
@click.option(
    "--to",
    "to",
    default=None,
    metavar="RELEASE",
    help="The release to roll out (see `aca-infer releases`) [default: the previous one].",
)
@pass_state
def rollback(state: Context, target: str, ready_timeout: float, to: str | None) -> None:
    """Roll out an earlier release beside the running one; it takes over once ready."""
    from provision.deploy import rollback as roll_back

    result = roll_back(_target(state, target), ready_timeout, state.progress, to)
    _show(state, result, target)


@cli.command()
@target_option
@pass_state
def releases(state: Context, target: str) -> None:
    """List the releases kept on the share (id, date, size, files) and which one is live."""
    from provision.deploy import releases as list_releases

    _show(state, list_releases(_target(state, target)), target)


@cli.command("upload-model")
@target_option
@click.option(
    "--base",
    "base_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The base model's folder (config.json, weights, tokenizer).",
)
@click.option(
    "--adapter",
    "adapter_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The LoRA adapter's folder (adapter_config.json, adapter weights).",
)
@click.option(
    "--name",
    default=None,
    help="The adapter's folder under models/ on the share [default: qlora/qlora/gpu_model].",
)
@pass_state
def upload_model(
    state: Context, target: str, base_dir: Path, adapter_dir: Path, name: str | None
) -> None:
    """Check that the adapter fits the base, copy both to the share (resumable, verified) and
    point modelPath/adapterPath there."""
    from rich.console import Console
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    from provision.model_upload import UploadModelSettings, total_bytes
    from provision.model_upload import upload_model as upload
    from provision.target_state import TargetState

    settings = UploadModelSettings(base_dir.resolve(), adapter_dir.resolve(), name)
    columns = (*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("upload", total=total_bytes(settings))
        result = upload(
            _target(state, target),
            TargetState(state.project_dir, target),
            settings,
            state.progress,
            lambda count: bar.advance(task, count),
        )
    _show(state, result, target)


@cli.command()
@target_option
@click.option("--purge", is_flag=True, help="Also delete the model files on the local share.")
@pass_state
def down(state: Context, target: str, purge: bool) -> None:
    """Stop the replica and remove what provision created."""
    _show(state, _target(state, target).down(purge, state.progress), target)


@cli.command()
@target_option
@click.option("--message", "-m", required=True, help="The user message to send.")
@click.option("--system", default=None, help="An optional system prompt.")
@click.option("--model", default=None, help="Base model or adapter id (see /v1/models).")
@click.option("--max-tokens", type=int, default=64, show_default=True)
@click.option("--temperature", type=float, default=None, help="0 for greedy decoding.")
@pass_state
def invoke(
    state: Context,
    target: str,
    message: str,
    system: str | None,
    model: str | None,
    max_tokens: int,
    temperature: float | None,
) -> None:
    """Send a chat completion to the endpoint (with the API key) and print the answer."""
    from provision.client import InvokeSettings
    from provision.client import invoke as send

    settings = InvokeSettings(message, system, model, max_tokens, temperature)
    result = send(_target(state, target), settings)
    state.progress(
        f"model {result.model}, {result.usage.get('completion_tokens', '?')} tokens, "
        f"finish_reason {result.finish_reason}"
    )
    _show(state, result, target)


@cli.command()
@target_option
@pass_state
def status(state: Context, target: str) -> None:
    """Show the endpoint, the replica's state and the live release."""
    from provision.client import status as read_status

    _show(state, read_status(_target(state, target)), target)


@cli.command()
@target_option
@click.option("--lines", "-n", type=click.IntRange(min=1), default=40, show_default=True)
@pass_state
def logs(state: Context, target: str, lines: int) -> None:
    """Print the replica's latest log lines."""
    from provision.client import logs as read_logs

    _show(state, read_logs(_target(state, target), lines), target)


@cli.group()
def keys() -> None:
    """The endpoint's API keys."""


@keys.command("show")
@target_option
@pass_state
def keys_show(state: Context, target: str) -> None:
    """Print the primary and secondary API keys (secrets: keep them out of logs)."""
    _show(state, _target(state, target).keys(), target)


def main() -> None:
    cli(prog_name="aca-infer")

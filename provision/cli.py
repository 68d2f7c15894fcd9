"""`aca-infer`: parse, call one core function, print, map errors to exit codes. No logic here.

Heavy modules (targets, Azure SDKs) are imported inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import click
from click.core import ParameterSource

from provision.errors import AcaInferError, OperationError
from provision.targets import TARGET_NAMES

F = TypeVar("F", bound=Callable[..., Any])
EXIT_INTERRUPTED = 130
# Global options may come before or after the subcommand (as in az and azd); each occurrence is
# recorded here under ctx.meta, which every context of one invocation shares.
_GIVEN = "aca_infer.global."
_STATE = "aca_infer.state"


@dataclass(frozen=True)
class Context:
    output: str
    project_dir: Path
    debug: bool

    def progress(self, message: str) -> None:
        from rich.console import Console

        # rich's own NO_COLOR handling keeps styles such as dim: no_color.org asks for none.
        plain = bool(os.environ.get("NO_COLOR"))
        console = Console(stderr=True, highlight=False, color_system=None if plain else "auto")
        # soft_wrap: a message stays one line in logs and pipes, where rich assumes 80 columns.
        console.print(f"[dim]· {message}[/dim]", markup=True, soft_wrap=True)


def _given(ctx: click.Context, name: str, default: Any) -> Any:
    return ctx.meta.get(_GIVEN + name, default)


def _record_global(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    # The last one given wins; a default never replaces a value given elsewhere.
    if param.name and ctx.get_parameter_source(param.name) is not ParameterSource.DEFAULT:
        ctx.meta[_GIVEN + param.name] = value
    return value


def _global_options() -> list[click.Parameter]:
    return [
        click.Option(
            ["--output", "-o"],
            type=click.Choice(["text", "json"]),
            default="text",
            show_default=True,
            expose_value=False,
            callback=_record_global,
            help="`json` prints one JSON object on stdout; progress always goes to stderr.",
        ),
        click.Option(
            ["--project-dir"],
            type=click.Path(path_type=Path),
            default=None,
            expose_value=False,
            callback=_record_global,
            help="The project's folder (holds infra/) [default: the nearest folder, from the "
            "working directory up, that holds infra/ or .aca-infer/].",
        ),
        click.Option(
            ["--debug"],
            is_flag=True,
            expose_value=False,
            callback=_record_global,
            help="Show tracebacks for errors.",
        ),
    ]


def _state(ctx: click.Context) -> Context:
    """The global options, read once every part of the command line has been parsed."""
    if _STATE not in ctx.meta:
        from provision.project import project_root

        ctx.meta[_STATE] = Context(
            output=_given(ctx, "output", "text"),
            project_dir=project_root(_given(ctx, "project_dir", None), Path.cwd()),
            debug=_given(ctx, "debug", False),
        )
    state: Context = ctx.meta[_STATE]
    return state


def _fail(ctx: click.Context, message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    if _given(ctx, "output", "text") == "json":
        from provision.render import as_json

        click.echo(as_json({"error": {"message": message, "exit_code": code}}))
    ctx.exit(code)


class Command(click.Command):
    """A command that also takes the global options."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_global_options())


class Cli(click.Group):
    """Maps expected errors to one line and their exit code; tracebacks only with --debug.
    Every command and group under it takes the global options."""

    command_class = Command
    group_class = type  # subgroups are Cli groups too

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.params.extend(_global_options())

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
    return bool(_given(ctx, "debug", False))


def pass_state(command: F) -> F:
    """Pass the global options (a Context) first. A `target` left out is resolved here, once
    the project is known: ACA_INFER_TARGET, else the last provisioned, else azure."""

    @functools.wraps(command)
    def with_state(*args: Any, **kwargs: Any) -> Any:
        state = _state(click.get_current_context())
        if "target" in kwargs:
            from provision.project import resolve_target

            kwargs["target"] = resolve_target(kwargs["target"], state.project_dir, os.environ)
        return command(state, *args, **kwargs)

    return cast(F, with_state)


def examples(*lines: str) -> Callable[[F], F]:
    """Append an Examples block to a command's --help (every command has one)."""

    def add(command: F) -> F:
        block = "\n".join(f"  {line}" for line in lines)
        command.__doc__ = f"{inspect.cleandoc(command.__doc__ or '')}\n\n\b\nExamples:\n{block}"
        return command

    return add


target_option = click.option(
    "--target",
    type=click.Choice(TARGET_NAMES),
    default=None,
    help="Where to run: `local` uses a folder as the share and a local process as the replica "
    "[default: $ACA_INFER_TARGET, else the target this project last provisioned, else azure].",
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
        help="The server package to deploy [default: <project-dir>/inference_app when there "
        "is one, else the one that ships with aca-infer].",
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


_EPILOG = """\b
Global options (--output, --project-dir, --debug) go before or after the command.
Shell completion: add to ~/.bashrc
  eval "$(_ACA_INFER_COMPLETE=bash_source aca-infer)"
(zsh: zsh_source in ~/.zshrc; fish: _ACA_INFER_COMPLETE=fish_source aca-infer | source)"""


@click.group(cls=Cli, epilog=_EPILOG)
@click.version_option(package_name="aca-infer", prog_name="aca-infer")
def cli() -> None:
    """Serve a fine-tuned LLM as an authenticated, autoscaling HTTPS endpoint.

    \b
    Examples:
      aca-infer init                   # in an AI Toolkit project: add what aca-infer needs
      aca-infer up                     # provision on Azure and deploy the server
      aca-infer up --target local      # the same on this machine
      aca-infer deploy --output json   # global options go anywhere
    """


def operations(target: Any, command: str) -> Any:
    from provision.day_two import operations as day_two

    return day_two(target, command)


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
    from provision.assets import templates
    from provision.project import remember_target
    from provision.targets import ProvisionResult, ProvisionSettings

    given = [f"--{name.replace('_', '-')}" for name, value in azure_options.items() if value]
    if target != "azure" and given:
        raise click.UsageError(f"{given[0]} is an option of --target azure")
    ask = _prompt if sys.stdin.isatty() else None
    passed_over = templates(state.project_dir).note  # the AI Toolkit's own template
    if passed_over:
        state.progress(passed_over)
    settings = ProvisionSettings(
        target=target,
        set_flags=set_flags,
        environ=dict(os.environ),
        deploy_follows=deploy_follows,
        ask=ask,
        **azure_options,
    )
    result = _target(state, target).provision(settings, state.progress)
    if isinstance(result, ProvisionResult):  # not a plan (a dry run provisions nothing)
        remember_target(state.project_dir, target)
    return result


def _prompt(question: str) -> str:
    return str(click.prompt(question, err=True))


def _deploy_settings(
    state: Context, app_dir: Path | None, ready_timeout: float, break_lock: bool, restart: bool
) -> Any:
    from provision.assets import app_dir as chosen_app_dir
    from provision.deploy import DeploySettings

    return DeploySettings(
        source_dir=chosen_app_dir(state.project_dir, app_dir),
        ready_timeout=ready_timeout,
        break_lock=break_lock,
        restart=restart,
    )


def _deploy(state: Context, target: str, settings: Any) -> Any:
    from dataclasses import replace

    from provision.deploy import deploy
    from provision.deploy_record import last_deploy, record_deploy
    from provision.target_state import state_dir

    last = last_deploy(state.project_dir, target) or {}
    settings = replace(
        settings,
        cache_dir=state_dir(state.project_dir, target) / "manifests",
        last_release=last.get("release"),
    )
    result = deploy(_target(state, target), settings, state.progress)
    record_deploy(state.project_dir, target, "deploy", result.release, result.ready)
    return result


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
@examples(
    "aca-infer provision",
    "aca-infer provision --dry-run --output json   # what would be deployed; no network call",
    "aca-infer provision --target local --set localPort=8080",
)
@pass_state
def provision(state: Context, target: str, set_flags: tuple[str, ...], **azure: Any) -> None:
    """Create or update the infrastructure and write the config."""
    _show(state, _provision(state, target, set_flags, **azure), target)


@cli.command()
@target_option
@deploy_options
@examples(
    "aca-infer deploy",
    "aca-infer deploy --target local --output json",
    "aca-infer deploy --app-dir ./my_server   # a custom server package",
)
@pass_state
def deploy(state: Context, target: str, **options: Any) -> None:
    """Sync the inference code to the share as a new release and restart the replica."""
    _show(state, _deploy(state, target, _deploy_settings(state, **options)), target)


@cli.command()
@target_option
@set_option
@deploy_options
@examples(
    "aca-infer up",
    "aca-infer up --target local --set modelPath=model-cache/aca-infer/tiny-phi3",
)
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
@examples("aca-infer rollback", "aca-infer rollback --to r-1a2b3c4d5e6f --target local")
@pass_state
def rollback(state: Context, target: str, ready_timeout: float, to: str | None) -> None:
    """Roll out an earlier release beside the running one; it takes over once ready."""
    from provision.deploy import rollback as roll_back
    from provision.deploy_record import record_deploy

    result = roll_back(_target(state, target), ready_timeout, state.progress, to)
    record_deploy(state.project_dir, target, "rollback", result.release, result.ready)
    _show(state, result, target)


@cli.command()
@target_option
@examples("aca-infer releases", "aca-infer --output json releases --target local")
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
@examples(
    "aca-infer upload-model --base ./model-cache/microsoft/Phi-3-mini-4k-instruct "
    "--adapter ./models/qlora/qlora/gpu_model/adapter"
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
@click.option(
    "--purge",
    is_flag=True,
    help="Also delete the share's app/ area and the model files `aca-infer upload-model` "
    "uploaded (every other file on the share is kept); on Azure the storage account with its "
    "share when aca-infer created it.",
)
@click.option(
    "--yes", "-y", is_flag=True, help="Delete without asking (needed without a terminal)."
)
@examples("aca-infer down", "aca-infer down --target local --purge --yes")
@pass_state
def down(state: Context, target: str, purge: bool, yes: bool) -> None:
    """Show what will be deleted and kept, ask, then stop the replica and delete it."""
    import sys

    from provision.errors import InputError
    from provision.render import text
    from provision.targets import DayTwoOperations

    chosen = _target(state, target)
    planner = chosen if isinstance(chosen, DayTwoOperations) else None
    if planner is None:  # the target says itself what it cannot do
        _show(state, chosen.down(purge, state.progress), target)
        return
    plan = planner.plan_down(purge)
    if plan.delete and not yes and not sys.stdin.isatty():
        raise InputError(
            "down: no terminal to confirm on; rerun with --yes to delete what "
            "`aca-infer down` lists"
        )
    if plan.delete:
        click.echo(text(plan, target), err=True)  # whole lines: paths are never wrapped
    if plan.delete and not yes and not click.confirm("Delete these?", default=False, err=True):
        click.echo("Nothing was deleted.", err=True)
        return
    from provision.project import forget_target

    result = chosen.down(purge, state.progress)
    forget_target(state.project_dir, target)
    _show(state, result, target)


@cli.command()
@target_option
@click.option("--message", "-m", default=None, help="The user message to send.")
@click.option(
    "--request-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A JSON body to send instead: an OpenAI chat body (to /v1/chat/completions) or an "
    'Azure ML body ({"text": ...} or {"input_data": ...}, to /score); one answer per '
    "conversation.",
)
@click.option("--system", default=None, help="An optional system prompt (with --message).")
@click.option("--model", default=None, help="Base model or adapter id (see /v1/models).")
@click.option("--max-tokens", type=int, default=None, help="[default: 64] (with --message)")
@click.option("--temperature", type=float, default=None, help="0 for greedy decoding.")
@click.option("--stream", is_flag=True, help="Print the tokens as they arrive.")
@click.option(
    "--wait-timeout",
    type=float,
    default=600.0,
    show_default=True,
    help="Seconds to wait for a replica of a scaled-to-zero endpoint to start.",
)
@examples(
    'aca-infer invoke --message "Hello! Who are you?"',
    'aca-infer invoke -m "Summarise LoRA in one line" --model qlora --temperature 0',
    "aca-infer invoke --request-file conversations.json",
)
@pass_state
def invoke(
    state: Context,
    target: str,
    message: str | None,
    request_file: Path | None,
    system: str | None,
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    stream: bool,
    wait_timeout: float,
) -> None:
    """Send a chat completion or an Azure ML body to the endpoint (with the API key)."""
    from provision.invoke import InvokeSettings
    from provision.invoke import invoke as send
    from provision.request_body import chat_request, file_request

    if (message is None) == (request_file is None):
        raise click.UsageError("give either --message or --request-file")
    if request_file is not None:
        given = [name for name, value in _message_only(system, max_tokens, temperature) if value]
        if given:
            raise click.UsageError(f"{given[0]} goes with --message; put it in the request file")
        request = file_request(request_file, model, stream)
    else:
        request = chat_request(message or "", system, model, max_tokens or 64, temperature, stream)
    settings = InvokeSettings(request, wait_timeout=wait_timeout)
    printing = stream and state.output == "text"
    on_token = (lambda token: click.echo(token, nl=False)) if printing else (lambda token: None)
    result = send(_target(state, target), settings, state.progress, on_token)
    if result.model:
        state.progress(
            f"model {result.model}, {result.usage.get('completion_tokens', '?')} tokens, "
            f"finish_reason {result.finish_reason}"
        )
    if printing:
        click.echo()
    else:
        _show(state, result, target)


def _message_only(
    system: str | None, max_tokens: int | None, temperature: float | None
) -> list[tuple[str, bool]]:
    return [
        ("--system", system is not None),
        ("--max-tokens", max_tokens is not None),
        ("--temperature", temperature is not None),
    ]


@cli.command()
@target_option
@examples("aca-infer status", "aca-infer status --target local --output json")
@pass_state
def status(state: Context, target: str) -> None:
    """Show the endpoint, app and replica state, readiness, live release and last deploy."""
    from provision.client import status as read_status

    _show(state, read_status(_target(state, target), state.project_dir), target)


@cli.command()
@target_option
@click.option(
    "--tail",
    "--lines",
    "-n",
    "tail",
    type=click.IntRange(min=1),
    default=None,
    help="The last N lines [default: 40, or all with --since].",
)
@click.option(
    "--since", default=None, metavar="DURATION", help="Only lines this recent: 90s, 15m, 2h, 1d."
)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option(
    "--system", is_flag=True, help="The target's own events (replica starts, stops, take-overs)."
)
@examples("aca-infer logs", "aca-infer logs --target local --tail 100 --since 15m")
@pass_state
def logs(
    state: Context, target: str, tail: int | None, since: str | None, follow: bool, system: bool
) -> None:
    """Print the replica's log lines (or the target's events with --system)."""
    from provision.client import log_lines
    from provision.log_filter import parse_duration
    from provision.targets import LogQuery, LogsResult

    recent = parse_duration(since) if since is not None else None
    query = LogQuery(
        tail=tail if tail is not None or recent is not None else 40,
        since=recent,
        follow=follow,
        system=system,
    )
    lines = log_lines(operations(_target(state, target), "logs"), query)
    if follow:
        for line in lines:  # as they come; Ctrl-C ends it (exit 130)
            click.echo(line)
        return
    received: list[str] = []
    try:
        received.extend(lines)
    except OperationError:
        if received:  # a query that failed part-way: show what came, then the error
            _show(state, LogsResult(target=target, lines=received), target)
        raise
    _show(state, LogsResult(target=target, lines=received), target)


@cli.command()
@target_option
@examples("aca-infer stop", "aca-infer stop --target local")
@pass_state
def stop(state: Context, target: str) -> None:
    """Scale the app to zero: no replica runs (nothing billed), nothing is deleted."""
    _show(
        state, operations(_target(state, target), "stop").scale(False, 0.0, state.progress), target
    )


@cli.command()
@target_option
@timeout_option
@examples("aca-infer start", "aca-infer start --target local --ready-timeout 120")
@pass_state
def start(state: Context, target: str, ready_timeout: float) -> None:
    """Scale the app back from zero and wait until it is ready."""
    started = operations(_target(state, target), "start").scale(True, ready_timeout, state.progress)
    _show(state, started, target)


@cli.group()
@examples("aca-infer keys show")
def keys() -> None:
    """The endpoint's API keys."""


@keys.command("show")
@target_option
@examples("aca-infer keys show", "aca-infer keys show --target local --output json")
@pass_state
def keys_show(state: Context, target: str) -> None:
    """Print the primary and secondary API keys (secrets: keep them out of logs)."""
    _show(state, _target(state, target).keys(), target)


@cli.command()
@target_option
@click.option(
    "--azure", is_flag=True, help="Also check Azure (Bicep, sign-in, providers) before provision."
)
@examples("aca-infer doctor", "aca-infer doctor --azure --output json")
@pass_state
def doctor(state: Context, target: str, azure: bool) -> None:
    """Check every prerequisite: each ✓ or ✗ with the fix; exit 0 only when all pass."""
    from provision.doctor import doctor as run_checks
    from provision.errors import PrerequisiteError

    result = run_checks(_target(state, target), state.project_dir, azure)
    _show(state, result, target)
    if not result.ok:
        failed = sum(not check.ok for check in result.checks)
        click.echo(f"{failed} check(s) failed", err=True)
        click.get_current_context().exit(PrerequisiteError.exit_code)


@keys.command("rotate")
@target_option
@click.option("--primary", "which", flag_value="primary", help="Replace the primary key.")
@click.option("--secondary", "which", flag_value="secondary", help="Replace the secondary key.")
@timeout_option
@examples("aca-infer keys rotate --primary", "aca-infer keys rotate --secondary --target local")
@pass_state
def keys_rotate(state: Context, target: str, which: str | None, ready_timeout: float) -> None:
    """Replace one API key with a new one (printed only by `keys show`)."""
    if which is None:
        raise click.UsageError("say which key to replace: --primary or --secondary")
    chosen = operations(_target(state, target), "keys rotate")
    _show(state, chosen.rotate_key(which, ready_timeout, state.progress), target)


@cli.command()
@click.option(
    "--eject",
    is_flag=True,
    help="Also write aca-infer's Bicep templates into infra/provision/, to change them there.",
)
@examples("aca-infer init", "aca-infer init --eject")
@pass_state
def init(state: Context, eject: bool) -> None:
    """Add what aca-infer needs to this project; existing files are never overwritten.

    Writes infra/provision/inference.parameters.json with every parameter and its meaning
    (when the project has none) and puts .aca-infer/ in .gitignore. An AI Toolkit project's
    parameters file and infra/finetuning.config.json are read as they are.
    """
    from provision.project_init import init_project

    _show(state, init_project(state.project_dir, eject), "")


@cli.group()
@examples("aca-infer local demo-model")
def local() -> None:
    """Helpers for the local target (a folder as the share, a local process as the replica)."""


@local.command("demo-model")
@click.option(
    "--share-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="The share to write into [default: the local target's, .aca-infer/local/share].",
)
@examples(
    "aca-infer local demo-model",
    "aca-infer up --target local --set modelPath=model-cache/aca-infer/tiny-phi3",
)
@pass_state
def local_demo_model(state: Context, share_dir: Path | None) -> None:
    """Write a tiny Phi-3 model and a LoRA adapter (random weights) into the local share.

    The local target needs a model; this one loads in seconds on a CPU. Needs the serving
    packages: pip install 'aca-infer[serve]'.
    """
    from provision.demo_model import write_demo_model
    from provision.local.target import LocalTarget

    destination = share_dir if share_dir is not None else LocalTarget(state.project_dir).share_dir
    _show(state, write_demo_model(destination), "local")


def main() -> None:
    cli(prog_name="aca-infer")

"""`aca-infer`: parse, call one core function, print, map errors to exit codes. No logic here.

Heavy modules (targets, Azure SDKs) are imported inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import os
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

        Console(stderr=True, highlight=False).print(f"[dim]· {message}[/dim]", markup=True)


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
    state: Context, target: str, set_flags: tuple[str, ...], deploy_follows: bool = False
) -> Any:
    from provision.targets import ProvisionSettings

    settings = ProvisionSettings(
        target=target,
        set_flags=set_flags,
        environ=dict(os.environ),
        deploy_follows=deploy_follows,
    )
    return _target(state, target).provision(settings, state.progress)


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
    from provision.deploy_record import record_deploy

    result = deploy(_target(state, target), settings, state.progress)
    record_deploy(state.project_dir, target, "deploy", result.release, result.ready)
    return result


@cli.command()
@target_option
@set_option
@pass_state
def provision(state: Context, target: str, set_flags: tuple[str, ...]) -> None:
    """Create or update the infrastructure and write the config."""
    _show(state, _provision(state, target, set_flags), target)


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
@pass_state
def rollback(state: Context, target: str, ready_timeout: float) -> None:
    """Switch back to the previous release and restart."""
    from provision.deploy import rollback as roll_back
    from provision.deploy_record import record_deploy

    result = roll_back(_target(state, target), ready_timeout, state.progress)
    record_deploy(state.project_dir, target, "rollback", result.release, result.ready)
    _show(state, result, target)


@cli.command()
@target_option
@click.option("--purge", is_flag=True, help="Also delete the model files on the local share.")
@click.option(
    "--yes", "-y", is_flag=True, help="Delete without asking (needed without a terminal)."
)
@pass_state
def down(state: Context, target: str, purge: bool, yes: bool) -> None:
    """Show what will be deleted and kept, ask, then stop the replica and delete it."""
    import sys

    from provision.errors import InputError
    from provision.render import text

    chosen = _target(state, target)
    plan = chosen.plan_down(purge)
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
    _show(state, chosen.down(purge, state.progress), target)


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
    lines = log_lines(_target(state, target), query)
    if follow:
        for line in lines:  # as they come; Ctrl-C ends it (exit 130)
            click.echo(line)
        return
    _show(state, LogsResult(target=target, lines=list(lines)), target)


@cli.command()
@target_option
@pass_state
def stop(state: Context, target: str) -> None:
    """Scale the app to zero: no replica runs (nothing billed), nothing is deleted."""
    _show(state, _target(state, target).scale(False, 0.0, state.progress), target)


@cli.command()
@target_option
@timeout_option
@pass_state
def start(state: Context, target: str, ready_timeout: float) -> None:
    """Scale the app back from zero and wait until it is ready."""
    _show(state, _target(state, target).scale(True, ready_timeout, state.progress), target)


@cli.group()
def keys() -> None:
    """The endpoint's API keys."""


@keys.command("show")
@target_option
@pass_state
def keys_show(state: Context, target: str) -> None:
    """Print the primary and secondary API keys (secrets: keep them out of logs)."""
    _show(state, _target(state, target).keys(), target)


@cli.command()
@target_option
@click.option(
    "--azure", is_flag=True, help="Also check Azure (Bicep, sign-in, providers) before provision."
)
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
@pass_state
def keys_rotate(state: Context, target: str, which: str | None, ready_timeout: float) -> None:
    """Replace one API key with a new one (printed only by `keys show`)."""
    if which is None:
        raise click.UsageError("say which key to replace: --primary or --secondary")
    _show(state, _target(state, target).rotate_key(which, ready_timeout, state.progress), target)


def main() -> None:
    cli(prog_name="aca-infer")

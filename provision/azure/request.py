"""The resolved provision request: scope plus every parameter and where its value came from.

Everything here is local (files, flags, environment): `--dry-run` prints this request and
stops, and every value is checked here before any network call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision.azure.naming import (
    ai_toolkit_names,
    ai_toolkit_suffix,
    check_names,
)
from provision.azure.scope import Ask, Scope, ScopeFlags, resolve_scope
from provision.azure.startup import REPLACED_NOTE, is_ai_toolkit_startup
from provision.errors import InputError
from provision.parameters import (
    FINETUNING_CONFIG,
    PARAMETERS_FILE,
    env_name,
    load_finetuning_config,
    resolve_parameters,
    template_declarations,
)
from provision.target_state import TargetState
from provision.template_params import ParamDeclaration, validate_values

REDACTED = "<redacted>"
SECURE_PARAMETERS = ("apiKeyPrimary", "apiKeySecondary")
# Decided by preflight from what exists: a resource that exists is referenced, never re-PUT.
REUSE_SWITCHES = ("useExistingStorageAccount", "useExistingLogAnalytics", "useExistingEnvironment")


@dataclass(frozen=True)
class Resolved:
    """A parameter's value and where it came from (for --dry-run and messages)."""

    value: Any
    source: str


@dataclass(frozen=True)
class ProvisionRequest:
    scope: Scope
    parameters: Mapping[str, Resolved]
    deployment_name: str
    notes: tuple[str, ...] = ()
    secure_from_environment: Mapping[str, str] = field(default_factory=dict)
    stored: Mapping[str, Any] = field(default_factory=dict)  # kept for the next run (no secrets)

    def value(self, name: str, default: Any = None) -> Any:
        entry = self.parameters.get(name)
        return default if entry is None else entry.value

    def given_by_user(self, name: str) -> bool:
        entry = self.parameters.get(name)
        return entry is not None and (
            entry.source in USER_SOURCES or entry.source == env_name(name)
        )

    @property
    def profile_type(self) -> str:
        return str(self.value("gpuProfileType", "Consumption-GPU-NC8as-T4"))

    def describe(self) -> dict[str, Any]:
        """The request as --dry-run prints it: nothing secret."""
        parameters = {
            name: {"value": entry.value, "source": entry.source}
            for name, entry in sorted(self.parameters.items())
        }
        for name in SECURE_PARAMETERS:
            source = (
                env_name(name)
                if name in self.secure_from_environment
                else "read back from the app's secrets, else generated"
            )
            parameters[name] = {"value": REDACTED, "source": source}
        for name in REUSE_SWITCHES:
            parameters[name] = {
                "value": None,
                "source": "decided at preflight: true when the resource exists and was not "
                "created by aca-infer",
            }
        return {
            "target": "azure",
            "dry_run": True,
            "scope": {
                "subscription_id": self.scope.subscription_id,
                "resource_group": self.scope.resource_group,
                "location": self.scope.location or "the resource group's location",
                "arm_endpoint": self.scope.arm.url,
                "sources": dict(self.scope.sources) | {"arm_endpoint": self.scope.arm.source},
            },
            "deployment_name": self.deployment_name,
            "parameters": parameters,
            "notes": list(self.notes),
        }


def deployment_name(app_name: str) -> str:
    """One name per app, so re-runs update the same deployment record (ARM keeps 800)."""
    return f"aca-infer-{app_name}"[:64]


STORED_ORIGIN = "the values kept for the azure target (.aca-infer/azure/parameters.json)"
TEMPLATE_DEFAULT = "the template default"
USER_SOURCES = ("--set", str(PARAMETERS_FILE), STORED_ORIGIN)


def build_request(
    project_dir: Path,
    set_flags: tuple[str, ...],
    environ: Mapping[str, str],
    flags: ScopeFlags,
    ask: Ask | None,
) -> ProvisionRequest:
    declared = template_declarations(project_dir)
    finetuning = load_finetuning_config(project_dir / FINETUNING_CONFIG)
    state = TargetState(project_dir, "azure")
    resolved = resolve_parameters(
        project_dir, set_flags, environ, declared, state.load(), STORED_ORIGIN
    )
    parameters = {
        name: Resolved(value, resolved.origins[name]) for name, value in resolved.values.items()
    }
    location = parameters.get("location")
    scope = resolve_scope(
        flags,
        environ,
        finetuning,
        (location.value, location.source) if location else None,
        ask,
    )
    # A name nobody gave is the AI Toolkit's name for it in this resource group.
    suffix = ai_toolkit_suffix(finetuning, scope.subscription_id, scope.resource_group)
    for name, value in ai_toolkit_names(suffix.value).items():
        given = parameters.get(name)
        if given is None or given.source == TEMPLATE_DEFAULT:
            parameters[name] = Resolved(value, f"AI Toolkit name ({suffix.source})")
    secure_from_environment = _secure_values(parameters, environ)
    # Keys come from the environment or the app; what to reuse comes from what exists.
    for name in SECURE_PARAMETERS + REUSE_SWITCHES:
        parameters.pop(name, None)
    if scope.location:
        parameters["location"] = Resolved(scope.location, scope.sources["location"])
    notes: list[str] = []
    commands = parameters.get("defaultCommands")
    if commands is not None and is_ai_toolkit_startup(commands.value):
        parameters["defaultCommands"] = Resolved([], "bootstrap (replaces the AI Toolkit's)")
        notes.append(REPLACED_NOTE)
    _check_values(parameters, declared)
    return ProvisionRequest(
        scope=scope,
        parameters=parameters,
        deployment_name=deployment_name(str(parameters["acaAppName"].value)),
        notes=tuple(notes),
        secure_from_environment=secure_from_environment,
        stored=resolved.stored,
    )


def _secure_values(resolved: Mapping[str, Resolved], environ: Mapping[str, str]) -> dict[str, str]:
    """API keys come only from the environment (as in deploy_manual.sh) or from the app."""
    values: dict[str, str] = {}
    for name in SECURE_PARAMETERS:
        entry = resolved.get(name)
        if entry is None:
            continue
        if entry.source != env_name(name):
            raise InputError(
                f"{name} in {entry.source}: API keys never go in files or on the command line; "
                f"set {env_name(name)} or let provision generate them"
            )
        value = environ[env_name(name)]
        if len(value) < 16:
            raise InputError(f"{env_name(name)}: an API key needs at least 16 characters")
        values[name] = value
    return values


def _check_values(
    parameters: Mapping[str, Resolved], declared: Mapping[str, ParamDeclaration]
) -> None:
    """The template's own rules (type, @allowed, ranges, lengths), then Azure's naming rules."""
    validate_values(
        {name: entry.value for name, entry in parameters.items()},
        declared,
        {name: entry.source for name, entry in parameters.items()},
    )
    check_names({name: entry.value for name, entry in parameters.items()})
    commands = parameters.get("defaultCommands")
    if commands is not None and not all(isinstance(c, str) for c in commands.value):
        raise InputError(
            f"defaultCommands ({commands.source}): give a list of shell commands, or null"
        )

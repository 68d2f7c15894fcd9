"""Parameter resolution, in one place, highest first (DESIGN.md "Contracts"):

`--set name=value` → `ACA_INFER_*` environment variables → the parameters file rendered as a
jinja2 template → the fine-tuning run's `infra/finetuning.config.json` → the template defaults.
Nulls are dropped at every level so that the default applies.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from provision.errors import InputError

PARAMETERS_FILE = Path("infra/provision/inference.parameters.json")
FINETUNING_CONFIG = Path("infra/finetuning.config.json")
ENV_PREFIX = "ACA_INFER_"

# The fine-tuning run's resources are reused for inference: each AI Toolkit config key sets its
# parameter, plus the switches that make the template reference the resource as `existing`
# instead of redefining it (which would overwrite the fine-tuning run's settings).
_FINETUNING_KEYS: dict[str, tuple[str, dict[str, Any]]] = {
    "STORAGE_ACCOUNT_NAME": ("storageAccountName", {"useExistingStorageAccount": True}),
    "FILE_SHARE_NAME": ("fileShareName", {}),
    # GPU profiles can only be added when an environment is created: use the one the AI
    # Toolkit's fine-tuning environment has.
    "ACA_ENVIRONMENT_NAME": (
        "acaEnvironmentName",
        {
            "useExistingEnvironment": True,
            "workloadProfileName": "GPU",
            "gpuProfileType": "NC24-A100",
        },
    ),
    "ACA_ENVIRONMENT_STORAGE_NAME": ("acaEnvironmentStorageName", {}),
    "LOG_ANALYTICS_NAME": ("acaLogAnalyticsName", {"useExistingLogAnalytics": True}),
    "LOCATION": ("location", {}),
}


def env_name(parameter: str) -> str:
    return ENV_PREFIX + re.sub(r"(?<!^)(?=[A-Z])", "_", parameter).upper()


def _parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_set_flags(items: Iterable[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise InputError(f"--set {item!r}: expected name=value, e.g. --set modelPath=models/x")
        values[name.strip()] = _parse_value(raw)
    return values


def read_parameters_file(path: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    """The file's `parameters.<name>.value` entries, after jinja2 rendering with `env`."""
    if not path.is_file():
        return {}
    engine = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    try:
        rendered = engine.from_string(path.read_text(encoding="utf-8")).render(env=environ)
    except jinja2.UndefinedError as error:
        raise InputError(f"{path}: {error.message}; set that environment variable") from error
    except jinja2.TemplateSyntaxError as error:
        raise InputError(
            f"{path}:{error.lineno}: template syntax error: {error.message}"
        ) from error
    try:
        document = json.loads(rendered)
    except json.JSONDecodeError as error:
        raise InputError(
            f"{path}:{error.lineno}: not valid JSON after rendering: {error.msg}"
        ) from None
    parameters = document.get("parameters") if isinstance(document, dict) else None
    if not isinstance(parameters, dict):
        raise InputError(f"{path}: expected an object with a 'parameters' object")
    values: dict[str, Any] = {}
    for name, entry in parameters.items():
        if not isinstance(entry, dict) or "value" not in entry:
            raise InputError(f"{path}: parameter {name!r} needs a 'value' (null for the default)")
        values[name] = entry["value"]
    return values


def load_finetuning_config(path: Path) -> dict[str, Any]:
    """The AI Toolkit's `infra/finetuning.config.json` as it is ({} when there is none)."""
    if not path.is_file():
        return {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}:{error.lineno}: not valid JSON: {error.msg}") from error
    if not isinstance(config, dict):
        raise InputError(f"{path}: expected a JSON object")
    return config


def read_finetuning_config(path: Path) -> dict[str, Any]:
    config = load_finetuning_config(path)
    values: dict[str, Any] = {}
    for key, (param, switches) in _FINETUNING_KEYS.items():
        if config.get(key):
            values[param] = config[key]
            values.update(switches)
    return values


def _without_nulls(values: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class Resolved:
    """A parameter's value and the source it came from (for --dry-run and messages)."""

    value: Any
    source: str


def resolve_with_sources(
    project_dir: Path,
    set_flags: Iterable[str],
    environ: Mapping[str, str],
    defaults: Mapping[str, Any],
    known: Iterable[str] = (),
    below_finetuning: Mapping[str, Resolved] | None = None,
) -> dict[str, Resolved]:
    """Merge every source, highest last; a name no source or default knows is a typo.

    `below_finetuning` are values a target derives (e.g. the AI Toolkit's resource names) that
    the fine-tuning config and everything above it override.
    """
    from_file = read_parameters_file(project_dir / PARAMETERS_FILE, environ)
    from_finetuning = read_finetuning_config(project_dir / FINETUNING_CONFIG)
    known_names = set(known) | set(defaults) | set(from_file) | set(from_finetuning)
    from_flags = parse_set_flags(set_flags)
    unknown = sorted(set(from_flags) - known_names)
    if unknown:
        raise InputError(
            f"--set {unknown[0]}: unknown parameter; known parameters: "
            f"{', '.join(sorted(known_names))}"
        )
    from_env = {
        name: _parse_value(environ[env_name(name)])
        for name in known_names
        if env_name(name) in environ
    }
    merged: dict[str, Resolved] = {
        name: Resolved(value, "default") for name, value in _without_nulls(defaults).items()
    }
    merged.update(below_finetuning or {})
    for source, layer in (
        (str(FINETUNING_CONFIG), from_finetuning),
        (str(PARAMETERS_FILE), from_file),
        ("environment", from_env),
        ("--set", from_flags),
    ):
        for name, value in _without_nulls(layer).items():
            label = f"{env_name(name)}" if source == "environment" else source
            merged[name] = Resolved(value, label)
    return merged


def resolve_parameters(
    project_dir: Path,
    set_flags: Iterable[str],
    environ: Mapping[str, str],
    defaults: Mapping[str, Any],
) -> dict[str, Any]:
    """Merge every source; a name no source or default knows is a typo, reported as such."""
    resolved = resolve_with_sources(project_dir, set_flags, environ, defaults)
    return {name: entry.value for name, entry in resolved.items()}


def current_environment() -> dict[str, str]:
    return dict(os.environ)

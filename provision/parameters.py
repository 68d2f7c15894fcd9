"""Parameter resolution, in one place, highest first (DESIGN.md "Contracts"):

`--set name=value` → `ACA_INFER_*` environment variables → the values given earlier for the
target (`.aca-infer/<target>/parameters.json`, see `target_state`) → the parameters file rendered
as a jinja2 template → the fine-tuning run's `infra/finetuning.config.json` → the template
defaults. Nulls are dropped at every level so that the default applies. Every resolved value is
then checked against the template's declarations (`template_params`) before anything is written.
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

from provision.assets import templates
from provision.errors import InputError
from provision.target_state import updated
from provision.template_params import (
    ParamDeclaration,
    literal_defaults,
    load_declarations,
    parse_text_value,
    validate_values,
)

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


def template_path(project_dir: Path) -> Path:
    """The main template this project deploys: its own ejected copy (`aca-infer init --eject`),
    else the packaged one (provision/assets.py decides; the AI Toolkit's own is passed over)."""
    return templates(project_dir).main


def template_declarations(project_dir: Path) -> dict[str, ParamDeclaration]:
    return load_declarations(template_path(project_dir))


def parse_set_flags(
    items: Iterable[str], declarations: Mapping[str, ParamDeclaration]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InputError(f"--set {item!r}: expected name=value, e.g. --set modelPath=models/x")
        if name not in declarations:
            raise InputError(
                f"--set {name}: unknown parameter; known parameters: "
                f"{', '.join(sorted(declarations))}"
            )
        values[name] = parse_text_value(raw, declarations[name])
    return values


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise InputError(
            f"{path}: not UTF-8 text (byte {error.object[error.start]:#04x} at offset "
            f"{error.start}); save it as UTF-8"
        ) from None


def read_parameters_file(path: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    """The file's `parameters.<name>.value` entries, after jinja2 rendering with `env`."""
    if not path.is_file():
        return {}
    engine = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False)
    source = _read_text(path)
    try:
        rendered = engine.from_string(source).render(env=environ)
    except jinja2.UndefinedError as error:
        raise InputError(f"{path}: {error.message}; set that environment variable") from error
    except jinja2.TemplateSyntaxError as error:
        raise InputError(
            f"{path}:{error.lineno}: template syntax error: {error.message}"
        ) from error
    except Exception as error:  # an expression that fails while rendering, e.g. {{ 1/0 }}
        raise InputError(
            f"{path}: a template expression failed: {type(error).__name__}: {error}"
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
        config = json.loads(_read_text(path))
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
class ResolvedParameters:
    values: dict[str, Any]  # every parameter with a value, highest source first
    origins: dict[str, str]  # where each value came from, for messages
    stored: dict[str, Any]  # the values the target keeps after this run


def resolve_parameters(
    project_dir: Path,
    set_flags: Iterable[str],
    environ: Mapping[str, str],
    declarations: Mapping[str, ParamDeclaration],
    stored: Mapping[str, Any],
    stored_origin: str = "the values kept for the target",
) -> ResolvedParameters:
    """Merge every source and check every value against `declarations`; InputError (naming
    each bad value, its rule and where it came from) before anything is written."""
    from_flags = parse_set_flags(set_flags, declarations)
    from_env = {
        name: parse_text_value(environ[env_name(name)], declaration)
        for name, declaration in declarations.items()
        if env_name(name) in environ
    }
    # Secure values (keys) are never kept on disk; everything else given with --set is, and a
    # null given forgets the kept value at once.
    kept = updated(stored, {n: v for n, v in from_flags.items() if not declarations[n].secure})
    layers: list[tuple[str, Mapping[str, Any]]] = [
        ("the template default", literal_defaults(declarations)),
        (str(FINETUNING_CONFIG), read_finetuning_config(project_dir / FINETUNING_CONFIG)),
        (str(PARAMETERS_FILE), read_parameters_file(project_dir / PARAMETERS_FILE, environ)),
        (stored_origin, kept),
        ("environment", from_env),
        ("--set", from_flags),
    ]
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for origin, layer in layers:
        for name, value in _without_nulls(layer).items():
            values[name] = value
            origins[name] = env_name(name) if origin == "environment" else origin
    # A stored value is checked whenever it is in force; one that an environment variable
    # overrides this time is checked when it applies again.
    validate_values(values, declarations, origins)
    return ResolvedParameters(values, origins, kept)


def current_environment() -> dict[str, str]:
    return dict(os.environ)

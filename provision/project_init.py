"""`aca-infer init`: add what aca-infer needs to a project, never overwriting a file.

- `infra/provision/inference.parameters.json` with every parameter of the template and its
  meaning (all values null: the fine-tuning run's value when infra/finetuning.config.json has
  one, else the template default), unless the project has one (an AI Toolkit project does: it is
  read as it is);
- `.aca-infer/` (local state, secrets of the local target) in `.gitignore`;
- with `--eject`, aca-infer's Bicep templates in `infra/provision/`, which then win over the
  packaged ones.

Everything is checked before anything is written, so a refusal changes nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provision import assets
from provision.errors import InputError
from provision.fsutil import write_bytes_atomic
from provision.parameters import FINETUNING_CONFIG, PARAMETERS_FILE, read_parameters_file
from provision.template_params import ParamDeclaration, load_declarations

GITIGNORE = Path(".gitignore")
STATE_IGNORE = ".aca-infer/"
PARAMETERS_SCHEMA = (
    "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#"
)
# What a null value means, beside each parameter's description (metadata.null).
NULL_MEANS = (
    "the fine-tuning run's value when infra/finetuning.config.json has one, else the default"
)


@dataclass(frozen=True)
class InitResult:
    project_dir: str
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parameters_document(declarations: Mapping[str, ParamDeclaration]) -> dict[str, Any]:
    """A parameters file naming every parameter a user may set, each with its meaning."""
    parameters: dict[str, Any] = {}
    for declaration in declarations.values():
        if declaration.secure:  # the API keys: provision generates them, never a file
            continue
        metadata: dict[str, Any] = {"description": declaration.description, "null": NULL_MEANS}
        if declaration.has_default:
            expression = declaration.default_expression
            metadata["default"] = declaration.default if expression is None else expression
        parameters[declaration.name] = {"value": None, "metadata": metadata}
    return {"$schema": PARAMETERS_SCHEMA, "contentVersion": "1.0.0.0", "parameters": parameters}


def _ignores_state(gitignore_text: str) -> bool:
    entries = {line.strip() for line in gitignore_text.splitlines()}
    return bool(entries & {".aca-infer", ".aca-infer/", "/.aca-infer", "/.aca-infer/"})


def _parameters_notes(path: Path, relative: Path, environ: Mapping[str, str]) -> list[str]:
    try:
        values = read_parameters_file(path, environ)
    except InputError as error:
        return [str(error)]
    if values.get("defaultCommands"):
        return [
            f"{relative}: defaultCommands is set (the AI Toolkit's start commands), so the "
            "container would run those instead of aca-infer's server; set its value to null"
        ]
    return []


def init_project(
    project_dir: Path, eject: bool, environ: Mapping[str, str] | None = None
) -> InitResult:
    environ = os.environ if environ is None else environ
    result = InitResult(project_dir=str(project_dir))
    own_template = project_dir / assets.TEMPLATES_DIR / assets.MAIN_TEMPLATE
    ai_toolkit_template = own_template.is_file() and assets.is_ai_toolkit_template(own_template)
    if eject and ai_toolkit_template:
        raise InputError(
            f"--eject: {own_template} is the AI Toolkit's template and is never overwritten; "
            "move it aside (e.g. to inference.ai-toolkit.bicep) and run `aca-infer init --eject`"
        )

    parameters = project_dir / PARAMETERS_FILE
    if parameters.is_file():
        result.kept.append(str(PARAMETERS_FILE))
        result.notes.extend(_parameters_notes(parameters, PARAMETERS_FILE, environ))
    else:
        document = parameters_document(load_declarations(assets.templates(project_dir).main))
        write_bytes_atomic(parameters, (json.dumps(document, indent=2) + "\n").encode())
        result.created.append(str(PARAMETERS_FILE))

    gitignore = project_dir / GITIGNORE
    existing = gitignore.read_text(encoding="utf-8") if gitignore.is_file() else None
    if existing is None:
        write_bytes_atomic(gitignore, f"{STATE_IGNORE}\n".encode())
        result.created.append(str(GITIGNORE))
    elif _ignores_state(existing):
        result.kept.append(str(GITIGNORE))
    else:
        separator = "" if existing.endswith("\n") or not existing else "\n"
        write_bytes_atomic(gitignore, f"{existing}{separator}{STATE_IGNORE}\n".encode())
        result.updated.append(f"{GITIGNORE} (+ {STATE_IGNORE})")

    if eject:
        _eject_templates(project_dir, result)
    elif ai_toolkit_template:
        result.notes.append(assets.ai_toolkit_template_note(own_template.relative_to(project_dir)))
    if not (project_dir / FINETUNING_CONFIG).is_file():
        result.notes.append(
            f"no {FINETUNING_CONFIG}: provision creates its own storage account, share and "
            "environment (an AI Toolkit project reuses its fine-tuning run's)"
        )
    return result


def _eject_templates(project_dir: Path, result: InitResult) -> None:
    source = assets.packaged_templates_dir()
    for relative in assets.packaged_template_files():
        shown = str(assets.TEMPLATES_DIR / relative)
        destination = project_dir / assets.TEMPLATES_DIR / relative
        if destination.exists():
            result.kept.append(shown)
            continue
        write_bytes_atomic(destination, (source / relative).read_bytes())
        result.created.append(shown)

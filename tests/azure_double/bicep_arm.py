"""What the stand-in `bicep build` emits: an ARM JSON template carrying the .bicep file's
metadata, declared parameters (type, literal defaultValue, allowedValues, min/maxValue,
min/maxLength, description) and outputs, parsed with pycep-parser.

A default or output that is an expression is kept as its Bicep text inside ARM's expression
brackets ("[take('st${uniqueString(resourceGroup().id)}', 24)]"); the double evaluates the
subset this project's templates use (tests/azure_double/expressions.py). The resources are not
compiled: the double knows what our template declares (deployments.py); the real compile runs in
the GitHub workflow.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

from pycep import BicepParser

ARM_TYPES = {"string": "string", "int": "int", "bool": "bool", "object": "object", "array": "array"}
SECURE_TYPES = {"string": "securestring", "object": "secureObject"}
DECORATOR_KEYS = {
    "allowed": "allowedValues",
    "min_value": "minValue",
    "max_value": "maxValue",
    "min_length": "minLength",
    "max_length": "maxLength",
}


class BicepCompileError(ValueError):
    """The .bicep file does not parse or declares something the stand-in cannot express."""


def _declared_text(source: str, keyword: str, name: str) -> str | None:
    """The text after `=` of a one-line `param`/`output` declaration."""
    match = re.search(
        rf"^{keyword}\s+{re.escape(name)}\s+[^=\n]+?=\s*(.+?)\s*$", source, re.MULTILINE
    )
    return match.group(1) if match else None


def _literal(text: str, parsed: Any) -> tuple[bool, Any]:
    if re.fullmatch(r"'(?:[^'\\$]|\\.|\$(?!\{))*'", text):
        return True, parsed
    if re.fullmatch(r"-?\d+", text):
        return True, int(text)
    if text in ("true", "false"):
        return True, text == "true"
    if text.startswith(("[", "{")) and "${" not in text and "(" not in text:
        return True, parsed
    return False, None


def compile_text(source: str, name: str = "<template>") -> dict[str, Any]:
    try:
        data = BicepParser().parse(text=source)
    except Exception as error:  # lark raises several unrelated exception types
        lines = str(error).strip().splitlines()
        raise BicepCompileError(lines[0] if lines else repr(error)) from error
    parameters: dict[str, Any] = {}
    for param_name, param in data.get("parameters", {}).items():
        declared = param.get("type")
        kind = declared.get("type") if isinstance(declared, dict) else declared
        if kind not in ARM_TYPES:
            raise BicepCompileError(f"param {param_name}: type {declared!r} is not supported")
        decorators = {d["type"]: d.get("argument", True) for d in param.get("decorators", [])}
        entry: dict[str, Any] = {
            "type": SECURE_TYPES.get(kind, kind) if "secure" in decorators else ARM_TYPES[kind]
        }
        text = _declared_text(source, "param", param_name)
        if text is not None:
            is_literal, value = _literal(text, param.get("default"))
            entry["defaultValue"] = value if is_literal else f"[{text}]"
        for decorator, key in DECORATOR_KEYS.items():
            if decorator in decorators:
                entry[key] = decorators[decorator]
        if "description" in decorators:
            entry["metadata"] = {"description": decorators["description"]}
        parameters[param_name] = entry
    outputs: dict[str, Any] = {}
    for output_name, output in data.get("outputs", {}).items():
        text = _declared_text(source, "output", output_name)
        if text is None:
            raise BicepCompileError(f"output {output_name}: only one-line outputs are supported")
        outputs[output_name] = {
            "type": ARM_TYPES.get(str(output.get("type")), "string"),
            "value": f"[{text}]",
        }
    metadata: dict[str, Any] = {
        "_generator": {"name": "bicep", "version": "0.0.0-aca-infer-double", "templateHash": "0"}
    }
    declared_metadata: dict[str, Any] = typing.cast(dict[str, Any], data.get("metadata") or {})
    for key, value in declared_metadata.items():
        metadata[key] = value.get("value") if isinstance(value, dict) else value
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "metadata": metadata,
        "parameters": parameters,
        "resources": [],
        "outputs": outputs,
    }


def compile_file(path: Path) -> dict[str, Any]:
    return compile_text(path.read_text(encoding="utf-8"), str(path))

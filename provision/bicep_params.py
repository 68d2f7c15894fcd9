"""The `param` declarations of a Bicep template: name, type, description, secure, default.

Enough of Bicep's syntax for declarations written one per line with their decorators above
(the shape the Azure Verified Modules use and infra/provision follows): a description or a
default is read from the template itself, never kept in a second list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_PARAM = re.compile(
    r"^param\s+(?P<name>\w+)\s+(?P<type>[\w.\[\]']+\??)(?:\s*=\s*(?P<default>.+))?$"
)
_DESCRIPTION = re.compile(r"^@(?:sys\.)?description\(\s*'(?P<text>(?:[^'\\]|\\.)*)'\s*\)$", re.S)
_ESCAPES = {"'": "'", "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "$": "$"}


@dataclass(frozen=True)
class ParamDeclaration:
    name: str
    type: str
    description: str
    secure: bool
    default: str | None  # the Bicep expression, as written; None when the param is required


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda match: _ESCAPES.get(match[1], match[0]), text)


def _balanced(text: str) -> bool:
    depth = 0
    quoted = False
    escaped = False
    for char in text:
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == "'":
                quoted = False
        elif char == "'":
            quoted = True
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
    return depth <= 0 and not quoted


def parse_params(source: str) -> list[ParamDeclaration]:
    declarations: list[ParamDeclaration] = []
    decorators: list[str] = []
    pending = ""  # a decorator that spans lines, e.g. @allowed([ ... ])
    for raw in source.splitlines():
        line = raw.strip()
        if pending:
            pending += "\n" + line
            if _balanced(pending):
                decorators.append(pending)
                pending = ""
            continue
        if not line or line.startswith("//"):
            continue
        if line.startswith("@"):
            if _balanced(line):
                decorators.append(line)
            else:
                pending = line
            continue
        match = _PARAM.match(line)
        if match:
            description = ""
            for decorator in decorators:
                found = _DESCRIPTION.match(decorator)
                if found:
                    description = _unescape(found["text"])
            declarations.append(
                ParamDeclaration(
                    name=match["name"],
                    type=match["type"],
                    description=description,
                    secure=any(re.match(r"@(?:sys\.)?secure\(", d) for d in decorators),
                    default=match["default"].strip() if match["default"] else None,
                )
            )
        decorators = []
    return declarations


def read_params(template: Path) -> list[ParamDeclaration]:
    return parse_params(template.read_text(encoding="utf-8"))

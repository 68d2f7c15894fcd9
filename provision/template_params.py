"""Parameter declarations read from a Bicep template, and the values checked against them.

The template is the one source of truth for what a parameter accepts (DESIGN.md "Contracts"):
its type, `@allowed`, `@minValue`/`@maxValue` and `@minLength`/`@maxLength`. Every target checks
every value it resolves against these declarations before anything is written or sent.

Use:

    declarations = load_declarations(Path("infra/provision/inference.bicep"))
    problems = check_values({"maximumInstanceCount": -3}, declarations)
    # ["maximumInstanceCount -3: must be at least 1 (@minValue(1))"]
    validate_values(values, declarations, origins)  # raises InputError with every problem

`check_values` returns one line per problem, each naming the parameter, its value (hidden for
`@secure()` parameters) and the rule with the fix it implies; `validate_values` raises them as
one `InputError` (exit code 2). Names that no declaration knows are reported too: a typo is not
silently ignored. A target with parameters of its own (the local target's `localPort`) declares
them as `ParamDeclaration`s and passes them in the same mapping.

Only `param` statements and their decorators are read, by the small scanner below, not the whole
language: a full Bicep parser (pycep-parser) would be a runtime dependency of every command whose
grammar lags the language, so syntax it does not know yet anywhere in a template (object spread,
for one) would stop every provision, while declarations are a small and stable part of the
grammar. The tests check this scanner against pycep-parser on every param of every template.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.errors import InputError

PRIMITIVE_TYPES = ("string", "int", "bool", "array", "object")


@dataclass(frozen=True)
class ParamDeclaration:
    """One `param` of a template, with the constraints its decorators declare."""

    name: str
    type: str  # a primitive type, `array` for typed arrays, else the type expression as written
    has_default: bool = False
    default: Any = None  # the default when it is a literal; None for an expression
    default_expression: str | None = None  # the default's text when it is not a literal
    allowed: tuple[Any, ...] | None = None
    min_value: int | None = None
    max_value: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    secure: bool = False
    nullable: bool = False
    description: str = ""

    @property
    def literal_default(self) -> bool:
        return self.has_default and self.default_expression is None


# -- scanner -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # "string", "istring" (interpolated), "number", "name", "punct", "newline"
    text: str
    value: Any = None
    line: int = 0
    start: int = 0
    end: int = 0


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", "'": "'", "$": "$"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"[0-9]+")


def _read_string(source: str, start: int) -> tuple[str, bool, int]:
    """The string literal opening at `start`: its value, whether it interpolates, its end."""
    if source.startswith("'''", start):
        end = source.find("'''", start + 3)
        if end < 0:
            raise ValueError("unterminated multi-line string")
        # Bicep drops the line break that directly follows the opening quotes.
        body = source[start + 3 : end].removeprefix("\r").removeprefix("\n")
        return body, False, end + 3
    chars: list[str] = []
    interpolated = False
    index = start + 1
    while index < len(source):
        char = source[index]
        if char == "\\":
            escaped = source[index + 1 : index + 2]
            if escaped == "u":  # \u{XXXX}
                close = source.index("}", index)
                chars.append(chr(int(source[index + 3 : close], 16)))
                index = close + 1
                continue
            chars.append(_ESCAPES.get(escaped, escaped))
            index += 2
            continue
        if char == "'":
            return "".join(chars), interpolated, index + 1
        if source.startswith("${", index):
            interpolated = True
        chars.append(char)
        index += 1
    raise ValueError("unterminated string")


def _tokens(source: str) -> Iterator[_Token]:
    index, line = 0, 1
    while index < len(source):
        char = source[index]
        if char == "\n":
            yield _Token("newline", "\n", line=line, start=index, end=index + 1)
            line += 1
            index += 1
        elif char in " \t\r":
            index += 1
        elif source.startswith("//", index):
            end = source.find("\n", index)
            index = len(source) if end < 0 else end
        elif source.startswith("/*", index):
            end = source.find("*/", index + 2)
            end = len(source) if end < 0 else end + 2
            line += source.count("\n", index, end)
            index = end
        elif char == "'":
            value, interpolated, end = _read_string(source, index)
            kind = "istring" if interpolated else "string"
            yield _Token(kind, source[index:end], value, line, index, end)
            line += source.count("\n", index, end)
            index = end
        elif match := _NUMBER.match(source, index):
            yield _Token("number", match.group(), int(match.group()), line, index, match.end())
            index = match.end()
        elif match := _NAME.match(source, index):
            yield _Token("name", match.group(), line=line, start=index, end=match.end())
            index = match.end()
        else:
            yield _Token("punct", char, line=line, start=index, end=index + 1)
            index += 1


_OPEN = {"(": ")", "[": "]", "{": "}"}


def _statements(source: str) -> Iterator[list[_Token]]:
    """Top-level statements: token runs ended by a newline outside any brackets."""
    statement: list[_Token] = []
    depth = 0
    for token in _tokens(source):
        if token.kind == "punct" and token.text in _OPEN:
            depth += 1
        elif token.kind == "punct" and token.text in _OPEN.values():
            depth -= 1
        if token.kind == "newline" and depth == 0:
            if statement:
                yield statement
            statement = []
        else:
            statement.append(token)
    if statement:
        yield statement


class _NotLiteral(Exception):
    pass


def _literal(tokens: Sequence[_Token]) -> Any:
    value, rest = _literal_prefix([t for t in tokens])
    if rest:
        raise _NotLiteral
    return value


def _literal_prefix(tokens: list[_Token]) -> tuple[Any, list[_Token]]:
    if not tokens:
        raise _NotLiteral
    first, rest = tokens[0], tokens[1:]
    if first.kind in ("string", "number"):
        return first.value, rest
    if first.kind == "punct" and first.text == "-" and rest and rest[0].kind == "number":
        return -rest[0].value, rest[1:]
    if first.kind == "name" and first.text in ("true", "false", "null"):
        return {"true": True, "false": False, "null": None}[first.text], rest
    if first.kind == "punct" and first.text == "[":
        items: list[Any] = []
        while True:
            rest = _skip_separators(rest)
            if rest and rest[0].text == "]":
                return items, rest[1:]
            item, rest = _literal_prefix(rest)
            items.append(item)
    if first.kind == "punct" and first.text == "{":
        entries: dict[str, Any] = {}
        while True:
            rest = _skip_separators(rest)
            if rest and rest[0].text == "}":
                return entries, rest[1:]
            if len(rest) < 2 or rest[0].kind not in ("name", "string") or rest[1].text != ":":
                raise _NotLiteral
            key = rest[0].text if rest[0].kind == "name" else rest[0].value
            entries[key], rest = _literal_prefix(rest[2:])
    raise _NotLiteral


def _skip_separators(tokens: list[_Token]) -> list[_Token]:
    while tokens and (tokens[0].kind == "newline" or tokens[0].text == ","):
        tokens = tokens[1:]
    return tokens


def _source_text(source: str, tokens: Sequence[_Token]) -> str:
    """The tokens as written, on one line."""
    if not tokens:
        return ""
    return " ".join(source[tokens[0].start : tokens[-1].end].split())


@dataclass(frozen=True)
class _Decorator:
    name: str
    argument: Any


def _decorator(source: str, tokens: list[_Token], where: str) -> _Decorator:
    # @name(args) or @sys.name(args)
    names = [t.text for t in tokens[1:] if t.kind == "name"][:2]
    name = names[1] if names[:1] == ["sys"] and len(names) > 1 else names[0]
    open_at = next((i for i, t in enumerate(tokens) if t.text == "("), None)
    if open_at is None or tokens[-1].text != ")":
        raise ValueError(f"{where}: cannot read decorator @{name}")
    inner = tokens[open_at + 1 : -1]
    if not [t for t in inner if t.kind != "newline"]:
        return _Decorator(name, None)
    try:
        return _Decorator(name, _literal(_skip_separators(inner)))
    except _NotLiteral:
        if name in ("allowed", "minValue", "maxValue", "minLength", "maxLength"):
            raise ValueError(f"{where}: @{name} needs a literal argument") from None
        return _Decorator(name, _source_text(source, inner))


def _declaration(
    source: str, tokens: list[_Token], decorators: list[_Decorator], where: str
) -> ParamDeclaration:
    if len(tokens) < 3 or tokens[1].kind != "name":
        raise ValueError(f"{where}: cannot read the param statement")
    name = tokens[1].text
    equals = next((i for i, t in enumerate(tokens) if t.text == "="), len(tokens))
    type_tokens = tokens[2:equals]
    nullable = bool(type_tokens) and type_tokens[-1].text == "?"
    if nullable:
        type_tokens = type_tokens[:-1]
    type_text = _source_text(source, type_tokens).replace(" ", "")
    if type_text.endswith("[]"):
        type_text = "array"
    fields: dict[str, Any] = {"name": name, "type": type_text, "nullable": nullable}
    if equals < len(tokens):
        default_tokens = tokens[equals + 1 :]
        fields["has_default"] = True
        try:
            fields["default"] = _literal(default_tokens)
        except _NotLiteral:
            fields["default_expression"] = _source_text(source, default_tokens)
    for decorator in decorators:
        if decorator.name == "allowed":
            fields["allowed"] = tuple(decorator.argument)
        elif decorator.name in ("minValue", "maxValue", "minLength", "maxLength"):
            snake = re.sub(r"(?=[A-Z])", "_", decorator.name).lower()
            fields[snake] = int(decorator.argument)
        elif decorator.name == "secure":
            fields["secure"] = True
        elif decorator.name == "description":
            fields["description"] = str(decorator.argument)
    return ParamDeclaration(**fields)


def parse_declarations(source: str, where: str = "<template>") -> dict[str, ParamDeclaration]:
    """Every `param` of a Bicep source, in order, by name."""
    declarations: dict[str, ParamDeclaration] = {}
    pending: list[_Decorator] = []
    for statement in _statements(source):
        head = statement[0]
        place = f"{where}:{head.line}"
        try:
            if head.text == "@":
                pending.append(_decorator(source, statement, place))
                continue
            if head.kind == "name" and head.text == "param":
                declaration = _declaration(source, statement, pending, place)
                declarations[declaration.name] = declaration
        except (_NotLiteral, IndexError, StopIteration) as error:
            raise ValueError(f"{place}: cannot read this declaration") from error
        pending = []
    return declarations


def load_declarations(bicep_path: Path) -> dict[str, ParamDeclaration]:
    """The `param` declarations of a Bicep template; InputError when it cannot be read."""
    try:
        source = bicep_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{bicep_path}: cannot read the template ({error})") from error
    try:
        return parse_declarations(source, str(bicep_path))
    except ValueError as error:
        raise InputError(str(error)) from error


# -- validation ------------------------------------------------------------------------------

_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "int": (int,),
    "bool": (bool,),
    "array": (list, tuple),
    "object": (dict,),
}
_TYPE_WORDS = {
    "string": "a string",
    "int": "a whole number",
    "bool": "true or false",
    "array": "a JSON array",
    "object": "a JSON object",
}


def _shown(value: Any, declaration: ParamDeclaration) -> str:
    if declaration.secure:
        return "(secure value)"
    return repr(value) if isinstance(value, str) else _json_like(value)


def _json_like(value: Any) -> str:
    import json

    return json.dumps(value, default=str)


def _type_problem(value: Any, declaration: ParamDeclaration) -> str | None:
    expected = _PYTHON_TYPES.get(declaration.type)
    if expected is None:  # a user-defined type: ARM checks its shape
        return None
    wrong = not isinstance(value, expected)
    if declaration.type == "int" and isinstance(value, bool):
        wrong = True
    if wrong:
        return f"must be {_TYPE_WORDS[declaration.type]} (param type {declaration.type})"
    return None


def _rule_problems(value: Any, declaration: ParamDeclaration) -> Iterator[str]:
    if declaration.allowed is not None:
        items = value if declaration.type == "array" else [value]
        outside = [item for item in items if item not in declaration.allowed]
        if outside:
            choices = ", ".join(_json_like(item) for item in declaration.allowed)
            yield f"must be one of {choices} (@allowed)"
    if isinstance(value, int) and not isinstance(value, bool):
        if declaration.min_value is not None and value < declaration.min_value:
            yield f"must be at least {declaration.min_value} (@minValue({declaration.min_value}))"
        if declaration.max_value is not None and value > declaration.max_value:
            yield f"must be at most {declaration.max_value} (@maxValue({declaration.max_value}))"
    if isinstance(value, str | list | tuple):
        unit = "characters" if isinstance(value, str) else "items"
        if declaration.min_length is not None and len(value) < declaration.min_length:
            yield (
                f"must have at least {declaration.min_length} {unit} "
                f"(@minLength({declaration.min_length}))"
            )
        if declaration.max_length is not None and len(value) > declaration.max_length:
            yield (
                f"must have at most {declaration.max_length} {unit} "
                f"(@maxLength({declaration.max_length}))"
            )


def check_values(
    values: Mapping[str, Any],
    declarations: Mapping[str, ParamDeclaration],
    origins: Mapping[str, str] | None = None,
) -> list[str]:
    """One line per problem; empty when every value fits its declaration. A None value means
    "use the default" and is always accepted. `origins` names where a value came from."""
    problems: list[str] = []
    for name, value in values.items():
        origin = f" (from {origins[name]})" if origins and name in origins else ""
        declaration = declarations.get(name)
        if declaration is None:
            known = ", ".join(sorted(declarations))
            problems.append(f"{name}{origin}: unknown parameter; known parameters: {known}")
            continue
        if value is None:
            continue
        prefix = f"{name} {_shown(value, declaration)}{origin}"
        type_problem = _type_problem(value, declaration)
        if type_problem is not None:
            problems.append(f"{prefix}: {type_problem}")
            continue
        problems.extend(f"{prefix}: {problem}" for problem in _rule_problems(value, declaration))
    return problems


def validate_values(
    values: Mapping[str, Any],
    declarations: Mapping[str, ParamDeclaration],
    origins: Mapping[str, str] | None = None,
) -> None:
    """Raise one InputError (exit code 2) listing every problem `check_values` finds."""
    problems = check_values(values, declarations, origins)
    if problems:
        raise InputError("; ".join(problems))


def literal_defaults(declarations: Mapping[str, ParamDeclaration]) -> dict[str, Any]:
    """The defaults that are plain values (an expression default is computed by ARM)."""
    return {name: d.default for name, d in declarations.items() if d.literal_default}


def parse_text_value(text: str, declaration: ParamDeclaration | None) -> Any:
    """A value given as text (`--set`, an environment variable): a string parameter takes the
    text as it is; other types read it as JSON (`3`, `true`, `["a"]`); `null` always means
    "use the default"."""
    import json

    if text == "null":
        return None
    if declaration is not None and declaration.type == "string":
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text

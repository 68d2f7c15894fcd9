"""Evaluates the expressions the stand-in `bicep build` keeps in ARM's brackets: the Bicep
subset our templates use in parameter defaults and outputs (identifiers, property access, calls
of resourceGroup/subscription/deployment/uniqueString/take/toLower/string/empty, interpolated
'...${...}...' strings, numbers, booleans)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from provision.azure.uniquestring import unique_string

_TOKEN = re.compile(r"\s*(?:(?P<number>-?\d+)|(?P<name>[A-Za-z_]\w*)|(?P<punct>[().,\[\]]))")


class ExpressionError(ValueError):
    pass


FUNCTIONS: dict[str, Callable[..., Any]] = {
    # ARM's own algorithm, as the CLI uses it to predict names: the double derives the same.
    "uniqueString": unique_string,
    "take": lambda value, count: value[: int(count)],
    "toLower": lambda value: str(value).lower(),
    "toUpper": lambda value: str(value).upper(),
    "string": lambda value: value if isinstance(value, str) else str(value).lower(),
    "empty": lambda value: not value,
    "concat": lambda *values: "".join(map(str, values)),
}


class _Parser:
    def __init__(self, text: str, scope: Mapping[str, Any]) -> None:
        self.text = text
        self.at = 0
        self.scope = scope

    def parse(self) -> Any:
        value = self.expression()
        if self.text[self.at :].strip():
            raise ExpressionError(f"unexpected '{self.text[self.at :]}' in '{self.text}'")
        return value

    def _peek(self) -> str:
        rest = self.text[self.at :].lstrip()
        return rest[:1]

    def _skip_space(self) -> None:
        while self.at < len(self.text) and self.text[self.at].isspace():
            self.at += 1

    def _expect(self, char: str) -> None:
        self._skip_space()
        if self.text[self.at : self.at + 1] != char:
            raise ExpressionError(f"expected '{char}' at {self.at} in '{self.text}'")
        self.at += 1

    def expression(self) -> Any:
        value = self.primary()
        while True:
            following = self._peek()
            if following == ".":
                self._expect(".")
                name = self._name()
                value = value[name] if isinstance(value, Mapping) else getattr(value, name)
            elif following == "[":
                self._expect("[")
                index = self.expression()
                self._expect("]")
                value = value[index]
            else:
                return value

    def _name(self) -> str:
        match = _TOKEN.match(self.text, self.at)
        if not match or not match.group("name"):
            raise ExpressionError(f"expected a name at {self.at} in '{self.text}'")
        self.at = match.end()
        return match.group("name")

    def primary(self) -> Any:
        self._skip_space()
        if self.text[self.at : self.at + 1] == "'":
            return self.string()
        match = _TOKEN.match(self.text, self.at)
        if not match or match.group("punct"):
            raise ExpressionError(f"unexpected input at {self.at} in '{self.text}'")
        self.at = match.end()
        if match.group("number") is not None:
            return int(match.group("number"))
        name = match.group("name")
        if name in ("true", "false"):
            return name == "true"
        if name == "null":
            return None
        if self._peek() == "(":
            self._expect("(")
            arguments = []
            while self._peek() != ")":
                arguments.append(self.expression())
                if self._peek() == ",":
                    self._expect(",")
            self._expect(")")
            function = self.scope.get(name) if callable(self.scope.get(name)) else None
            function = function or FUNCTIONS.get(name)
            if function is None:
                raise ExpressionError(f"function '{name}' is not supported")
            return function(*arguments)
        if name not in self.scope:
            raise ExpressionError(f"'{name}' is not defined")
        return self.scope[name]

    def string(self) -> str:
        self.at += 1  # opening quote
        parts: list[str] = []
        while True:
            char = self.text[self.at : self.at + 1]
            if not char:
                raise ExpressionError(f"unterminated string in '{self.text}'")
            if char == "\\":
                parts.append(self.text[self.at + 1])
                self.at += 2
            elif char == "'":
                self.at += 1
                return "".join(parts)
            elif self.text.startswith("${", self.at):
                self.at += 2
                value = self.expression()
                self._expect("}")
                parts.append(value if isinstance(value, str) else str(value))
            else:
                parts.append(char)
                self.at += 1


def is_expression(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("[") and not value.startswith("[[")


def evaluate(value: Any, scope: Mapping[str, Any]) -> Any:
    """A template value: an expression in brackets is evaluated, anything else is literal."""
    if not is_expression(value):
        return value
    return _Parser(value[1:-1], scope).parse()

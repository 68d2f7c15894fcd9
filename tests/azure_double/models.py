"""Request bodies checked the way ARM checks them, against the SDK's own model classes (the
TypeSpec-generated `rest_field`s): unknown properties, read-only properties and missing required
ones are rejected with 400 InvalidRequestContent naming the JSON path.

The double is stricter than ARM about read-only properties (ARM's guidelines let a PUT echo
them back): the SDK never sends them, so a body that has one was not built by the SDK models.
"""

from __future__ import annotations

import datetime
import functools
import importlib
import types
import typing
from dataclasses import dataclass
from typing import Any

from tests.azure_double.http import Response, arm_error


@dataclass(frozen=True)
class _Field:
    hint: Any
    readonly: bool
    required: bool


def model_class(dotted: str) -> type:
    """'azure.mgmt.storage.models.StorageAccountCreateParameters' -> the class."""
    module_name, _, class_name = dotted.rpartition(".")
    return typing.cast(type, getattr(importlib.import_module(module_name), class_name))


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in (
        typing.get_args(hint)
    )


def _strip_optional(hint: Any) -> Any:
    if _is_optional(hint):
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007
    return hint


def _is_model(hint: Any) -> bool:
    return (isinstance(hint, type) and hasattr(hint, "_attr_to_rest_field")) or (
        isinstance(hint, type) and any(c.__name__ == "Model" for c in hint.__mro__[1:])
    )


@functools.cache
def _fields(cls: type) -> dict[str, _Field]:
    cls.__new__(cls)  # type: ignore[call-overload]  # the generated Model computes its rest fields on first instantiation
    package = importlib.import_module(cls.__module__.rsplit(".", 1)[0])
    hints = typing.get_type_hints(cls, localns={"_models": package})
    result = {}
    for attr, rest_field in cls._attr_to_rest_field.items():  # type: ignore[attr-defined]
        hint = hints.get(attr, Any)
        result[rest_field._rest_name] = _Field(
            hint=_strip_optional(hint),
            readonly=rest_field._visibility == ["read"],
            required=not _is_optional(hint) and rest_field._visibility != ["read"],
        )
    return result


def _concrete(cls: type, value: dict[str, Any]) -> type:
    """The subclass a discriminator value selects (polymorphic models)."""
    mapping = getattr(cls, "__mapping__", None)
    if not mapping:
        return cls
    for rest_field in cls._attr_to_rest_field.values():  # type: ignore[attr-defined]
        if rest_field._is_discriminator and rest_field._rest_name in value:
            return typing.cast(type, mapping.get(value[rest_field._rest_name], cls))
    return cls


class _Problem(Exception):
    pass


def _json_name(value: Any) -> str:
    return {dict: "Object", list: "Array", str: "String", bool: "Boolean"}.get(
        type(value), type(value).__name__
    )


def _check(hint: Any, value: Any, path: str) -> None:
    if value is None:
        return
    hint = _strip_optional(hint)
    origin = typing.get_origin(hint)
    where = path or "$"
    if _is_model(hint):
        if not isinstance(value, dict):
            raise _Problem(f"Expected an object at '{where}', got {_json_name(value)}.")
        cls = _concrete(hint, value)
        declared = _fields(cls)
        for key, item in value.items():
            field = declared.get(key)
            child = f"{path}.{key}" if path else key
            if field is None:
                raise _Problem(
                    f"Could not find member '{key}' on object of type '{cls.__name__}'. "
                    f"Path '{child}'."
                )
            if field.readonly:
                raise _Problem(f"The property '{child}' is read-only and cannot be set.")
            _check(field.hint, item, child)
        for key, field in declared.items():
            if field.required and value.get(key) is None:
                raise _Problem(f"Required property '{key}' not found in JSON. Path '{where}'.")
    elif origin is list:
        if not isinstance(value, list):
            raise _Problem(f"Expected an array at '{where}', got {_json_name(value)}.")
        (item_hint,) = typing.get_args(hint) or (Any,)
        for index, item in enumerate(value):
            _check(item_hint, item, f"{path}[{index}]")
    elif origin is dict:
        if not isinstance(value, dict):
            raise _Problem(f"Expected an object at '{where}', got {_json_name(value)}.")
        value_hint = (typing.get_args(hint) or (str, Any))[1]
        for key, item in value.items():
            _check(value_hint, item, f"{path}.{key}")
    elif hint is bool and not isinstance(value, bool):
        raise _Problem(f"Expected a Boolean at '{where}', got {_json_name(value)}.")
    elif hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise _Problem(f"Expected an Integer at '{where}', got {_json_name(value)}.")
    elif hint is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise _Problem(f"Expected a Number at '{where}', got {_json_name(value)}.")
    elif hint in (str, datetime.datetime) and not isinstance(value, str):
        raise _Problem(f"Expected a String at '{where}', got {_json_name(value)}.")


def body_problem(model: type, body: Any) -> Response | None:
    """None when the body fits the model; else ARM's 400."""
    if not isinstance(body, dict):
        return arm_error(400, "InvalidRequestContent", "The request content was not an object.")
    try:
        _check(model, body, "")
    except _Problem as problem:
        return arm_error(
            400,
            "InvalidRequestContent",
            f"The request content was invalid and could not be deserialized: '{problem}'",
        )
    return None

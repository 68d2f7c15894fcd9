"""Parameter declarations read from the Bicep templates, and values checked against them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from provision.errors import InputError
from provision.template_params import (
    ParamDeclaration,
    check_values,
    load_declarations,
    parse_declarations,
    parse_text_value,
    validate_values,
)

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((REPO / "infra/provision").rglob("*.bicep"))
MAIN = REPO / "infra/provision/inference.bicep"

# pycep-parser's decorator names -> our fields
_PYCEP_FIELDS = {
    "min_value": "min_value",
    "max_value": "max_value",
    "min_length": "min_length",
    "max_length": "max_length",
}


def _pycep_view(entry: Any) -> dict[str, Any]:
    view: dict[str, Any] = {"type": entry["type"], "secure": False, "allowed": None}
    for decorator in entry.get("decorators", []):
        kind = decorator["type"]
        if kind in _PYCEP_FIELDS:
            view[_PYCEP_FIELDS[kind]] = decorator["argument"]
        elif kind == "allowed":
            view["allowed"] = tuple(decorator["argument"])
        elif kind == "secure":
            view["secure"] = True
        elif kind == "description":
            # pycep keeps escapes as written; Bicep's value has them resolved
            view["description"] = decorator["argument"].replace("\\'", "'")
    return view


def _pycep_literal(value: Any) -> Any:
    # pycep keeps a negative number as the expression "minus N"
    if isinstance(value, dict) and value.get("operator", {}).get("type") == "minus":
        return -value["operator"]["operands"]["integer_value"]
    return value


def _our_view(declaration: ParamDeclaration) -> dict[str, Any]:
    view: dict[str, Any] = {
        "type": declaration.type,
        "secure": declaration.secure,
        "allowed": declaration.allowed,
    }
    for field in ("min_value", "max_value", "min_length", "max_length"):
        if getattr(declaration, field) is not None:
            view[field] = getattr(declaration, field)
    if declaration.description:
        view["description"] = declaration.description
    return view


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_param_matches_a_full_bicep_parser(template: Path) -> None:
    reference = BicepParser().parse(text=template.read_text())["parameters"]
    ours = load_declarations(template)
    assert list(ours) == list(reference)
    for name, entry in reference.items():
        declaration = ours[name]
        assert _our_view(declaration) == _pycep_view(entry), name
        default = entry["default"]
        if declaration.literal_default:
            assert _pycep_literal(default) == declaration.default, name
        elif declaration.has_default:
            # an expression: pycep gives a tree, or the interpolated string as written
            assert isinstance(default, dict) or "${" in str(default), name
        else:
            assert default is None, name


def test_reads_the_forms_a_template_may_use() -> None:
    source = """
// a comment @allowed(['x'])
@sys.description('It\\'s a \\'quoted\\' text')
@allowed([
  'a'
  'b' // the second
])
param choice string = 'a'

/* a block
   param hidden string */
@minValue(-5)
@maxValue(5)
param level int = -1

@minLength(1)
param names string[] = [
  'x', 'y'
]

param maybe string?
param computed string = '${resourceGroup().name}-x'
param options object = {
  retries: 3
  'odd-key': [true, null]
}
param multi string = '''
two lines'''
var notAParam = 1
"""
    declarations = parse_declarations(source)
    assert list(declarations) == [
        *("choice", "level", "names", "maybe", "computed", "options", "multi")
    ]
    choice = declarations["choice"]
    assert (choice.allowed, choice.default, choice.description) == (
        ("a", "b"),
        "a",
        "It's a 'quoted' text",
    )
    assert (declarations["level"].min_value, declarations["level"].default) == (-5, -1)
    assert declarations["names"].type == "array" and declarations["names"].default == ["x", "y"]
    assert declarations["maybe"].nullable and not declarations["maybe"].has_default
    computed = declarations["computed"]
    assert computed.has_default and not computed.literal_default
    assert computed.default_expression == "'${resourceGroup().name}-x'"
    assert declarations["options"].default == {"retries": 3, "odd-key": [True, None]}
    assert declarations["multi"].default == "two lines"


def test_statements_other_than_params_are_not_parsed() -> None:
    # Object spread is syntax pycep-parser 0.7.1 rejects: the declarations around it still read.
    source = "param base object = {}\nvar merged = {\n  ...base\n  extra: 1\n}\nparam n int = 2\n"
    assert list(parse_declarations(source)) == ["base", "n"]


def test_a_constraint_that_is_not_a_literal_is_reported_with_its_line(tmp_path: Path) -> None:
    template = tmp_path / "t.bicep"
    template.write_text("param a int = 1\n\n@maxValue(max)\nparam b int\n")
    with pytest.raises(InputError, match=r"t.bicep:3: @maxValue needs a literal argument"):
        load_declarations(template)


@pytest.fixture(scope="module")
def main() -> dict[str, ParamDeclaration]:
    return load_declarations(MAIN)


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"maximumInstanceCount": -3}, "maximumInstanceCount -3: must be at least 1 (@minValue(1)"),
        (
            {"maximumInstanceCount": 31},
            "maximumInstanceCount 31: must be at most 30 (@maxValue(30)",
        ),
        (
            {"concurrentRequests": "lots"},
            "concurrentRequests 'lots': must be a whole number (param type int)",
        ),
        ({"concurrentRequests": True}, "concurrentRequests true: must be a whole number"),
        ({"gpuProfileType": "H100"}, "gpuProfileType 'H100': must be one of \"Consumption-GPU"),
        ({"fileShareName": "ab"}, "fileShareName 'ab': must have at least 3 characters"),
        ({"storageAccountName": "x" * 25}, "must have at most 24 characters (@maxLength(24))"),
        ({"useExistingEnvironment": "yes"}, "useExistingEnvironment 'yes': must be true or false"),
        ({"tags": ["a"]}, 'tags ["a"]: must be a JSON object'),
        ({"defaultCommands": "ls"}, "defaultCommands 'ls': must be a JSON array"),
        ({"maximumInstanceCont": 2}, "maximumInstanceCont: unknown parameter; known parameters:"),
    ],
)
def test_each_rule_gives_one_line_naming_parameter_value_and_rule(
    main: dict[str, ParamDeclaration], values: dict[str, Any], problem: str
) -> None:
    problems = check_values(values, main)
    assert len(problems) == 1 and "\n" not in problems[0]
    assert problem in problems[0]


def test_the_declared_defaults_and_nulls_pass(main: dict[str, ParamDeclaration]) -> None:
    defaults = {name: d.default for name, d in main.items() if d.literal_default}
    assert check_values(defaults, main) == []
    assert check_values({"modelPath": None, "maximumInstanceCount": None}, main) == []


def test_secure_values_never_appear_in_a_problem(main: dict[str, ParamDeclaration]) -> None:
    problems = check_values({"apiKeyPrimary": "short-secret"}, main)
    assert problems == [
        "apiKeyPrimary (secure value): must have at least 16 characters (@minLength(16))"
    ]


def test_validate_names_every_problem_and_where_it_came_from(
    main: dict[str, ParamDeclaration],
) -> None:
    with pytest.raises(InputError) as raised:
        validate_values(
            {"maximumInstanceCount": -3, "concurrentRequests": "lots"},
            main,
            {"maximumInstanceCount": "--set", "concurrentRequests": "ACA_INFER_CONCURRENT_..."},
        )
    message = str(raised.value)
    assert "\n" not in message
    assert "maximumInstanceCount -3 (from --set): must be at least 1" in message
    assert "concurrentRequests 'lots' (from ACA_INFER_CONCURRENT_...)" in message


def test_text_values_follow_the_declared_type(main: dict[str, ParamDeclaration]) -> None:
    assert parse_text_value("123", main["acaAppName"]) == "123"
    assert parse_text_value("3", main["maximumInstanceCount"]) == 3
    assert parse_text_value("true", main["useExistingEnvironment"]) is True
    assert parse_text_value("lots", main["concurrentRequests"]) == "lots"
    assert parse_text_value("null", main["modelPath"]) is None

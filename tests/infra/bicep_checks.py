"""Offline checks of the Bicep templates: parse, property names against the azure-mgmt models,
parameter hygiene, outputs, parameters files, API versions, module wiring.

Every check is a function that takes parsed template data and returns a list of problems (empty
when clean), so the tests can feed it both the real templates and deliberately broken snippets.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycep import BicepParser

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"
PROVISION_DIR = INFRA_DIR / "provision"
MAIN_TEMPLATE = PROVISION_DIR / "inference.bicep"
PARAMETERS_FILE = PROVISION_DIR / "inference.parameters.json"

# Keys of infra/inference.config.json (DESIGN.md "Contracts") and the extras the template adds.
CONFIG_KEYS = frozenset(
    {
        "SUBSCRIPTION_ID",
        "RESOURCE_GROUP_NAME",
        "STORAGE_ACCOUNT_NAME",
        "FILE_SHARE_NAME",
        "ACA_APP_NAME",
        "ACA_APP_ENDPOINT",
    }
)
EXTRA_OUTPUT_KEYS = frozenset(
    {"LOCATION", "ACA_ENVIRONMENT_NAME", "ACA_ENVIRONMENT_STORAGE_NAME", "LOG_ANALYTICS_NAME"}
)

# The request body model of a PUT for each resource type (for storage accounts the create
# parameters, since the GET model marks sku and kind read-only).
SDK_MODEL_FOR_TYPE: dict[str, tuple[str, str]] = {
    "Microsoft.Storage/storageAccounts": (
        "azure.mgmt.storage.models",
        "StorageAccountCreateParameters",
    ),
    "Microsoft.Storage/storageAccounts/fileServices": (
        "azure.mgmt.storage.models",
        "FileServiceProperties",
    ),
    "Microsoft.Storage/storageAccounts/fileServices/shares": (
        "azure.mgmt.storage.models",
        "FileShare",
    ),
    "Microsoft.OperationalInsights/workspaces": ("azure.mgmt.loganalytics.models", "Workspace"),
    "Microsoft.App/managedEnvironments": ("azure.mgmt.appcontainers.models", "ManagedEnvironment"),
    "Microsoft.App/managedEnvironments/storages": (
        "azure.mgmt.appcontainers.models",
        "ManagedEnvironmentStorage",
    ),
    "Microsoft.App/containerApps": ("azure.mgmt.appcontainers.models", "ContainerApp"),
}

# Keys of a resource declaration that ARM handles itself rather than the resource provider.
DEPLOYMENT_KEYS = frozenset({"name", "parent", "scope", "dependsOn"})

# Lowest stable API version accepted per provider namespace.
MINIMUM_API_VERSION = {"Microsoft.App": "2025-07-01"}

SECRET_NAME = re.compile(r"key|secret|password|token|connectionstring|sas", re.IGNORECASE)
SECRET_FUNCTIONS = re.compile(r"\blist[A-Z]\w*\(|\blistKeys\b|\blistSecrets\b")


class BicepSyntaxError(ValueError):
    """A .bicep file does not parse."""


@dataclass(frozen=True)
class Template:
    """One parsed .bicep file with its source (the parser drops a few things, e.g. `?`)."""

    path: Path
    source: str
    data: Mapping[str, Any]

    @property
    def params(self) -> Mapping[str, Any]:
        return self.data.get("parameters", {})

    @property
    def variables(self) -> Mapping[str, Any]:
        return self.data.get("variables", {})

    @property
    def resources(self) -> Mapping[str, Any]:
        return self.data.get("resources", {})

    @property
    def modules(self) -> Mapping[str, Any]:
        return self.data.get("modules", {})

    @property
    def outputs(self) -> Mapping[str, Any]:
        return self.data.get("outputs", {})


def parse_text(source: str, path: Path = Path("<snippet>.bicep")) -> Template:
    try:
        data = BicepParser().parse(text=source)
    except Exception as error:  # lark raises several unrelated exception types
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise BicepSyntaxError(f"{path}: {first_line}") from error
    return Template(path=path, source=source, data=data)


def parse_file(path: Path) -> Template:
    return parse_text(path.read_text(encoding="utf-8"), path)


def bicep_files(root: Path = PROVISION_DIR) -> list[Path]:
    return sorted(root.rglob("*.bicep"))


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


def decorator(param: Mapping[str, Any], kind: str) -> Any:
    """The argument of a decorator (`True` for argument-less ones), or None when absent."""
    for entry in param.get("decorators", []):
        if entry.get("type") == kind:
            return entry.get("argument", True)
    return None


def nullable_params(template: Template) -> set[str]:
    """Params declared with a nullable type (`param x string?`); the parser drops the `?`."""
    pattern = re.compile(r"^\s*param\s+(\w+)\s+[\w\[\]'.]+\?", re.MULTILINE)
    return set(pattern.findall(template.source))


def has_default(param: Mapping[str, Any]) -> bool:
    return param.get("default") is not None


def check_param_descriptions(template: Template) -> list[str]:
    """Every param has @description starting with 'Required.' or 'Optional.', matching whether
    a value must be given."""
    problems = []
    optional_names = nullable_params(template)
    for name, param in template.params.items():
        text = decorator(param, "description")
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{template.path}: param {name} has no @description")
            continue
        required = not has_default(param) and name not in optional_names
        expected = "Required." if required else "Optional."
        if not text.startswith(expected):
            problems.append(
                f"{template.path}: param {name} description must start with {expected!r}"
            )
    return problems


def check_output_descriptions(template: Template) -> list[str]:
    return [
        f"{template.path}: output {name} has no @description"
        for name, output in template.outputs.items()
        if not decorator(output, "description")
    ]


def check_secure_params(template: Template) -> list[str]:
    """@secure() params have no default, and params that look like secrets are @secure()."""
    problems = []
    for name, param in template.params.items():
        secure = bool(decorator(param, "secure"))
        if secure and has_default(param):
            problems.append(f"{template.path}: @secure() param {name} must not have a default")
        if not secure and SECRET_NAME.search(name) and param.get("type") in ("string", "object"):
            problems.append(f"{template.path}: param {name} looks secret; mark it @secure()")
    return problems


# --------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------


def secure_param_names(template: Template) -> set[str]:
    return {name for name, p in template.params.items() if decorator(p, "secure")}


def check_outputs_not_secret(template: Template) -> list[str]:
    problems = []
    secure_names = secure_param_names(template)
    for name, output in template.outputs.items():
        if SECRET_NAME.search(name):
            problems.append(f"{template.path}: output {name} is named like a secret")
        if decorator(output, "secure"):
            problems.append(f"{template.path}: output {name} is @secure(); outputs carry no secret")
        value = json.dumps(output.get("value"))
        tokens = set(re.findall(r"[A-Za-z_]\w*", value))
        if SECRET_FUNCTIONS.search(value) or "listKeys" in tokens:
            problems.append(f"{template.path}: output {name} exposes a list*() result")
        leaked = sorted(tokens & secure_names)
        if leaked:
            problems.append(f"{template.path}: output {name} uses secure param {leaked[0]}")
    return problems


def check_outputs_are_config_keys(
    template: Template,
    required: frozenset[str] = CONFIG_KEYS,
    extras: frozenset[str] = EXTRA_OUTPUT_KEYS,
) -> list[str]:
    names = set(template.outputs)
    problems = [f"{template.path}: missing output {key}" for key in sorted(required - names)]
    problems += [
        f"{template.path}: output {key} is not an inference.config.json key"
        for key in sorted(names - required - extras)
    ]
    return problems


# --------------------------------------------------------------------------------------------
# Parameters files
# --------------------------------------------------------------------------------------------

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "int": (int,),
    "bool": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _type_name(param: Mapping[str, Any]) -> tuple[str, str | None]:
    declared = param.get("type")
    if isinstance(declared, dict):
        return str(declared.get("type")), declared.get("item_type")
    return str(declared), None


def _value_problem(name: str, param: Mapping[str, Any], value: Any) -> str | None:
    kind, item_kind = _type_name(param)
    accepted = _JSON_TYPES.get(kind)
    # bool is an int in Python; an int param must not accept true/false.
    if accepted and (
        not isinstance(value, accepted) or (kind == "int" and isinstance(value, bool))
    ):
        return f"{name}: expected {kind}, got {json.dumps(value)}"
    if item_kind and isinstance(value, list):
        item_types = _JSON_TYPES.get(item_kind, (object,))
        if not all(isinstance(item, item_types) for item in value):
            return f"{name}: expected an array of {item_kind}"
    allowed = decorator(param, "allowed")
    if isinstance(allowed, list) and value not in allowed:
        return f"{name}: {json.dumps(value)} is not one of {', '.join(map(str, allowed))}"
    low, high = decorator(param, "min_value"), decorator(param, "max_value")
    if isinstance(value, int) and low is not None and value < low:
        return f"{name}: {value} is below the minimum {low}"
    if isinstance(value, int) and high is not None and value > high:
        return f"{name}: {value} is above the maximum {high}"
    shortest, longest = decorator(param, "min_length"), decorator(param, "max_length")
    if isinstance(value, str | list) and shortest is not None and len(value) < shortest:
        return f"{name}: shorter than {shortest}"
    if isinstance(value, str | list) and longest is not None and len(value) > longest:
        return f"{name}: longer than {longest}"
    return None


def check_parameters_file(template: Template, document: Mapping[str, Any]) -> list[str]:
    """A deploymentParameters document fits the template: known names, values of the declared
    type within the declared limits, null only where the template has a default (the
    provisioner and the manual script drop nulls so that default applies)."""
    parameters = document.get("parameters")
    if not isinstance(parameters, dict):
        return ["parameters file: no 'parameters' object"]
    problems = []
    optional_names = nullable_params(template)
    for name, entry in parameters.items():
        param = template.params.get(name)
        if param is None:
            problems.append(f"{name}: not a parameter of {template.path.name}")
            continue
        if not isinstance(entry, dict) or "value" not in entry:
            problems.append(f"{name}: expected {{'value': ...}}")
            continue
        value = entry["value"]
        if value is None:
            if not has_default(param) and name not in optional_names:
                problems.append(f"{name}: null but the template has no default; give a value")
            continue
        if decorator(param, "secure"):
            problems.append(f"{name}: secure value in a parameters file; pass it at deploy time")
        problem = _value_problem(name, param, value)
        if problem:
            problems.append(problem)
    return problems


# --------------------------------------------------------------------------------------------
# API versions
# --------------------------------------------------------------------------------------------


def check_api_versions(template: Template) -> list[str]:
    problems = []
    for symbol, resource in template.resources.items():
        version = str(resource.get("api_version"))
        namespace = str(resource.get("type")).split("/")[0]
        if "preview" in version.lower():
            problems.append(f"{template.path}: {symbol} uses preview API version {version}")
        minimum = MINIMUM_API_VERSION.get(namespace)
        if minimum and version < minimum:
            problems.append(f"{template.path}: {symbol} API version {version} < {minimum}")
    return problems


# --------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------


def _unwrap(config: Any) -> Any:
    """The body of a resource/module declaration, without `if (...)` or `[for ...]`."""
    while isinstance(config, dict):
        if "loop_type" in config:
            config = config.get("config")
        elif set(config) == {"condition", "config"}:
            config = config["config"]
        else:
            break
    return config


def check_module_params(template: Template) -> list[str]:
    """Each module call passes only params the module declares, and every required one."""
    problems = []
    for symbol, module in template.modules.items():
        if module.get("type") != "local":
            continue
        target = (template.path.parent / module["detail"]["path"]).resolve()
        if not target.exists():
            problems.append(f"{template.path}: module {symbol} points at missing {target}")
            continue
        called = parse_file(target)
        passed = set((_unwrap(module.get("config")) or {}).get("params", {}) or {})
        declared = set(called.params)
        optional_names = nullable_params(called)
        required = {
            name
            for name, p in called.params.items()
            if not has_default(p) and name not in optional_names
        }
        problems += [
            f"{template.path}: module {symbol} passes unknown param {name}"
            for name in sorted(passed - declared)
        ]
        problems += [
            f"{template.path}: module {symbol} misses required param {name}"
            for name in sorted(required - passed)
        ]
    return problems


# --------------------------------------------------------------------------------------------
# Resource property names against the azure-mgmt SDK models
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WireField:
    readonly: bool
    annotation: Any


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and bool(getattr(annotation, "_is_model", False))


@functools.cache
def wire_fields(model: Any) -> dict[str, WireField]:
    """JSON property name -> field of an SDK model (TypeSpec-generated azure-mgmt packages)."""
    # The SDK fills its field table on first instantiation.
    model.__new__(model)
    table = getattr(model, "_attr_to_rest_field", None)
    if table is None:
        raise TypeError(f"{model.__qualname__} is not a TypeSpec-generated azure-mgmt model")
    models_module = importlib.import_module(model.__module__.rsplit(".", 1)[0])
    hints = typing.get_type_hints(model, localns={"_models": models_module})
    return {
        rest_field._rest_name: WireField(
            readonly=rest_field._visibility == ["read"], annotation=hints.get(attribute)
        )
        for attribute, rest_field in table.items()
    }


def _inner(annotation: Any) -> tuple[type | None, Any]:
    """(model class, list item annotation) that an annotation allows, ignoring None/str/enums."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        model, item = None, None
        for arg in typing.get_args(annotation):
            arg_model, arg_item = _inner(arg)
            model, item = model or arg_model, item or arg_item
        return model, item
    if origin is list:
        return None, typing.get_args(annotation)[0]
    if _is_model(annotation):
        return annotation, None
    return None, None


def _is_expression(value: Any) -> bool:
    return isinstance(value, dict) and (
        set(value) in ({"operator"}, {"function"}) or "loop_type" in value
    )


class _PropertyWalker:
    def __init__(self, template: Template, problems: list[str]) -> None:
        self.template = template
        self.problems = problems

    def check(self, value: Any, annotation: Any, path: str, seen: frozenset[str]) -> None:
        model, item = _inner(annotation)
        if model is None and item is None:
            return  # scalar, dict[str, ...] or free-form: names are the caller's own
        if isinstance(value, str) and value in self.template.variables and value not in seen:
            self.check(self.template.variables[value]["value"], annotation, path, seen | {value})
            return
        if _is_expression(value):
            for branch in self._branches(value, item is not None):
                self.check(branch, annotation, path, seen)
            return
        if isinstance(value, list) and item is not None:
            for index, element in enumerate(value):
                self.check(element, item, f"{path}[{index}]", seen)
        elif isinstance(value, dict) and model is not None:
            self.check_object(value, model, path, seen)

    def check_object(
        self, value: Mapping[str, Any], model: type, path: str, seen: frozenset[str]
    ) -> None:
        fields = wire_fields(model)
        for key, element in value.items():
            field = fields.get(key)
            where = f"{path}.{key}" if path else key
            if field is None:
                known = ", ".join(sorted(name for name, f in fields.items() if not f.readonly))
                self.problems.append(
                    f"{self.template.path}: {where}: no property {key!r} in "
                    f"{model.__name__} (writable: {known})"
                )
            elif field.readonly:
                self.problems.append(
                    f"{self.template.path}: {where}: {key!r} is read-only in {model.__name__}"
                )
            else:
                self.check(element, field.annotation, where, seen)

    @staticmethod
    def _branches(expression: Mapping[str, Any], wants_list: bool) -> Iterator[Any]:
        """Sub-values of an expression that end up as the property's value."""
        if "loop_type" in expression:
            if wants_list:
                yield [expression.get("config")]
            return
        if "operator" in expression:
            operator = expression["operator"]
            operands = operator.get("operands", {})
            if operator.get("type") == "conditional":
                yield operands.get("true_value")
                yield operands.get("false_value")
            elif operator.get("type") == "coalesce":
                yield from operands.values()
            return
        function = expression["function"]
        if function.get("type") in ("union", "concat"):
            yield from function.get("parameters", {}).values()


def sdk_model(resource_type: str) -> type:
    module_name, class_name = SDK_MODEL_FOR_TYPE[resource_type]
    model: type = getattr(importlib.import_module(module_name), class_name)
    return model


def check_resource_properties(template: Template) -> list[str]:
    """Every property a resource sets exists in the SDK model of its type and is writable."""
    problems: list[str] = []
    walker = _PropertyWalker(template, problems)
    for symbol, resource in template.resources.items():
        if resource.get("existing"):
            continue  # a reference only: name/parent/scope
        resource_type = str(resource.get("type"))
        if resource_type not in SDK_MODEL_FOR_TYPE:
            problems.append(
                f"{template.path}: {symbol}: no SDK model mapped for {resource_type}; "
                "add it to SDK_MODEL_FOR_TYPE"
            )
            continue
        body = _unwrap(resource.get("config"))
        if not isinstance(body, dict):
            continue
        top_level = {key: value for key, value in body.items() if key not in DEPLOYMENT_KEYS}
        walker.check_object(top_level, sdk_model(resource_type), symbol, frozenset())
    return problems


# --------------------------------------------------------------------------------------------
# Security posture and the container contract (DESIGN.md)
# --------------------------------------------------------------------------------------------

APP_PORT = 7860
MOUNT_ROOT = "/mount"
SECRET_REFS = {
    "ACA_INFER_API_KEY_PRIMARY": "api-key-primary",
    "ACA_INFER_API_KEY_SECONDARY": "api-key-secondary",
}
PLAIN_ENV = {
    "ACA_INFER_MOUNT_ROOT",
    "ACA_INFER_MODEL_PATH",
    "ACA_INFER_ADAPTER_PATH",
    "ACA_INFER_PORT",
}
PROBE_PATHS = {"Startup": "/ready", "Readiness": "/ready", "Liveness": "/health"}
# Container Apps limits on probe settings.
PROBE_LIMITS = {"initialDelaySeconds": 60, "periodSeconds": 240, "failureThreshold": 10}


def resource_bodies(template: Template, resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(symbol, body) of each resource of a type that the template creates."""
    for symbol, resource in template.resources.items():
        body = _unwrap(resource.get("config"))
        created = resource.get("type") == resource_type and not resource.get("existing")
        if created and isinstance(body, dict):
            yield symbol, body


def _path(value: Any, *keys: str | int) -> Any:
    for key in keys:
        if isinstance(key, int):
            value = value[key] if isinstance(value, list) and len(value) > key else None
        else:
            value = value.get(key) if isinstance(value, dict) else None
    return value


def check_storage_security(template: Template) -> list[str]:
    problems = []
    for symbol, body in resource_bodies(template, "Microsoft.Storage/storageAccounts"):
        props = body.get("properties", {})
        if props.get("supportsHttpsTrafficOnly") is not True:
            problems.append(f"{template.path}: {symbol}: supportsHttpsTrafficOnly must be true")
        if props.get("minimumTlsVersion") not in ("TLS1_2", "TLS1_3"):
            problems.append(f"{template.path}: {symbol}: minimumTlsVersion must be TLS1_2+")
        if props.get("allowBlobPublicAccess") is not False:
            problems.append(f"{template.path}: {symbol}: allowBlobPublicAccess must be false")
    return problems


def _literal(template: Template, value: Any) -> Any:
    """The value, with variable names replaced by what they hold."""
    seen: set[str] = set()
    while isinstance(value, str) and value in template.variables and value not in seen:
        seen.add(value)
        value = template.variables[value]["value"]
    return value


def _int_upper_bound(template: Template, value: Any) -> int | None:
    """A literal int, or the @maxValue of the param it names."""
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value in template.params:
        bound = decorator(template.params[value], "max_value")
        return bound if isinstance(bound, int) else None
    if isinstance(value, str) and value in template.variables:
        return _int_upper_bound(template, template.variables[value]["value"])
    return None


def check_probes(template: Template) -> list[str]:
    problems = []
    for symbol, body in resource_bodies(template, "Microsoft.App/containerApps"):
        for container in _path(body, "properties", "template", "containers") or []:
            probes = {probe.get("type"): probe for probe in container.get("probes", [])}
            for kind, path in PROBE_PATHS.items():
                probe = probes.get(kind)
                if probe is None:
                    problems.append(f"{template.path}: {symbol}: no {kind} probe")
                    continue
                if _path(probe, "httpGet", "path") != path:
                    problems.append(f"{template.path}: {symbol}: {kind} probe must GET {path}")
                for setting, limit in PROBE_LIMITS.items():
                    if setting not in probe:
                        continue
                    bound = _int_upper_bound(template, probe[setting])
                    if bound is None or bound > limit:
                        problems.append(
                            f"{template.path}: {symbol}: {kind} {setting} may exceed {limit}"
                        )
    return problems


def check_app_contract(template: Template) -> list[str]:
    """Ingress, secrets, environment and mount as DESIGN.md and the server expect them."""
    problems = []
    for symbol, body in resource_bodies(template, "Microsoft.App/containerApps"):
        where = f"{template.path}: {symbol}"
        configuration = _path(body, "properties", "configuration") or {}
        ingress = configuration.get("ingress") or {}
        if ingress.get("external") is not True or ingress.get("allowInsecure") is not False:
            problems.append(f"{where}: ingress must be external and HTTPS-only")
        if _int_upper_bound(template, ingress.get("targetPort")) != APP_PORT:
            problems.append(f"{where}: ingress targetPort must be {APP_PORT}")
        if configuration.get("activeRevisionsMode") != "Single":
            problems.append(f"{where}: activeRevisionsMode must be Single")
        secrets = {secret.get("name") for secret in configuration.get("secrets", [])}
        if secrets != set(SECRET_REFS.values()):
            problems.append(f"{where}: app secrets must be exactly {sorted(SECRET_REFS.values())}")
        container = _path(body, "properties", "template", "containers", 0) or {}
        env = {entry.get("name"): entry for entry in container.get("env", [])}
        for name, secret in SECRET_REFS.items():
            if _path(env, name, "secretRef") != secret or "value" in env.get(name, {}):
                problems.append(f"{where}: env {name} must be secretRef {secret}")
        problems += [f"{where}: env {name} missing" for name in sorted(PLAIN_ENV - set(env))]
        mounts = {
            _literal(template, mount.get("mountPath"))
            for mount in container.get("volumeMounts", [])
        }
        if MOUNT_ROOT not in mounts:
            problems.append(f"{where}: the share must be mounted at {MOUNT_ROOT}")
        rules = _path(body, "properties", "template", "scale", "rules") or []
        if not any(_path(rule, "http", "metadata", "concurrentRequests") for rule in rules):
            problems.append(f"{where}: no HTTP concurrentRequests scale rule")
    return problems


# Linter rules that must stop a build: secrets, hard-coded locations and unused declarations.
REQUIRED_ERROR_RULES = frozenset(
    {
        "outputs-should-not-contain-secrets",
        "secure-parameter-default",
        "secure-secrets-in-params",
        "use-secure-value-for-secure-inputs",
        "no-hardcoded-location",
        "no-loc-expr-outside-params",
        "no-hardcoded-env-urls",
        "no-unused-params",
        "no-unused-vars",
        "no-unused-existing-resources",
    }
)


def check_bicepconfig(config: Mapping[str, Any]) -> list[str]:
    rules = _path(dict(config), "analyzers", "core", "rules") or {}
    return [
        f"bicepconfig.json: rule {rule} must have level error"
        for rule in sorted(REQUIRED_ERROR_RULES)
        if _path(rules, rule, "level") != "error"
    ]


class Unevaluable(ValueError):
    """An expression outside the small subset `evaluate` understands."""


@dataclass(frozen=True)
class Opaque:
    """A param value that is not a literal (e.g. `resourceGroup().location`)."""

    name: str


def evaluate(template: Template, value: Any, params: Mapping[str, Any]) -> Any:
    """Value of a template expression for given param values: literals, param and variable
    references, conditionals, ==, !=, !, &&, ||, startsWith, union, concat, empty and join."""
    if isinstance(value, str):
        if value in params:
            return params[value]
        if value in template.variables:
            return evaluate(template, template.variables[value]["value"], params)
        return value
    if isinstance(value, list):
        return [evaluate(template, item, params) for item in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"operator"}:
        kind, operands = value["operator"]["type"], value["operator"]["operands"]
        args = {key: evaluate(template, operand, params) for key, operand in operands.items()}
        if kind == "conditional":
            chosen = "true_value" if args["condition"] else "false_value"
            return args[chosen]
        binary = {
            "equals": lambda a, b: a == b,
            "not_equals": lambda a, b: a != b,
            "and": lambda a, b: bool(a and b),
            "or": lambda a, b: bool(a or b),
        }
        if kind in binary:
            return binary[kind](args["operand_1"], args["operand_2"])
        if kind == "not":
            return not args["bool_value"]
        raise Unevaluable(f"operator {kind}")
    if set(value) == {"function"}:
        kind, parameters = value["function"]["type"], value["function"].get("parameters", {})
        values = [evaluate(template, argument, params) for argument in parameters.values()]
        if kind == "starts_with" and all(isinstance(arg, str) for arg in values):
            return values[0].startswith(values[1])
        if kind == "union" and all(isinstance(arg, dict) for arg in values):
            return functools.reduce(lambda merged, arg: {**merged, **arg}, values, {})
        if kind == "concat" and all(isinstance(arg, list) for arg in values):
            return [item for arg in values for item in arg]
        if kind == "empty" and isinstance(values[0], str | list | dict):
            return not values[0]
        if kind == "join" and isinstance(values[0], list) and isinstance(values[1], str):
            return values[1].join(map(str, values[0]))
        raise Unevaluable(f"function {kind}")
    if "loop_type" in value:
        raise Unevaluable("for-expression")
    return {key: evaluate(template, item, params) for key, item in value.items()}


def default_params(template: Template) -> dict[str, Any]:
    return {
        name: param["default"]
        if isinstance(param.get("default"), str | int | bool | list)
        else Opaque(name)
        for name, param in template.params.items()
    }


def check_workload_profiles(template: Template) -> list[str]:
    """For every allowed gpuProfileType: the Consumption profile is there, the chosen profile is
    there, serverless profiles carry no node counts and dedicated ones do."""
    problems: list[str] = []
    profile_param = template.params.get("gpuProfileType")
    choices = decorator(profile_param, "allowed") if profile_param else None
    for symbol, body in resource_bodies(template, "Microsoft.App/managedEnvironments"):
        for choice in choices or []:
            where = f"{template.path}: {symbol} with gpuProfileType={choice}"
            params = {**default_params(template), "gpuProfileType": choice}
            try:
                profiles = evaluate(template, _path(body, "properties", "workloadProfiles"), params)
            except Unevaluable as error:
                problems.append(f"{where}: workloadProfiles cannot be evaluated ({error})")
                continue
            types_ = [profile.get("workloadProfileType") for profile in profiles or []]
            if {"name": "Consumption", "workloadProfileType": "Consumption"} not in profiles:
                problems.append(f"{where}: no Consumption profile")
            if choice not in types_:
                problems.append(f"{where}: no {choice} profile")
            for profile in profiles or []:
                counted = {"minimumCount", "maximumCount"} & set(profile)
                serverless = str(profile.get("workloadProfileType")).startswith("Consumption")
                if serverless and counted:
                    problems.append(f"{where}: serverless profile sets {sorted(counted)[0]}")
                if not serverless and len(counted) < 2:
                    problems.append(
                        f"{where}: dedicated profile needs minimumCount and maximumCount"
                    )
    return problems


def check_params_documented(template: Template, readme: str) -> list[str]:
    """Every param of the template appears, in backticks, in the infra README."""
    return [
        f"infra/README.md does not document param {name}"
        for name in template.params
        if f"`{name}`" not in readme
    ]


def all_template_problems(template: Template) -> list[str]:
    """Every per-file check, in one list (run on the main template and each module)."""
    return [
        *check_param_descriptions(template),
        *check_output_descriptions(template),
        *check_secure_params(template),
        *check_outputs_not_secret(template),
        *check_api_versions(template),
        *check_module_params(template),
        *check_resource_properties(template),
        *check_storage_security(template),
        *check_probes(template),
        *check_app_contract(template),
        *check_workload_profiles(template),
    ]

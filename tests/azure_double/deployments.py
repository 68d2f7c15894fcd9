"""ARM deployments at resource-group scope: validate, what-if, create-or-update as a long-running
operation, operations (nested module deployments included), outputs, failure with nested
error.details, delete.

Parameters are checked against the template's declared parameters as ARM does (unknown names,
missing required values, type, allowedValues, min/maxValue, min/maxLength); defaults that are
expressions are evaluated (tests/azure_double/expressions.py). For this project's template
(tests/azure_double/inference_template.py) the deployment creates what it declares through
`internal_request`, so each resource goes through its provider's validation and side effects.
Any other template deploys no resources and returns its outputs.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.azure_double import api_versions, inference_template
from tests.azure_double.arm import parse_path
from tests.azure_double.expressions import ExpressionError, evaluate
from tests.azure_double.http import Request, Response, arm_error, require_api_version
from tests.azure_double.inference_template import Module
from tests.azure_double.lro import Operation, OperationFailed
from tests.azure_double.resources import checked_body, method_not_allowed, no_route, now_iso

if TYPE_CHECKING:
    from tests.azure_double.server import AzureDouble

NAMESPACE = "Microsoft.Resources"
DEPLOYMENT_TYPE = "Microsoft.Resources/deployments"
DEPLOYMENT_FAILED = (
    "At least one resource deployment operation failed. Please list deployment operations for "
    "details. Please see https://aka.ms/arm-deployment-operations for usage details."
)

_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "securestring": (str,),
    "int": (int,),
    "bool": (bool,),
    "object": (dict,),
    "secureobject": (dict,),
    "array": (list,),
}


def install(double: AzureDouble) -> None:
    double.register_provider_handler(NAMESPACE, Deployments(double).handle)


def _invalid_template(message: str) -> dict[str, Any]:
    return {
        "code": "InvalidTemplate",
        "message": f"Deployment template validation failed: '{message}'.",
    }


def _deployment_failed(target: str, details: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "code": "DeploymentFailed",
        "target": target,
        "message": DEPLOYMENT_FAILED,
        "details": details,
    }


def check_parameters(template: dict[str, Any], given: dict[str, Any]) -> str | None:
    """ARM's parameter checks; None when the given values fit the declarations."""
    declared: dict[str, Any] = template.get("parameters") or {}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        return (
            f"The template parameters '{', '.join(unknown)}' in the parameters file are not "
            "valid; they are not present in the original template and can therefore not be "
            "provided at deployment time. The only supported parameters for this template are "
            f"'{', '.join(declared)}'"
        )
    for name, declaration in declared.items():
        if name not in given:
            if "defaultValue" not in declaration:
                return (
                    f"The value for the template parameter '{name}' is not provided. Please see "
                    "https://aka.ms/arm-create-parameter-file for usage details"
                )
            continue
        value = given[name]
        kind = str(declaration.get("type", "")).lower()
        accepted = _TYPES.get(kind, (object,))
        if not isinstance(value, accepted) or (kind == "int" and isinstance(value, bool)):
            return (
                f"Template parameter '{name}' was provided an invalid value. Expected a value of "
                f"type '{declaration.get('type')}', but received a value of type "
                f"'{type(value).__name__}'"
            )
        allowed = declaration.get("allowedValues")
        if allowed is not None and value not in allowed:
            return (
                f"The provided value '{value}' for the template parameter '{name}' is not valid. "
                "The parameter value is not part of the allowed value(s): "
                f"'{','.join(map(str, allowed))}'"
            )
        if isinstance(value, int) and not isinstance(value, bool):
            if "minValue" in declaration and value < declaration["minValue"]:
                return (
                    f"The provided value '{value}' for the template parameter '{name}' is not "
                    "valid. The value should be greater than or equal to "
                    f"'{declaration['minValue']}'"
                )
            if "maxValue" in declaration and value > declaration["maxValue"]:
                return (
                    f"The provided value '{value}' for the template parameter '{name}' is not "
                    f"valid. The value should be less than or equal to '{declaration['maxValue']}'"
                )
        if isinstance(value, str | list):
            if "minLength" in declaration and len(value) < declaration["minLength"]:
                return (
                    f"The provided value for the template parameter '{name}' is not valid. Length "
                    f"of the value should be greater than or equal to '{declaration['minLength']}'"
                )
            if "maxLength" in declaration and len(value) > declaration["maxLength"]:
                return (
                    f"The provided value for the template parameter '{name}' is not valid. Length "
                    f"of the value should be less than or equal to '{declaration['maxLength']}'"
                )
    return None


@dataclass
class Run:
    """One deployment's operations, in the order they finished."""

    deployment_id: str
    operations: list[dict[str, Any]] = field(default_factory=list)

    def record(
        self,
        resource_id: str,
        resource_type: str,
        status: int,
        error: dict[str, Any] | None,
        started: float,
    ) -> None:
        operation_id = uuid.uuid4().hex.upper()[:16]
        properties: dict[str, Any] = {
            "provisioningOperation": "Create",
            "provisioningState": "Failed" if error else "Succeeded",
            "timestamp": now_iso(),
            "duration": f"PT{time.monotonic() - started:.3f}S",
            "trackingId": str(uuid.uuid4()),
            "statusCode": str(status),
            "targetResource": {
                "id": resource_id,
                "resourceType": resource_type,
                "resourceName": resource_id.rsplit("/", 1)[-1],
            },
        }
        if error:
            properties["statusMessage"] = {"status": "Failed", "error": error}
        self.operations.append(
            {
                "id": f"{self.deployment_id}/operations/{operation_id}",
                "operationId": operation_id,
                "properties": properties,
            }
        )


class Deployments:
    def __init__(self, double: AzureDouble) -> None:
        self.double = double
        self.runs: dict[str, Run] = {}

    # ---- routing ---------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        bad = require_api_version(request, set(api_versions.accepted(DEPLOYMENT_TYPE)))
        if bad:
            return bad
        target = parse_path(request.path)
        # Also .../resourcegroups/{rg}/deployments/{name}/operations, outside /providers/.
        parts = list(target.rest) if target.namespace else request.path.split("/")[5:]
        rest = [p.lower() for p in parts]
        if target.resource_group is None or not rest or rest[0] != "deployments":
            return no_route(request)
        group_id = target.resource_group_id
        if len(rest) == 1:
            if request.method != "GET":
                return method_not_allowed(request)
            listed = self.double.store.children(f"{group_id}/providers/{NAMESPACE}", "deployments")
            return Response.of_json(200, {"value": listed})
        name = parts[1]
        deployment_id = f"{group_id}/providers/{DEPLOYMENT_TYPE}/{name}"
        action = (rest[2] if len(rest) > 2 else "", request.method)
        if action == ("", "PUT"):
            return self.create(request, deployment_id, name)
        if action == ("", "GET"):
            found = self.double.store.get(deployment_id)
            return Response.of_json(200, found) if found else _not_found(name)
        if action == ("", "HEAD"):
            return Response(204 if self.double.store.get(deployment_id) else 404)
        if action == ("", "DELETE"):
            return self.delete(request, deployment_id)
        if action == ("validate", "POST"):
            return self.validate(request, deployment_id, name)
        if action == ("whatif", "POST"):
            return self.what_if(request, deployment_id, name)
        if action == ("operations", "GET"):
            if self.double.store.get(deployment_id) is None:
                return _not_found(name)
            run = self.runs.get(deployment_id.lower())
            return Response.of_json(200, {"value": run.operations if run else []})
        if action == ("cancel", "POST"):
            return arm_error(
                409,
                "DeploymentCannotBeCancelled",
                f"The deployment '{name}' cannot be cancelled: the double finishes deployments "
                "without waiting on anything a cancel could stop.",
            )
        return no_route(request)

    # ---- the checks every verb shares ------------------------------------------------------

    def _prepare(
        self, request: Request, name: str, model: str = "Deployment"
    ) -> tuple[dict[str, Any], dict[str, Any], Response | None]:
        """The request body and the resolved parameter values, or ARM's 400."""
        body, problem = checked_body(request, f"azure.mgmt.resource.deployments.models.{model}")
        if problem:
            return body, {}, problem
        properties = body["properties"]
        template = properties.get("template")
        if not isinstance(template, dict):
            return (
                body,
                {},
                arm_error(
                    400,
                    "InvalidRequestContent",
                    "The double accepts inline templates only (properties.template); a "
                    "templateLink needs a URL it cannot reach.",
                ),
            )
        given = {
            key: entry.get("value")
            for key, entry in (properties.get("parameters") or {}).items()
            if isinstance(entry, dict) and entry.get("value") is not None
        }
        message = check_parameters(template, given)
        if message:
            return body, {}, Response.of_json(400, {"error": _invalid_template(message)})
        try:
            values = self._resolve(template, given, name, request)
        except (ExpressionError, KeyError, TypeError) as error:
            return body, {}, Response.of_json(400, {"error": _invalid_template(str(error))})
        return body, values, None

    def _scope(self, request: Request, name: str) -> dict[str, Any]:
        """What template expressions can call: resourceGroup(), subscription(), deployment()."""
        target = parse_path(request.path)
        group = self.double.store.get(target.resource_group_id) or {}
        subscription = self.double.arm.subscription_body()
        return {
            "resourceGroup": lambda: {
                "id": target.resource_group_id,
                "name": group.get("name", target.resource_group),
                "location": group.get("location"),
                "type": "Microsoft.Resources/resourceGroups",
            },
            "subscription": lambda: subscription,
            "deployment": lambda: {"name": name},
        }

    def _resolve(
        self, template: dict[str, Any], given: dict[str, Any], name: str, request: Request
    ) -> dict[str, Any]:
        scope = self._scope(request, name)
        declared = template.get("parameters") or {}
        for param, declaration in declared.items():
            scope[param] = (
                given[param] if param in given else evaluate(declaration["defaultValue"], scope)
            )
        return {param: scope[param] for param in declared}

    def _deployment_body(
        self, deployment_id: str, body: dict[str, Any], values: dict[str, Any], state: str
    ) -> dict[str, Any]:
        template = body["properties"]["template"]
        declared = template.get("parameters") or {}
        shown = {}
        for key, value in values.items():
            kind = str(declared[key].get("type", "string"))
            # Secure values are never echoed back, as ARM does.
            shown[key] = {"type": kind[:1].upper() + kind[1:]}
            if not kind.lower().startswith("secure"):
                shown[key]["value"] = value
        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
        return {
            "id": deployment_id,
            "name": deployment_id.rsplit("/", 1)[-1],
            "type": DEPLOYMENT_TYPE,
            "properties": {
                "provisioningState": state,
                "mode": body["properties"].get("mode", "Incremental"),
                "timestamp": now_iso(),
                "correlationId": str(uuid.uuid4()),
                "parameters": shown,
                "templateHash": str(int(digest[:16], 16)),
                "outputs": {},
                "outputResources": [],
            },
        }

    def _plan(
        self, body: dict[str, Any], values: dict[str, Any], deployment_id: str
    ) -> list[Module]:
        metadata = body["properties"]["template"].get("metadata") or {}
        if metadata.get("name") != inference_template.TEMPLATE_NAME:
            return []
        return inference_template.plan(values, parse_path(deployment_id).resource_group_id)

    # ---- verbs -----------------------------------------------------------------------------

    def validate(self, request: Request, deployment_id: str, name: str) -> Response:
        body, values, problem = self._prepare(request, name)
        if problem:
            return problem
        result = self._deployment_body(deployment_id, body, values, "Succeeded")
        result["properties"]["validatedResources"] = [
            {"id": step.resource_id}
            for module in self._plan(body, values, deployment_id)
            for step in module.steps
        ]
        return Response.of_json(200, result)

    def what_if(self, request: Request, deployment_id: str, name: str) -> Response:
        body, values, problem = self._prepare(request, name, "DeploymentWhatIf")
        if problem:
            return problem

        declared = body["properties"]["template"].get("parameters") or {}
        secure = {
            json.dumps(values[key])
            for key, declaration in declared.items()
            if str(declaration.get("type", "")).lower().startswith("secure")
        }

        def changes(_: Operation) -> dict[str, Any]:
            listed = []
            for module in self._plan(body, values, deployment_id):
                for step in module.steps:
                    before = self.double.store.get(step.resource_id)
                    listed.append(
                        {
                            "resourceId": step.resource_id,
                            "changeType": "Create" if before is None else "Modify",
                            "before": before,
                            "after": _masked({"id": step.resource_id, **step.body}, secure),
                        }
                    )
            return {"status": "Succeeded", "properties": {"changes": listed}}

        operation = self.double.operations.start(
            self.double.subscription_id, NAMESPACE, "global", request.query["api-version"], changes
        )
        response = self.double.operations.accepted(operation)
        del response.headers["Azure-AsyncOperation"]  # what-if polls Location
        return response

    def delete(self, request: Request, deployment_id: str) -> Response:
        if self.double.store.get(deployment_id) is None:
            return Response(204)

        def delete(_: Operation) -> None:
            self.double.store.delete(deployment_id)
            self.runs.pop(deployment_id.lower(), None)

        operation = self.double.operations.start(
            self.double.subscription_id, NAMESPACE, "global", request.query["api-version"], delete
        )
        response = self.double.operations.accepted(operation)
        del response.headers["Azure-AsyncOperation"]  # deployment delete polls Location
        return response

    def create(self, request: Request, deployment_id: str, name: str) -> Response:
        body, values, problem = self._prepare(request, name)
        if problem:
            return problem
        existing = self.double.store.get(deployment_id)
        if existing and existing["properties"]["provisioningState"] in ("Accepted", "Running"):
            return arm_error(
                409,
                "DeploymentActive",
                f"The deployment '{name}' is still running; wait for it to finish.",
            )
        deployment = self._deployment_body(deployment_id, body, values, "Accepted")
        self.double.store.put(deployment_id, deployment)
        run = Run(deployment_id)
        self.runs[deployment_id.lower()] = run
        scope = self._scope(request, name)

        def work(_: Operation) -> None:
            self._run(deployment_id, body, values, run, scope)

        operation = self.double.operations.start(
            self.double.subscription_id, NAMESPACE, "global", request.query["api-version"], work
        )
        return self.double.operations.accepted(operation, 200 if existing else 201, deployment)

    # ---- running ---------------------------------------------------------------------------

    def _finish(
        self,
        deployment_id: str,
        run: Run,
        state: str,
        outputs: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        deployment = self.double.store.get(deployment_id)
        if deployment is None:
            return
        properties = deployment["properties"]
        properties["provisioningState"] = state
        properties["timestamp"] = now_iso()
        if outputs is not None:
            properties["outputs"] = outputs
        properties["outputResources"] = [
            {"id": op["properties"]["targetResource"]["id"]}
            for op in run.operations
            if op["properties"]["provisioningState"] == "Succeeded"
        ]
        if error is not None:
            properties["error"] = error
        self.double.store.put(deployment_id, deployment)

    def _fail(self, deployment_id: str, run: Run, error: dict[str, Any]) -> None:
        self._finish(deployment_id, run, "Failed", error=error)
        raise OperationFailed(error)

    def _run(
        self,
        deployment_id: str,
        body: dict[str, Any],
        values: dict[str, Any],
        run: Run,
        scope: dict[str, Any],
    ) -> None:
        self._finish(deployment_id, run, "Running")
        injected = self.double.config.deployment_failure
        if injected is not None:
            self._fail(deployment_id, run, _deployment_failed(deployment_id, [injected]))
        module_outputs: dict[str, Any] = {}
        parent, _, name = deployment_id.rpartition("/")
        for module in self._plan(body, values, deployment_id):
            started = time.monotonic()
            nested_id = f"{parent}/{module.deployment_name(name)}"
            error, outputs = self._run_module(nested_id, module, body)
            run.record(nested_id, DEPLOYMENT_TYPE, 400 if error else 200, error, started)
            if error:
                self._fail(deployment_id, run, _deployment_failed(deployment_id, [error]))
            if module.symbol:
                module_outputs[module.symbol] = {"outputs": outputs}
        outputs = {}
        for key, declaration in (body["properties"]["template"].get("outputs") or {}).items():
            try:
                value = evaluate(declaration["value"], {**scope, **values, **module_outputs})
            except (ExpressionError, KeyError, TypeError) as problem:
                self._fail(deployment_id, run, _invalid_template(f"output {key}: {problem}"))
            kind = str(declaration.get("type", "string"))
            outputs[key] = {"type": kind[:1].upper() + kind[1:], "value": value}
        self._finish(deployment_id, run, "Succeeded", outputs=outputs)

    def _run_module(
        self, nested_id: str, module: Module, parent_body: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """Run a module as its nested deployment: (its error, its outputs)."""
        nested_body = {
            "properties": {
                "template": {},
                "mode": parent_body["properties"].get("mode", "Incremental"),
            }
        }
        self.double.store.put(
            nested_id, self._deployment_body(nested_id, nested_body, {}, "Running")
        )
        run = Run(nested_id)
        self.runs[nested_id.lower()] = run
        last: dict[str, Any] = {}
        for step in module.steps:
            started = time.monotonic()
            response = step.execute(self.double)
            failed = response.status >= 400
            detail = None
            if failed:
                detail = (response.json() or {}).get("error") or {
                    "code": str(response.status),
                    "message": response.body.decode(errors="replace"),
                }
            run.record(step.resource_id, step.resource_type, response.status, detail, started)
            if detail is not None:
                error = _deployment_failed(nested_id, [detail])
                self._finish(nested_id, run, "Failed", error=error)
                return error, {}
            last = response.json() or {}
        outputs = module.outputs(last)
        self._finish(
            nested_id,
            run,
            "Succeeded",
            outputs={k: {"type": "String", "value": v} for k, v in outputs.items()},
        )
        return None, outputs


def _masked(value: Any, secure: set[str]) -> Any:
    """value with every secure parameter's value blanked out, so what-if never shows a secret."""
    if isinstance(value, dict):
        return {key: _masked(item, secure) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item, secure) for item in value]
    return "*****" if json.dumps(value) in secure else value


def _not_found(name: str) -> Response:
    return arm_error(404, "DeploymentNotFound", f"Deployment '{name}' could not be found.")

"""OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}` for every failure.

Services raise `APIError` subclasses; the handlers registered by `install_error_handlers` turn
them (and FastAPI's validation errors, unknown routes and anything unexpected) into responses.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class APIError(Exception):
    status_code = 500
    error_type = "server_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.error_type, self.param, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status_code, headers=self.headers)


class BadRequestError(APIError):
    status_code = 400
    error_type = "invalid_request_error"


class UnsupportedParameterError(BadRequestError):
    code = "unsupported_parameter"

    def __init__(self, field: str) -> None:
        super().__init__(
            f"'{field}' is not supported by this server; remove it from the request", param=field
        )


class AuthenticationError(APIError):
    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class NotFoundError(APIError):
    status_code = 404
    error_type = "invalid_request_error"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"

    def __init__(self, model: str, available: Sequence[str]) -> None:
        super().__init__(
            f"The model '{model}' does not exist; available: {', '.join(available)}",
            param="model",
        )


class OverloadedError(APIError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "queue_full"

    def __init__(self, retry_after: float) -> None:
        seconds = max(1, round(retry_after))
        super().__init__(
            f"The server is busy (request queue full); retry after {seconds}s",
            headers={"Retry-After": str(seconds)},
        )


class RequestTooLargeError(APIError):
    status_code = 413
    error_type = "invalid_request_error"
    code = "request_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"The request body is larger than this server's limit of {limit} bytes "
            "(ACA_INFER_MAX_REQUEST_BYTES); send a smaller request"
        )


class ClientClosedRequestError(APIError):
    """The client went away before its (non-streaming) answer was ready. Nobody reads this
    answer: its status, nginx's 499 "client closed request", is what the access log and the
    request counter record."""

    status_code = 499
    error_type = "invalid_request_error"
    code = "client_disconnected"

    def __init__(self) -> None:
        super().__init__("The client disconnected before the answer was ready")


class EngineUnavailableError(APIError):
    status_code = 503
    error_type = "server_error"
    code = "model_not_ready"


class EngineFailureError(APIError):
    status_code = 500
    error_type = "server_error"
    code = "engine_error"


def error_body(
    message: str, error_type: str, param: str | None = None, code: str | int | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def param_from_loc(loc: Sequence[str | int]) -> str | None:
    """("body", "messages", 0, "content") → "messages[0].content"."""
    parts = list(loc)
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith(("function-", "tagged-union")) or part in {"str", "list[str]"}:
            continue  # pydantic's names for union branches are noise to a client
        else:
            text += f".{part}" if text else part
    return text or None


def most_telling(errors: Sequence[Any]) -> dict[str, Any]:
    """The validation error to report. A union field (`stop`: a string or a list) fails once
    per branch; the branch whose type matched says what is actually wrong ("at most 4 items"),
    where the others only say "Input should be a valid string"."""
    if not errors:
        return {"loc": (), "msg": "invalid request"}
    type_mismatch = ("_type", "_parsing")
    telling = [e for e in errors if not str(e.get("type", "")).endswith(type_mismatch)]
    return dict((telling or errors)[0])


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = most_telling(exc.errors())
        param = param_from_loc(first.get("loc", ()))
        message = str(first.get("msg", "invalid request"))
        if first.get("type") == "extra_forbidden":
            message = "Unrecognized request argument supplied"
        elif first.get("type") == "too_long" and "max_length" in first.get("ctx", {}):
            ctx = first["ctx"]
            message = (
                f"{ctx.get('actual_length', 'too many')} items given; "
                f"at most {ctx['max_length']} are allowed"
            )
        elif first.get("type") == "json_invalid":
            message = "The request body is not valid JSON"
            param = None
        text = f"{message}: '{param}'" if param else message
        return BadRequestError(text, param=param, code="invalid_value").response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        error_type = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return JSONResponse(
            error_body(str(exc.detail), error_type, None, exc.status_code),
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(
            error_body("Internal server error", "server_error", None, "internal_error"),
            status_code=500,
        )

"""How the double's Files plane refuses a request: the service's status, code and message (XML
`<Error>` with `x-ms-error-code`), raised as `Refused` from inside an operation and answered by
the listener's handler."""

from __future__ import annotations

from tests.azure_double.files_xml import files_error
from tests.azure_double.http import Response


class Refused(Exception):
    """An operation stops with the service's error response."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.headers.get("x-ms-error-code", ""))
        self.response = response


def refuse(status: int, code: str, message: str, **details: str) -> Refused:
    return Refused(files_error(status, code, message, details=details or None))


def bad_header(name: str, value: str, message: str | None = None) -> Refused:
    return refuse(
        400,
        "InvalidHeaderValue",
        message or "The value for one of the HTTP headers is not in the correct format.",
        HeaderName=name,
        HeaderValue=value,
    )


def missing_header(name: str) -> Refused:
    return refuse(
        400,
        "MissingRequiredHeader",
        "An HTTP header that's mandatory for this request is not specified.",
        HeaderName=name,
    )


def invalid_range(size: int) -> Refused:
    return Refused(
        files_error(
            416,
            "InvalidRange",
            "The range specified is invalid for the current size of the resource.",
            headers={"Content-Range": f"bytes */{size}"},
        )
    )


def invalid_marker() -> Refused:
    return refuse(400, "InvalidContinuationToken", "The specified continuation token is invalid.")


def invalid_name() -> Refused:
    return refuse(
        400, "InvalidResourceName", "The specified resource name contains invalid characters."
    )


def already_exists() -> Refused:
    return refuse(409, "ResourceAlreadyExists", "The specified resource already exists.")


def share_not_found() -> Refused:
    return refuse(404, "ShareNotFound", "The specified share does not exist.")


def not_found() -> Refused:
    return refuse(404, "ResourceNotFound", "The specified resource does not exist.")


def parent_not_found() -> Refused:
    return refuse(404, "ParentNotFound", "The specified parent path does not exist.")

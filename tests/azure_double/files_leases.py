"""File leases as the service keeps them: infinite only (a duration other than -1 is refused,
and there is no renew), broken at once by a break.

A write or delete of a leased file answers 412 `LeaseIdMissing` without the lease id and 412
`LeaseIdMismatchWithFileOperation` with another one; naming a lease when none is held answers
412 `LeaseNotPresentWithFileOperation`. Lease operations answer 409 `LeaseAlreadyPresent`,
`LeaseIdMismatchWithLeaseOperation` or `LeaseNotPresentWithLeaseOperation`.
"""

from __future__ import annotations

import re
import uuid

from tests.azure_double.files_errors import Refused, bad_header, missing_header, refuse
from tests.azure_double.files_store import ItemRecord, Lease
from tests.azure_double.files_xml import http_date
from tests.azure_double.http import Request, Response

GUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I)


def _no_lease() -> Refused:
    return refuse(
        409, "LeaseNotPresentWithLeaseOperation", "There is currently no lease on the file."
    )


def _mismatch() -> Refused:
    return refuse(
        409,
        "LeaseIdMismatchWithLeaseOperation",
        "The lease ID specified did not match the lease ID for the file.",
    )


def guard_lease(record: ItemRecord, given: str | None) -> None:
    """A write or delete, or a read that names a lease, against the file's lease."""
    if record.lease_active and record.lease is not None:
        if given is None:
            raise refuse(
                412,
                "LeaseIdMissing",
                "There is currently a lease on the file and no lease ID was specified in the "
                "request.",
            )
        if given.lower() != record.lease.lease_id:
            raise refuse(
                412,
                "LeaseIdMismatchWithFileOperation",
                "The lease ID specified did not match the lease ID for the file.",
            )
    elif given is not None:
        raise refuse(
            412, "LeaseNotPresentWithFileOperation", "There is currently no lease on the file."
        )


def lease_operation(request: Request, record: ItemRecord) -> Response:
    """PUT ?comp=lease: acquire, change, release or break (x-ms-lease-action)."""
    action = request.headers.get("x-ms-lease-action", "").lower()
    given = request.headers.get("x-ms-lease-id")
    proposed = request.headers.get("x-ms-proposed-lease-id")
    for name, value in (("x-ms-lease-id", given), ("x-ms-proposed-lease-id", proposed)):
        if value is not None and not GUID.match(value):
            raise bad_header(name, value)
    headers = {"ETag": record.etag, "Last-Modified": http_date(record.last_modified)}
    if action == "acquire":
        duration = request.headers.get("x-ms-lease-duration", "-1")
        if duration != "-1":
            raise bad_header(
                "x-ms-lease-duration", duration, "File leases are infinite: the duration is -1."
            )
        held = record.lease if record.lease_active else None
        if held is not None and (proposed is None or proposed.lower() != held.lease_id):
            raise refuse(409, "LeaseAlreadyPresent", "There is already a lease present.")
        new_id = (proposed or str(uuid.uuid4())).lower()
        record.lease = Lease(new_id)
        return Response(201, headers={**headers, "x-ms-lease-id": new_id})
    if action == "break":
        if record.lease is None:
            raise _no_lease()
        record.lease.broken = True
        return Response(202, headers={**headers, "x-ms-lease-time": "0"})
    if action not in {"release", "change"}:
        raise bad_header("x-ms-lease-action", action)
    if given is None:
        raise missing_header("x-ms-lease-id")
    current = record.lease
    if current is None or (action == "change" and current.broken):
        raise _no_lease()
    if action == "release":
        if given.lower() != current.lease_id:
            raise _mismatch()
        record.lease = None
        return Response(200, headers=headers)
    if proposed is None:
        raise missing_header("x-ms-proposed-lease-id")
    if current.lease_id not in {given.lower(), proposed.lower()}:
        raise _mismatch()
    current.lease_id = proposed.lower()
    return Response(200, headers={**headers, "x-ms-lease-id": current.lease_id})

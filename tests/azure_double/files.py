"""The Azure Files data plane of the double: shares, directories, files, ranges, leases, rename.

`install(double)` returns the handler of the files listener, which serves path-style URLs
(`https://127.0.0.1:<files_port>/<account>/<share>/<path>`, the form the SDK uses for an IP
host). File bodies are real files under `double.share_root(account, share)`, so a replica that
mounts the share reads what a client uploaded; properties, metadata and leases are kept by
`FilesState`.

Requests are authenticated by `files_auth`, refused in the service's XML shape by
`files_errors`, and leases follow `files_leases`. What the double does not implement (share
leases, snapshots, copies, handles, service properties) answers 501 NotImplemented, which the
SDK does not retry.

Faults for tests: `hold_lease` (a lease held by another client), `drop_uploads` (a connection
dropped mid-upload) and `corrupt_uploads` (a range's bytes changed in flight); the core's
generic faults (429, 503 with Retry-After ...) reach this listener too. Every request lands in
the double's request log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import shutil
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

from tests.azure_double.auth import check_bearer
from tests.azure_double.faults import Fault, Faults
from tests.azure_double.files_auth import authenticate
from tests.azure_double.files_errors import (
    Refused,
    already_exists,
    bad_header,
    invalid_marker,
    invalid_name,
    invalid_range,
    missing_header,
    not_found,
    parent_not_found,
    refuse,
    share_not_found,
)
from tests.azure_double.files_leases import guard_lease, lease_operation
from tests.azure_double.files_store import (
    MAX_PATH_LENGTH,
    PERMISSION_KEY,
    FilesState,
    ItemRecord,
    Lease,
    Located,
    ShareRecord,
    WrittenRanges,
    invalid_segment,
    locate,
    record_key,
)
from tests.azure_double.files_xml import (
    XML_CONTENT_TYPE,
    DirectoryEntry,
    ListingOptions,
    ShareEntry,
    directory_list,
    files_error,
    http_date,
    iso_time,
    range_list,
    share_list,
)
from tests.azure_double.http import Request, Response

# The x-ms-version values the double serves: those of the service that include file leases and
# rename, up to the one azure-storage-file-share 12.27 sends by default.
SUPPORTED_VERSIONS = frozenset(
    {
        "2019-02-02", "2019-07-07", "2019-10-10", "2019-12-12", "2020-02-10", "2020-04-08",
        "2020-06-12", "2020-08-04", "2020-10-02", "2020-12-06", "2021-02-12", "2021-04-10",
        "2021-06-08", "2021-08-06", "2021-12-02", "2022-11-02", "2023-01-03", "2023-05-03",
        "2023-08-03", "2023-11-03", "2024-05-04", "2024-08-04", "2024-11-04", "2025-01-05",
        "2025-05-05", "2025-07-05", "2025-11-05", "2026-02-06", "2026-04-06", "2026-06-06",
        "2026-10-06",
    }
)  # fmt: skip
MAX_RANGE_BYTES = 4 * 1024 * 1024
MAX_LIST_RESULTS = 5000
SHARE_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
# Request headers that carry a file's content settings, and the response headers they become.
CONTENT_SETTINGS = {
    "x-ms-content-type": "Content-Type",
    "x-ms-content-encoding": "Content-Encoding",
    "x-ms-content-language": "Content-Language",
    "x-ms-cache-control": "Cache-Control",
    "x-ms-content-disposition": "Content-Disposition",
    "x-ms-content-md5": "Content-MD5",
}
SERVER = "Windows-Azure-File/1.0 Microsoft-HTTPAPI/2.0"


class DoubleForFiles(Protocol):
    """What the files plane needs from the double (see DOUBLE_CONTRACT.md)."""

    signing_key: str
    tenant_id: str

    def share_root(self, account: str, share: str) -> Path: ...

    def storage_account_keys(self, account: str) -> list[str]: ...


@dataclass(frozen=True)
class Target:
    """The resource a request names: an account, maybe a share, maybe a path in it."""

    account: str
    share: str
    segments: list[str]
    root: Path

    @property
    def path_name(self) -> str:
        return "/".join(self.segments)


def _metadata(request: Request) -> dict[str, str]:
    return {
        name[len("x-ms-meta-") :]: value
        for name, value in request.headers.items()
        if name.startswith("x-ms-meta-")
    }


def _meta_headers(metadata: dict[str, str]) -> dict[str, str]:
    return {f"x-ms-meta-{name}": value for name, value in metadata.items()}


def _int_header(request: Request, name: str, default: int | None = None) -> int:
    raw = request.headers.get(name)
    if raw is None:
        if default is None:
            raise missing_header(name)
        return default
    try:
        return int(raw)
    except ValueError:
        raise bad_header(name, raw) from None


def _file_id(path: Path) -> str:
    try:
        return str(path.stat().st_ino)
    except OSError:
        return "0"


def _smb_time(headers: dict[str, str], name: str, current: datetime, now: datetime) -> datetime:
    """x-ms-file-*-time: "now", "preserve" or an ISO 8601 time."""
    raw = headers.get(name)
    if raw is None or raw.lower() == "preserve":
        return current
    if raw.lower() == "now":
        return now
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")[:26] + "+00:00")
    except ValueError:
        raise bad_header(name, raw) from None


class FileService:
    def __init__(self, double: DoubleForFiles, bearer_valid: Callable[[Request], bool]) -> None:
        self._double = double
        self._bearer_valid = bearer_valid
        self.state = FilesState()
        self.corruptions = Faults()  # Put Ranges whose body changes in flight (corrupt_uploads)

    # ----- entry point -------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        try:
            response = self._dispatch(request)
        except Refused as refused:
            response = refused.response
        return self._finish(request, response)

    def _finish(self, request: Request, response: Response) -> Response:
        headers = response.headers
        headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
        headers["x-ms-version"] = request.headers.get("x-ms-version", max(SUPPORTED_VERSIONS))
        headers["Date"] = http_date(datetime.now(UTC))
        headers["Server"] = SERVER
        client_request_id = request.headers.get("x-ms-client-request-id")
        if client_request_id:
            headers["x-ms-client-request-id"] = client_request_id
        return response

    def _dispatch(self, request: Request) -> Response:
        target = self._target(request)
        problem = authenticate(
            request,
            target.account,
            self._double.storage_account_keys(target.account),
            self._bearer_valid,
        )
        if problem is not None:
            return problem
        self._check_version(request)
        if request.headers.get("x-ms-structured-body"):
            raise bad_header(
                "x-ms-structured-body",
                request.headers["x-ms-structured-body"],
                "The double does not implement structured-message (CRC64) bodies; "
                "use validate_content=True (MD5) or none.",
            )
        if request.query.get("sharesnapshot"):
            return self._unsupported(request, "share snapshots")
        restype = request.query.get("restype", "").lower()
        comp = request.query.get("comp", "").lower()
        with self.state.lock:
            if not target.share:
                return self._service(request, target, restype, comp)
            if restype == "share":
                return self._share(request, target, comp)
            self._existing_share_record(target)
            if restype == "directory":
                return self._directory(request, target, comp)
            if not target.segments:
                raise refuse(400, "InvalidUri", "The requested URI does not represent a file.")
            return self._file(request, target, comp)

    def _target(self, request: Request) -> Target:
        parts = request.path.split("/")[1:]
        account = parts[0] if parts else ""
        if not account:
            raise refuse(400, "InvalidUri", "The requested URI does not name a storage account.")
        try:
            self._double.storage_account_keys(account)
        except KeyError:
            raise refuse(
                404, "ResourceNotFound", f"The storage account '{account}' does not exist."
            ) from None
        share = parts[1] if len(parts) > 1 else ""
        if share and not SHARE_NAME.match(share):
            raise invalid_name()  # also keeps ".." and the like out of the state folder
        rest = parts[2:]
        if rest and rest[-1] == "":
            rest = rest[:-1]
        keep_dots = request.headers.get("x-ms-allow-trailing-dot", "").lower() == "true"
        segments = rest if keep_dots else [s.rstrip(".") for s in rest]
        if len(request.path) > MAX_PATH_LENGTH or any(invalid_segment(s) for s in segments):
            raise invalid_name()
        root = self._double.share_root(account, share) if share else Path()
        return Target(account, share, segments, root)

    def _check_version(self, request: Request) -> None:
        version = request.headers.get("x-ms-version")
        if version is None:
            raise missing_header("x-ms-version")
        if version not in SUPPORTED_VERSIONS:
            raise bad_header("x-ms-version", version)

    def _unsupported(self, request: Request, what: str) -> Response:
        return files_error(
            501,
            "NotImplemented",
            f"The Azure double does not implement {request.method} on {what}.",
        )

    # ----- account -----------------------------------------------------------------------
    def _service(self, request: Request, target: Target, restype: str, comp: str) -> Response:
        if request.method == "GET" and comp == "list":
            return self._list_shares(request, target)
        return self._unsupported(request, f"the account with restype={restype} comp={comp}")

    def _list_shares(self, request: Request, target: Target) -> Response:
        # Every share of the account is a folder beside any share's folder.
        account_folder = self._double.share_root(target.account, "any").parent
        folders = account_folder.iterdir() if account_folder.is_dir() else iter(())
        names = sorted(p.name for p in folders if p.is_dir() and SHARE_NAME.match(p.name))
        prefix = request.query.get("prefix")
        if prefix:
            names = [n for n in names if n.startswith(prefix)]
        page, next_marker, max_results = self._page(request, names, key=lambda n: n)
        include = {p.strip().lower() for p in request.query.get("include", "").split(",")}
        shares = []
        for name in page:
            record = self.state.share(
                target.account, name, self._double.share_root(target.account, name)
            )
            shares.append(
                ShareEntry(
                    name, record.last_modified, record.etag, record.quota_gib, record.metadata
                )
            )
        body = share_list(
            self._endpoint(request, target),
            shares,
            prefix=prefix,
            marker=request.query.get("marker"),
            max_results=max_results,
            next_marker=next_marker,
            include_metadata="metadata" in include,
        )
        return Response(200, body, {"Content-Type": XML_CONTENT_TYPE})

    def _endpoint(self, request: Request, target: Target) -> str:
        return f"https://{request.headers.get('host', '127.0.0.1')}/{target.account}/"

    def _page(
        self, request: Request, names: list[str], key: Callable[[str], str]
    ) -> tuple[list[str], str, int | None]:
        """One page of `names` (sorted by `key`) from the marker: the page, the next marker
        (empty at the end) and the maxresults asked for."""
        raw_max = request.query.get("maxresults")
        max_results: int | None = None
        if raw_max is not None:
            if not raw_max.isdigit() or not 1 <= int(raw_max) <= MAX_LIST_RESULTS:
                raise refuse(
                    400,
                    "OutOfRangeQueryParameterValue",
                    "One of the query parameters specified in the request URI is outside the "
                    "permissible range.",
                    QueryParameterName="maxresults",
                    QueryParameterValue=raw_max,
                )
            max_results = int(raw_max)
        marker = request.query.get("marker")
        if marker:
            try:
                start = base64.urlsafe_b64decode(marker.encode()).decode()
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise invalid_marker() from None
            names = [n for n in names if key(n) >= start]
        limit = max_results or MAX_LIST_RESULTS
        page, rest = names[:limit], names[limit:]
        next_marker = base64.urlsafe_b64encode(key(rest[0]).encode()).decode() if rest else ""
        return page, next_marker, max_results

    # ----- shares ------------------------------------------------------------------------
    def _existing_share_record(self, target: Target) -> ShareRecord:
        if not target.root.is_dir():
            raise share_not_found()
        return self.state.share(target.account, target.share, target.root)

    def _share_headers(self, record: ShareRecord) -> dict[str, str]:
        return {"ETag": record.etag, "Last-Modified": http_date(record.last_modified)}

    def _share(self, request: Request, target: Target, comp: str) -> Response:
        if target.segments:
            raise refuse(400, "InvalidUri", "A share request names no path inside the share.")
        if request.method == "PUT" and not comp:
            if target.root.is_dir():
                raise refuse(409, "ShareAlreadyExists", "The specified share already exists.")
            target.root.mkdir(parents=True)
            record = self.state.new_share(target.account, target.share)
            record.metadata = _metadata(request)
            record.quota_gib = _int_header(request, "x-ms-share-quota", record.quota_gib)
            return Response(201, headers=self._share_headers(record))
        record = self._existing_share_record(target)
        if request.method in {"GET", "HEAD"} and not comp:
            return Response(
                200,
                headers={
                    **self._share_headers(record),
                    **_meta_headers(record.metadata),
                    "x-ms-share-quota": str(record.quota_gib),
                    "x-ms-access-tier": "TransactionOptimized",
                    "x-ms-enabled-protocols": "SMB",
                    "x-ms-lease-state": "available",
                    "x-ms-lease-status": "unlocked",
                },
            )
        if request.method == "DELETE" and not comp:
            shutil.rmtree(target.root)
            self.state.forget_share(target.account, target.share)
            return Response(202)
        if request.method == "PUT" and comp in {"metadata", "properties"}:
            if comp == "metadata":
                record.metadata = _metadata(request)
            else:
                record.quota_gib = _int_header(request, "x-ms-share-quota", record.quota_gib)
            record.etag = self.state.clock.next()
            record.last_modified = datetime.now(UTC)
            return Response(200, headers=self._share_headers(record))
        return self._unsupported(request, f"a share with comp={comp or '(none)'}")

    # ----- files and directories: shared pieces ----------------------------------------------
    def _locate(self, target: Target) -> Located:
        return locate(target.root, target.segments)

    def _record(self, target: Target, path: Path, segments: list[str] | None = None) -> ItemRecord:
        return self.state.item(target.account, target.share, segments or target.segments, path)

    def _smb_headers(self, record: ItemRecord, path: Path, is_dir: bool) -> dict[str, str]:
        return {
            "ETag": record.etag,
            "Last-Modified": http_date(record.last_modified),
            "x-ms-request-server-encrypted": "true",
            "x-ms-server-encrypted": "true",
            "x-ms-file-permission-key": PERMISSION_KEY,
            "x-ms-file-attributes": "Directory" if is_dir else "Archive",
            "x-ms-file-creation-time": iso_time(record.created),
            "x-ms-file-last-write-time": iso_time(record.last_write),
            "x-ms-file-change-time": iso_time(record.changed),
            "x-ms-file-id": _file_id(path),
            "x-ms-file-parent-id": _file_id(path.parent),
        }

    def _apply_smb_times(self, request: Request, record: ItemRecord) -> None:
        now = datetime.now(UTC)
        headers = request.headers
        record.created = _smb_time(headers, "x-ms-file-creation-time", record.created, now)
        record.last_write = _smb_time(headers, "x-ms-file-last-write-time", record.last_write, now)
        record.changed = _smb_time(headers, "x-ms-file-change-time", now, now)

    # ----- directories -------------------------------------------------------------------
    def _directory(self, request: Request, target: Target, comp: str) -> Response:
        located = self._locate(target)
        if request.method == "PUT" and not comp:
            return self._create_directory(request, target, located)
        if request.method == "PUT" and comp == "rename":
            return self._rename(request, target, located, directory=True)
        if located.parent is None:
            raise parent_not_found()
        if not located.is_dir or located.path is None:
            raise not_found()
        path = located.path
        if request.method == "GET" and comp == "list":
            return self._list_directory(request, target, path)
        record = self._record(target, path)
        if request.method in {"GET", "HEAD"} and not comp:
            headers = {**self._smb_headers(record, path, True), **_meta_headers(record.metadata)}
            return Response(200, headers=headers)
        if request.method == "DELETE" and not comp:
            if not target.segments:
                raise refuse(400, "InvalidUri", "The root directory of a share cannot be deleted.")
            if any(path.iterdir()):
                raise refuse(409, "DirectoryNotEmpty", "The specified directory is not empty.")
            path.rmdir()
            self.state.forget_item(target.account, target.share, target.segments)
            return Response(202)
        if request.method == "PUT" and comp in {"metadata", "properties"}:
            if comp == "metadata":
                record.metadata = _metadata(request)
            else:
                self._apply_smb_times(request, record)
            record.touch(self.state.clock, path, write_time=False)
            return Response(200, headers=self._smb_headers(record, path, True))
        return self._unsupported(request, f"a directory with comp={comp or '(none)'}")

    def _create_directory(self, request: Request, target: Target, located: Located) -> Response:
        if located.parent is None or located.path is None:
            raise parent_not_found()
        if located.exists:
            raise already_exists()
        located.path.mkdir()
        record = self.state.new_item(target.account, target.share, target.segments, located.path)
        record.metadata = _metadata(request)
        self._apply_smb_times(request, record)
        return Response(201, headers=self._smb_headers(record, located.path, True))

    def _list_directory(self, request: Request, target: Target, folder: Path) -> Response:
        try:
            options = ListingOptions.parse(
                request.query.get("include", ""),
                request.headers.get("x-ms-file-extended-info", "").lower() == "true",
            )
        except ValueError as error:
            raise refuse(
                400,
                "InvalidQueryParameterValue",
                "Value for one of the query parameters specified in the request URI is invalid.",
                QueryParameterName="include",
                QueryParameterValue=str(error),
            ) from None
        prefix = request.query.get("prefix", "")
        children = {p.name: p for p in folder.iterdir()}
        names = sorted(
            (n for n in children if n.casefold().startswith(prefix.casefold())),
            key=lambda n: (n.casefold(), n),
        )
        page, next_marker, max_results = self._page(request, names, key=str.casefold)
        entries = []
        for name in page:
            path = children[name]
            record = self._record(target, path, [*target.segments, name])
            is_dir = path.is_dir()
            entries.append(
                DirectoryEntry(
                    name=name,
                    is_directory=is_dir,
                    size=0 if is_dir else path.stat().st_size,
                    file_id=_file_id(path),
                    created=record.created,
                    last_access=record.last_write,
                    last_write=record.last_write,
                    changed=record.changed,
                    last_modified=record.last_modified,
                    etag=record.etag,
                    attributes="Directory" if is_dir else "Archive",
                    permission_key=PERMISSION_KEY,
                )
            )
        body = directory_list(
            self._endpoint(request, target),
            target.share,
            target.path_name,
            _file_id(folder),
            entries,
            prefix=prefix,
            marker=request.query.get("marker"),
            max_results=max_results,
            next_marker=next_marker,
            options=options,
        )
        return Response(200, body, {"Content-Type": XML_CONTENT_TYPE})

    # ----- files -------------------------------------------------------------------------
    def _file(self, request: Request, target: Target, comp: str) -> Response:
        located = self._locate(target)
        if request.method == "PUT" and not comp:
            return self._create_file(request, target, located)
        if request.method == "PUT" and comp == "rename":
            return self._rename(request, target, located, directory=False)
        if located.parent is None:
            raise parent_not_found()
        if not located.is_file or located.path is None:
            raise not_found()
        path = located.path
        record = self._record(target, path)
        lease_id = request.headers.get("x-ms-lease-id")
        if request.method in {"GET", "HEAD"} and not comp:
            if lease_id is not None:
                guard_lease(record, lease_id)
            if request.method == "HEAD":
                return Response(200, headers=self._file_headers(record, path))
            return self._download(request, record, path)
        if request.method == "PUT" and comp == "lease":
            return lease_operation(request, record)
        if request.method == "GET" and comp == "rangelist":
            if lease_id is not None:
                guard_lease(record, lease_id)
            return self._range_list(request, record, path)
        if request.method == "DELETE" and not comp:
            guard_lease(record, lease_id)
            path.unlink()
            self.state.forget_item(target.account, target.share, target.segments)
            return Response(202)
        if request.method == "PUT" and comp == "range":
            guard_lease(record, lease_id)
            return self._put_range(request, record, path)
        if request.method == "PUT" and comp in {"metadata", "properties"}:
            guard_lease(record, lease_id)
            if comp == "metadata":
                record.metadata = _metadata(request)
                record.touch(self.state.clock, path, write_time=False)
            else:
                self._set_properties(request, record, path)
            return Response(200, headers=self._smb_headers(record, path, False))
        return self._unsupported(request, f"a file with comp={comp or '(none)'}")

    def _file_headers(self, record: ItemRecord, path: Path) -> dict[str, str]:
        headers = {
            **self._smb_headers(record, path, False),
            **_meta_headers(record.metadata),
            "x-ms-type": "File",
            "Content-Length": str(path.stat().st_size),
            "Content-Type": "application/octet-stream",
            **record.content,
        }
        if record.lease is None:
            headers["x-ms-lease-state"] = "available"
        else:
            headers["x-ms-lease-state"] = "broken" if record.lease.broken else "leased"
        headers["x-ms-lease-status"] = "locked" if record.lease_active else "unlocked"
        if record.lease_active:
            headers["x-ms-lease-duration"] = "infinite"
        return headers

    def _create_file(self, request: Request, target: Target, located: Located) -> Response:
        if request.headers.get("x-ms-type", "").lower() != "file":
            raise bad_header("x-ms-type", request.headers.get("x-ms-type", ""))
        size = _int_header(request, "x-ms-content-length")
        if size < 0:
            raise bad_header("x-ms-content-length", str(size))
        if located.parent is None or located.path is None:
            raise parent_not_found()
        if located.is_dir:
            raise refuse(
                409,
                "ResourceTypeMismatch",
                "The specified resource type does not match the type of the existing resource.",
            )
        body = request.body
        if len(body) > size:
            raise bad_header("Content-Length", str(len(body)))
        self._check_md5(request, body)
        previous = self._record(target, located.path) if located.exists else None
        if previous is not None:
            guard_lease(previous, request.headers.get("x-ms-lease-id"))
        with open(located.path, "wb") as handle:
            handle.write(body)
            handle.truncate(size)
        record = self.state.new_item(target.account, target.share, target.segments, located.path)
        if previous is not None:
            record.lease, record.created = previous.lease, previous.created
        record.metadata = _metadata(request)
        record.content = {
            header: request.headers[name]
            for name, header in CONTENT_SETTINGS.items()
            if request.headers.get(name)
        }
        record.written = WrittenRanges.whole(len(body))
        record.touch(self.state.clock, located.path)
        self._apply_smb_times(request, record)  # a last write time sent is kept, as created
        return Response(201, headers=self._smb_headers(record, located.path, False))

    def _set_properties(self, request: Request, record: ItemRecord, path: Path) -> None:
        # Set File Properties replaces every content setting: one not sent is cleared.
        record.content = {
            header: request.headers[name]
            for name, header in CONTENT_SETTINGS.items()
            if request.headers.get(name)
        }
        if "x-ms-content-length" in request.headers:
            size = _int_header(request, "x-ms-content-length")
            if size < 0:
                raise bad_header("x-ms-content-length", str(size))
            os.truncate(path, size)
            record.written.truncate(size)
        self._apply_smb_times(request, record)
        record.touch(self.state.clock, path, write_time="x-ms-content-length" in request.headers)

    @staticmethod
    def _check_md5(request: Request, body: bytes) -> None:
        sent = request.headers.get("content-md5")
        if sent is None:
            return
        actual = base64.b64encode(hashlib.md5(body).digest()).decode()
        if sent != actual:
            raise refuse(
                400,
                "Md5Mismatch",
                "The MD5 value specified in the request did not match with the MD5 value "
                "calculated by the server.",
                UserSpecifiedMd5=sent,
                ServerCalculatedMd5=actual,
            )

    @staticmethod
    def _range(request: Request) -> tuple[int, int | None] | None:
        raw = request.headers.get("x-ms-range") or request.headers.get("range")
        if raw is None:
            return None
        match = RANGE.match(raw.strip())
        if match is None:
            raise bad_header("x-ms-range", raw)
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else None
        if end is not None and end < start:
            raise bad_header("x-ms-range", raw)
        return start, end

    def _put_range(self, request: Request, record: ItemRecord, path: Path) -> Response:
        requested = self._range(request)
        if requested is None or requested[1] is None:
            raise missing_header("x-ms-range")
        start, end = requested[0], requested[1]
        length = end - start + 1
        write = request.headers.get("x-ms-write", "").lower()
        if write not in {"update", "clear"}:
            raise bad_header("x-ms-write", request.headers.get("x-ms-write", ""))
        if length > MAX_RANGE_BYTES:
            raise refuse(
                413,
                "RequestBodyTooLarge",
                "The request body is too large and exceeds the maximum permissible limit.",
                MaxLimit=str(MAX_RANGE_BYTES),
            )
        size = path.stat().st_size
        if end >= size:
            raise invalid_range(size)
        body = request.body
        if self.corruptions.take("files", "PUT", request.path, "comp=range") is not None:
            body = bytes([body[0] ^ 0xFF]) + body[1:] if body else body
        headers: dict[str, str] = {}
        if write == "update":
            if len(body) != length:
                raise bad_header("Content-Length", str(len(body)))
            self._check_md5(request, body)
            data = body
            headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
        else:
            if body:
                raise bad_header("Content-Length", str(len(body)))
            data = bytes(length)
        with open(path, "r+b") as handle:
            handle.seek(start)
            handle.write(data)
        if write == "update":
            record.written.add(start, end)
        else:
            record.written.remove(start, end)
        preserve = request.headers.get("x-ms-file-last-write-time", "").lower() == "preserve"
        record.touch(self.state.clock, path, write_time=not preserve)
        return Response(201, headers={**headers, **self._smb_headers(record, path, False)})

    def _download(self, request: Request, record: ItemRecord, path: Path) -> Response:
        size = path.stat().st_size
        headers = {**self._file_headers(record, path), "Accept-Ranges": "bytes"}
        whole_md5 = record.content.get("Content-MD5")
        requested = self._range(request)
        if requested is None:
            with open(path, "rb") as handle:
                body = handle.read()
            return Response(200, body, headers)
        start, end = requested
        if start >= size:
            raise invalid_range(size)
        last = min(size - 1, end if end is not None else size - 1)
        with open(path, "rb") as handle:
            handle.seek(start)
            body = handle.read(last - start + 1)
        headers.pop("Content-MD5", None)
        if whole_md5:
            headers["x-ms-content-md5"] = whole_md5
        if request.headers.get("x-ms-range-get-content-md5", "").lower() == "true":
            if len(body) > MAX_RANGE_BYTES:
                raise bad_header(
                    "x-ms-range-get-content-md5",
                    "true",
                    "The MD5 of a range is returned only for ranges of at most 4 MiB.",
                )
            headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
        headers["Content-Length"] = str(len(body))
        headers["Content-Range"] = f"bytes {start}-{last}/{size}"
        return Response(206, body, headers)

    def _range_list(self, request: Request, record: ItemRecord, path: Path) -> Response:
        if request.query.get("prevsharesnapshot"):
            return self._unsupported(request, "a file's range diff against a snapshot")
        size = path.stat().st_size
        requested = self._range(request)
        start, end = (0, size - 1) if requested is None else requested
        last = size - 1 if end is None else min(end, size - 1)
        ranges = record.written.within(start, last)
        # A page of ranges; the marker is the offset where the next page starts.
        marker = request.query.get("marker")
        if marker:
            if not marker.isdigit():
                raise invalid_marker()
            ranges = [(max(low, int(marker)), high) for low, high in ranges if high >= int(marker)]
        limit = request.query.get("maxresults", "")
        page = ranges[: int(limit)] if limit.isdigit() and int(limit) > 0 else ranges
        next_marker = str(ranges[len(page)][0]) if len(page) < len(ranges) else ""
        return Response(
            200,
            range_list(page, next_marker),
            {
                "Content-Type": XML_CONTENT_TYPE,
                "ETag": record.etag,
                "Last-Modified": http_date(record.last_modified),
                "x-ms-content-length": str(size),
            },
        )

    # ----- rename ------------------------------------------------------------------------
    def _rename_source(self, request: Request, target: Target) -> list[str]:
        raw = request.headers.get("x-ms-file-rename-source")
        if not raw:
            raise missing_header("x-ms-file-rename-source")
        parsed = urlparse(raw)
        parts = unquote(parsed.path).split("/")
        if parsed.scheme:  # a URL: /<account>/<share>/<path>
            if len(parts) < 4 or parts[1] != target.account or parts[2] != target.share:
                raise bad_header(
                    "x-ms-file-rename-source", raw, "The source must be in the same share."
                )
            parts = parts[3:]
        segments = [p for p in parts if p]
        if not segments or any(invalid_segment(s) for s in segments):
            raise bad_header("x-ms-file-rename-source", raw)
        return segments

    def _rename(
        self, request: Request, target: Target, destination: Located, *, directory: bool
    ) -> Response:
        source_segments = self._rename_source(request, target)
        source = locate(target.root, source_segments)
        kind_ok = source.is_dir if directory else source.is_file
        if not kind_ok or source.path is None:
            raise not_found()
        source_record = self._record(target, source.path, source_segments)
        if not directory:
            guard_lease(source_record, request.headers.get("x-ms-source-lease-id"))
        if destination.parent is None or destination.path is None:
            raise parent_not_found()
        source_key, target_key = record_key(source_segments), record_key(target.segments)
        if directory and (target_key + "/").startswith(source_key + "/"):
            raise refuse(400, "InvalidResourceName", "A directory cannot move into itself.")
        same_entry = source_key == target_key
        if destination.exists and not same_entry:
            replace = request.headers.get("x-ms-file-rename-replace-if-exists", "")
            if directory or destination.is_dir or replace.lower() != "true":
                raise already_exists()
            existing = self._record(target, destination.path)
            if existing.lease_active:
                guard_lease(existing, request.headers.get("x-ms-destination-lease-id"))
        wanted = destination.parent / target.segments[-1]
        os.replace(source.path, destination.path)
        if destination.path != wanted:  # a name that differs only in case: keep the new case
            os.rename(destination.path, wanted)
        if not same_entry:
            self.state.forget_item(target.account, target.share, target.segments)
        self.state.move_items(target.account, target.share, source_segments, target.segments)
        record = self._record(target, wanted)
        metadata = _metadata(request)
        if metadata:
            record.metadata = metadata
        if request.headers.get("x-ms-content-type"):
            record.content["Content-Type"] = request.headers["x-ms-content-type"]
        self._apply_smb_times(request, record)  # times sent are set; the others are preserved
        return Response(200, headers=self._smb_headers(record, wanted, directory))

    # ----- faults and helpers for tests ----------------------------------------------------
    def hold_lease(self, account: str, share: str, path: str) -> str:
        """Acquire a lease on an existing file as another client would; returns its id."""
        segments = [s for s in path.split("/") if s]
        with self.state.lock:
            located = locate(self._double.share_root(account, share), segments)
            if not located.is_file or located.path is None:
                raise FileNotFoundError(f"{account}/{share}/{path}")
            record = self.state.item(account, share, segments, located.path)
            if record.lease_active:
                raise RuntimeError(f"{account}/{share}/{path} is already leased")
            record.lease = Lease(str(uuid.uuid4()))
            return record.lease.lease_id


_SERVICES: weakref.WeakKeyDictionary[object, FileService] = weakref.WeakKeyDictionary()


def service_of(double: object) -> FileService:
    """The files plane installed on `double` (for helpers such as `hold_lease`)."""
    return _SERVICES[double]


def hold_lease(double: object, account: str, share: str, path: str) -> str:
    """Fault "a lease held by another client": lease `path` (an existing file) as a client the
    caller does not know; returns the lease id. Writes without it then answer 412."""
    return service_of(double).hold_lease(account, share, path)


def drop_uploads(
    faults: Faults, *, path: str | None = None, read_bytes: int = 64 * 1024, times: int = 1
) -> Fault:
    """Fault "a connection dropped mid-upload": the next `times` put-range requests (to paths
    matching the regex `path`) lose their connection after `read_bytes` of the body.

    The same fault from another process: POST <arm_endpoint>/_double/faults with
    {"listener": "files", "method": "PUT", "query": "comp=range", "drop": true, "read_bytes": N}.
    """
    return faults.add(
        Fault(
            listener="files",
            method="PUT",
            path=path,
            query="comp=range",
            drop=True,
            read_bytes=read_bytes,
            times=times,
        )
    )


def corrupt_uploads(double: object, *, path: str | None = None, times: int = 1) -> Fault:
    """Fault "bytes corrupted in flight": the next `times` put-range requests (to paths matching
    the regex `path`) arrive with their first byte changed. A request carrying Content-MD5 is
    then refused as the service refuses it (400 Md5Mismatch) and nothing of it is stored; one
    without stores the corrupted bytes, as the service would."""
    return service_of(double).corruptions.add(
        Fault(listener="files", method="PUT", path=path, query="comp=range", times=times)
    )


def install(double: DoubleForFiles) -> Callable[[Request], Response]:
    """The handler of the double's files listener. Bearer tokens are checked as ARM checks them
    (the stand-in `az` issues them)."""

    def bearer_valid(request: Request) -> bool:
        return check_bearer(request, double.signing_key, double.tenant_id) is None

    service = FileService(double, bearer_valid)
    _SERVICES[double] = service
    return service.handle

"""The XML bodies of the Azure Files data plane: errors and the two enumerations (shares of an
account; files and directories of a directory), in the element names and order the service uses
and the SDK's XML models read."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.etree import ElementTree as ET

from tests.azure_double.http import Response

XML_CONTENT_TYPE = "application/xml"


def http_date(moment: datetime) -> str:
    """RFC 1123, as in Last-Modified and Date."""
    return moment.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def iso_time(moment: datetime) -> str:
    """SMB timestamps (x-ms-file-creation-time, CreationTime ...): ISO 8601, 7 fraction digits."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _document(root: ET.Element) -> bytes:
    declaration = b'<?xml version="1.0" encoding="utf-8"?>'
    return declaration + ET.tostring(root, encoding="unicode").encode()


def _child(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


def files_error(
    status: int,
    code: str,
    message: str,
    *,
    details: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The service's error: `<Error><Code/><Message/>...</Error>` plus `x-ms-error-code`.

    The message ends with the request id and time, as the service's do; `details` become extra
    elements (e.g. HeaderName/HeaderValue, AuthenticationErrorDetail), which the SDK appends to
    the exception's message.
    """
    request_id = str(uuid.uuid4())
    root = ET.Element("Error")
    _child(root, "Code", code)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    _child(root, "Message", f"{message}\nRequestId:{request_id}\nTime:{stamp}")
    for name, value in (details or {}).items():
        _child(root, name, value)
    return Response(
        status,
        _document(root),
        {
            "Content-Type": XML_CONTENT_TYPE,
            "x-ms-error-code": code,
            "x-ms-request-id": request_id,
            **(headers or {}),
        },
    )


@dataclass(frozen=True)
class ShareEntry:
    name: str
    last_modified: datetime
    etag: str
    quota_gib: int
    metadata: dict[str, str] = field(default_factory=dict)


def share_list(
    service_endpoint: str,
    shares: Iterable[ShareEntry],
    *,
    prefix: str | None,
    marker: str | None,
    max_results: int | None,
    next_marker: str,
    include_metadata: bool,
) -> bytes:
    root = ET.Element("EnumerationResults", {"ServiceEndpoint": service_endpoint})
    if prefix is not None:
        _child(root, "Prefix", prefix)
    if marker is not None:
        _child(root, "Marker", marker)
    if max_results is not None:
        _child(root, "MaxResults", str(max_results))
    items = _child(root, "Shares")
    for share in shares:
        item = _child(items, "Share")
        _child(item, "Name", share.name)
        properties = _child(item, "Properties")
        _child(properties, "Last-Modified", http_date(share.last_modified))
        _child(properties, "Etag", share.etag)
        _child(properties, "Quota", str(share.quota_gib))
        _child(properties, "AccessTier", "TransactionOptimized")
        _child(properties, "LeaseStatus", "unlocked")
        _child(properties, "LeaseState", "available")
        _child(properties, "EnabledProtocols", "SMB")
        if include_metadata:
            metadata = _child(item, "Metadata")
            for key, value in share.metadata.items():
                _child(metadata, key, value)
    _child(root, "NextMarker", next_marker)
    return _document(root)


@dataclass(frozen=True)
class DirectoryEntry:
    """One listed file or directory with everything an `include` option can ask for."""

    name: str
    is_directory: bool
    size: int
    file_id: str
    created: datetime
    last_access: datetime
    last_write: datetime
    changed: datetime
    last_modified: datetime
    etag: str
    attributes: str
    permission_key: str


@dataclass(frozen=True)
class ListingOptions:
    timestamps: bool
    etag: bool
    attributes: bool
    permission_key: bool
    extended_info: bool

    @classmethod
    def parse(cls, include: str, extended_info: bool) -> ListingOptions:
        """`include` as the SDK sends it: a comma-separated subset of Timestamps, Etag,
        Attributes, PermissionKey (case-insensitive)."""
        wanted = {part.strip().lower() for part in include.split(",") if part.strip()}
        unknown = wanted - {"timestamps", "etag", "attributes", "permissionkey"}
        if unknown:
            raise ValueError(", ".join(sorted(unknown)))
        return cls(
            timestamps="timestamps" in wanted,
            etag="etag" in wanted,
            attributes="attributes" in wanted,
            permission_key="permissionkey" in wanted,
            extended_info=extended_info,
        )


def directory_list(
    service_endpoint: str,
    share: str,
    directory_path: str,
    directory_id: str,
    entries: Iterable[DirectoryEntry],
    *,
    prefix: str,
    marker: str | None,
    max_results: int | None,
    next_marker: str,
    options: ListingOptions,
) -> bytes:
    root = ET.Element(
        "EnumerationResults",
        {"ServiceEndpoint": service_endpoint, "ShareName": share, "DirectoryPath": directory_path},
    )
    if marker is not None:
        _child(root, "Marker", marker)
    _child(root, "Prefix", prefix)
    if max_results is not None:
        _child(root, "MaxResults", str(max_results))
    if options.extended_info:
        _child(root, "DirectoryId", directory_id)
    items = _child(root, "Entries")
    for entry in entries:
        item = _child(items, "Directory" if entry.is_directory else "File")
        if options.extended_info:
            _child(item, "FileId", entry.file_id)
        _child(item, "Name", entry.name)
        properties = _child(item, "Properties")
        if not entry.is_directory:
            _child(properties, "Content-Length", str(entry.size))
        if options.timestamps:
            _child(properties, "CreationTime", iso_time(entry.created))
            _child(properties, "LastAccessTime", iso_time(entry.last_access))
            _child(properties, "LastWriteTime", iso_time(entry.last_write))
            _child(properties, "ChangeTime", iso_time(entry.changed))
            _child(properties, "Last-Modified", http_date(entry.last_modified))
        if options.etag:
            _child(properties, "Etag", entry.etag)
        if options.attributes:
            _child(item, "Attributes", entry.attributes)
        if options.permission_key:
            _child(item, "PermissionKey", entry.permission_key)
    _child(root, "NextMarker", next_marker)
    return _document(root)


def range_list(ranges: Iterable[tuple[int, int]], next_marker: str) -> bytes:
    """List Ranges: the written ranges of a file (inclusive offsets), one page of them."""
    root = ET.Element("Ranges")
    for start, end in ranges:
        item = _child(root, "Range")
        _child(item, "Start", str(start))
        _child(item, "End", str(end))
    _child(root, "NextMarker", next_marker)
    return _document(root)

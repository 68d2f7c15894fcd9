"""The Files data plane of the double, driven by the real azure-storage-file-share clients over
TLS (the double's CA), authenticated with the account key as a deploy would be."""

from __future__ import annotations

import hashlib
import os
import ssl
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.fileshare import (
    ContentSettings,
    FileProperties,
    LinearRetry,
    ShareClient,
    ShareLeaseClient,
    ShareServiceClient,
)

from tests.azure_double.auth import issue_token
from tests.azure_double.faults import Fault
from tests.azure_double.files import service_of
from tests.azure_double.server import AzureDouble

ACCOUNT = "acainferfiles"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def double() -> Iterator[AzureDouble]:
    with AzureDouble() as started:
        started.create_storage_account_keys(ACCOUNT)
        yield started


@pytest.fixture(autouse=True)
def no_faults_left(double: AzureDouble) -> Iterator[None]:
    yield
    double.faults.clear()


def _client_options(double: AzureDouble) -> dict[str, Any]:
    # The SDK's own retry policy, without its default 15 s backoff.
    return {
        "connection_verify": str(double.ca_bundle),
        "retry_policy": LinearRetry(backoff=0, random_jitter_range=0, retry_total=3),
    }


def _service(double: AzureDouble, key: str | None = None) -> ShareServiceClient:
    credential = {
        "account_name": ACCOUNT,
        "account_key": key or double.storage_account_keys(ACCOUNT)[0],
    }
    return ShareServiceClient(
        double.files_endpoint(ACCOUNT), credential=credential, **_client_options(double)
    )


@pytest.fixture
def share(double: AzureDouble) -> ShareClient:
    client = _service(double).get_share_client(f"share-{uuid.uuid4().hex[:12]}")
    client.create_share()
    return client


def _code(error: Exception) -> str | None:
    """The service's error code, which the SDK puts on its exceptions."""
    return getattr(error, "error_code", None)


def _files_requests(double: AzureDouble, share: ShareClient) -> list[Any]:
    prefix = f"/{ACCOUNT}/{share.share_name}"
    return [r for r in double.requests if r.listener == "files" and r.path.startswith(prefix)]


def test_an_upload_lands_on_the_share_folder_and_reads_back_by_range(
    double: AzureDouble, share: ShareClient
) -> None:
    share.create_directory("models")
    data = os.urandom(5 * MIB + 123)  # more than one 4 MiB range
    file = share.get_file_client("models/weights.bin")
    file.upload_file(data, content_settings=ContentSettings(content_type="application/x-weights"))

    on_disk = double.share_root(ACCOUNT, share.share_name) / "models" / "weights.bin"
    assert on_disk.read_bytes() == data
    writes = [r for r in _files_requests(double, share) if r.query.get("comp") == "range"]
    assert [r.body_size for r in writes] == [4 * MIB, MIB + 123]
    assert file.download_file().readall() == data
    assert file.download_file(offset=4 * MIB - 10, length=20).readall() == data[4 * MIB - 10 :][:20]
    # The SDK asks for each range's MD5 and checks it.
    assert (
        file.download_file(offset=100, length=MIB, validate_content=True).readall()
        == (data[100 : 100 + MIB])
    )
    properties = file.get_file_properties()
    assert properties.size == len(data)
    assert properties.content_settings.content_type == "application/x-weights"


def test_empty_and_md5_checked_uploads(share: ShareClient) -> None:
    empty = share.get_file_client("empty.txt")
    empty.upload_file(b"")
    assert empty.download_file().readall() == b""

    checked = share.get_file_client("checked.txt")
    checked.upload_file(b"checked body", validate_content=True)
    assert checked.download_file().readall() == b"checked body"


def test_clearing_a_range_zeroes_it_and_changes_the_etag(share: ShareClient) -> None:
    file = share.get_file_client("data.bin")
    file.upload_file(b"a" * 1000)
    before = file.get_file_properties().etag

    file.clear_range(offset=0, length=512)

    assert file.download_file().readall() == bytes(512) + b"a" * 488
    assert file.get_file_properties().etag != before


def test_a_range_past_the_end_is_refused(share: ShareClient) -> None:
    file = share.get_file_client("short.bin")
    file.create_file(10)
    with pytest.raises(HttpResponseError) as refused:
        file.upload_range(b"x" * 10, offset=5, length=10)
    assert refused.value.status_code == 416
    assert _code(refused.value) == "InvalidRange"


def test_listing_pages_with_markers_and_includes(double: AzureDouble, share: ShareClient) -> None:
    directory = share.create_directory("app")
    for name in ["b.py", "a.py", "C.py", "d.py", "e.txt"]:
        directory.upload_file(name, name.encode())
    directory.create_subdirectory("releases")

    pages = list(directory.list_directories_and_files(results_per_page=2).by_page())
    listed = [[item.name for item in page] for page in pages]

    # Directories first within a page (as the SDK assembles it), names sorted case-insensitively.
    assert listed == [["a.py", "b.py"], ["C.py", "d.py"], ["releases", "e.txt"]]
    lists = [r for r in _files_requests(double, share) if r.query.get("comp") == "list"]
    assert len(lists) == 3
    assert "marker" not in lists[0].query and all("marker" in r.query for r in lists[1:])

    detailed = {
        item.name: item
        for item in directory.list_directories_and_files(
            name_starts_with="e",
            include=["timestamps", "Etag", "Attributes", "PermissionKey"],
            include_extended_info=True,
        )
    }
    assert list(detailed) == ["e.txt"]
    entry = detailed["e.txt"]
    assert isinstance(entry, FileProperties)
    assert entry.size == len(b"e.txt")
    assert entry.etag == directory.get_file_client("e.txt").get_file_properties().etag
    assert entry.file_id and entry.last_write_time and entry.permission_key
    assert entry.file_attributes == "Archive"


def test_list_shares_and_share_lifecycle(double: AzureDouble) -> None:
    service = _service(double)
    name = f"lifecycle-{uuid.uuid4().hex[:8]}"
    share = service.create_share(name, metadata={"owner": "deploy"}, quota=100)
    with pytest.raises(ResourceExistsError):
        share.create_share()

    listed = {s.name: s for s in service.list_shares(include_metadata=True)}
    assert listed[name].metadata == {"owner": "deploy"}
    assert share.get_share_properties().quota == 100

    share.delete_share()
    assert not double.share_root(ACCOUNT, name).exists()
    with pytest.raises(ResourceNotFoundError):
        share.get_share_properties()


def test_names_are_case_insensitive_and_keep_their_case(
    double: AzureDouble, share: ShareClient
) -> None:
    share.create_directory("Config")
    share.get_file_client("Config/Settings.JSON").upload_file(b"{}")

    assert share.get_file_client("config/settings.json").download_file().readall() == b"{}"
    assert [
        p.name for p in (double.share_root(ACCOUNT, share.share_name) / "Config").iterdir()
    ] == ["Settings.JSON"]


def test_paths_that_do_not_exist(share: ShareClient) -> None:
    with pytest.raises(ResourceNotFoundError) as missing_parent:
        share.get_file_client("nowhere/file.txt").create_file(1)
    assert _code(missing_parent.value) == "ParentNotFound"
    with pytest.raises(ResourceNotFoundError) as missing:
        share.get_file_client("file.txt").download_file()
    assert _code(missing.value) == "ResourceNotFound"
    directory = share.create_directory("full")
    directory.upload_file("f", b"x")
    with pytest.raises(ResourceExistsError) as not_empty:
        directory.delete_directory()
    assert _code(not_empty.value) == "DirectoryNotEmpty"


def test_rename_replaces_only_when_asked(double: AzureDouble, share: ShareClient) -> None:
    share.get_file_client("current").upload_file(b"release-1")
    staged = share.get_file_client("current.tmp")
    staged.upload_file(b"release-2")

    with pytest.raises(ResourceExistsError):
        staged.rename_file("current")
    renamed = staged.rename_file("current", overwrite=True)

    assert renamed.download_file().readall() == b"release-2"
    root = double.share_root(ACCOUNT, share.share_name)
    assert sorted(p.name for p in root.iterdir()) == ["current"]
    with pytest.raises(ResourceNotFoundError):
        staged.get_file_properties()


def test_rename_moves_a_directory_with_its_files(share: ShareClient) -> None:
    staging = share.create_directory("staging")
    staging.upload_file("a.txt", b"a")
    share.create_directory("releases")

    moved = staging.rename_directory("releases/r1")

    assert moved.get_file_client("a.txt").download_file().readall() == b"a"
    with pytest.raises(ResourceNotFoundError):
        staging.get_directory_properties()


def test_a_lease_blocks_writers_without_it(share: ShareClient) -> None:
    lock = share.get_file_client("deploy.lock")
    lock.upload_file(b"holder: one")
    lease = lock.acquire_lease()
    other = share.get_file_client("deploy.lock")  # another client: knows no lease id

    with pytest.raises(HttpResponseError) as blocked:
        other.upload_range(b"holder: two", offset=0, length=11)
    assert _code(blocked.value) == "LeaseIdMissing"
    with pytest.raises(HttpResponseError) as delete_blocked:
        other.delete_file()
    assert _code(delete_blocked.value) == "LeaseIdMissing"
    with pytest.raises(HttpResponseError) as taken:
        ShareLeaseClient(other).acquire()
    assert _code(taken.value) == "LeaseAlreadyPresent"
    assert lock.get_file_properties().lease.state == "leased"

    lock.upload_range(b"holder: ONE", offset=0, length=11, lease=lease)
    new_id = str(uuid.uuid4())
    lease.change(new_id)
    assert lease.id == new_id
    lease.release()
    other.upload_range(b"holder: two", offset=0, length=11)
    assert lock.download_file().readall() == b"holder: two"


def test_a_lease_held_by_another_client_blocks_until_broken(
    double: AzureDouble, share: ShareClient
) -> None:
    lock = share.get_file_client("deploy.lock")
    lock.upload_file(b"stale")
    service_of(double).hold_lease(ACCOUNT, share.share_name, "deploy.lock")

    with pytest.raises(HttpResponseError) as blocked:
        lock.upload_file(b"mine")
    assert blocked.value.status_code == 412
    assert _code(blocked.value) == "LeaseIdMissing"

    assert ShareLeaseClient(lock).break_lease() == 0
    assert lock.get_file_properties().lease.state == "broken"
    lock.upload_file(b"mine")
    assert lock.download_file().readall() == b"mine"


def test_file_leases_are_infinite(share: ShareClient) -> None:
    file = share.get_file_client("f")
    file.upload_file(b"x")
    with pytest.raises(HttpResponseError) as refused:
        # ShareFileClient.acquire_lease always sends -1; the lease client passes what it is given.
        ShareLeaseClient(file).acquire(lease_duration=30)
    assert _code(refused.value) == "InvalidHeaderValue"


def test_rename_over_a_leased_file_needs_its_lease(share: ShareClient) -> None:
    target = share.get_file_client("current")
    target.upload_file(b"old")
    lease = target.acquire_lease()
    staged = share.get_file_client("current.tmp")
    staged.upload_file(b"new")

    with pytest.raises(HttpResponseError) as blocked:
        staged.rename_file("current", overwrite=True)
    assert _code(blocked.value) == "LeaseIdMissing"
    staged.rename_file("current", overwrite=True, destination_lease=lease)
    assert target.download_file().readall() == b"new"


def test_a_bad_signature_is_refused_and_changes_nothing(double: AzureDouble) -> None:
    wrong_key = "d3Jvbmcga2V5" * 8
    name = f"refused-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ClientAuthenticationError) as refused:
        _service(double, key=wrong_key).create_share(name)
    assert refused.value.status_code == 403
    assert _code(refused.value) == "AuthenticationFailed"
    assert not double.share_root(ACCOUNT, name).exists()


def test_the_second_account_key_works_too(double: AzureDouble) -> None:
    second = double.storage_account_keys(ACCOUNT)[1]
    assert _service(double, key=second).get_share_client("second-key").create_share()


class _DoubleToken:
    """A token credential holding a token the double issued (as its stand-in `az` does)."""

    def __init__(self, token: str, expires_on: int) -> None:
        self._token = AccessToken(token, expires_on)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return self._token


def test_bearer_tokens_need_the_backup_intent(double: AzureDouble, share: ShareClient) -> None:
    token, expires_on = issue_token(
        double.signing_key, double.tenant_id, "https://storage.azure.com", str(uuid.uuid4())
    )
    oauth = ShareClient(
        double.files_endpoint(ACCOUNT),
        share.share_name,
        credential=_DoubleToken(token, expires_on),
        token_intent="backup",
        **_client_options(double),
    )
    oauth.get_file_client("by-token.txt").upload_file(b"entra")
    assert share.get_file_client("by-token.txt").download_file().readall() == b"entra"

    url = f"{double.files_endpoint(ACCOUNT)}{share.share_name}/by-token.txt"
    headers = {
        "Authorization": f"Bearer {token}",
        "x-ms-version": "2026-10-06",
        "x-ms-date": "now",
    }
    trust = ssl.create_default_context(cafile=str(double.ca_bundle))
    answer = httpx.get(url, headers=headers, verify=trust)
    assert answer.status_code == 403
    assert answer.headers["x-ms-error-code"] == "AuthenticationFailed"
    assert "<Code>AuthenticationFailed</Code>" in answer.text


def test_a_connection_dropped_mid_upload_surfaces_then_a_retry_succeeds(
    double: AzureDouble, share: ShareClient
) -> None:
    file = share.get_file_client("model.bin")
    file.create_file(2 * MIB)
    chunk = os.urandom(2 * MIB)
    fault = double.faults.add(
        Fault(listener="files", method="PUT", query="comp=range", drop=True, read_bytes=64 * 1024)
    )

    with pytest.raises((ServiceRequestError, ServiceResponseError)):
        file.upload_range(chunk, offset=0, length=len(chunk), retry_total=0)
    assert fault.hits == 1

    file.upload_range(chunk, offset=0, length=len(chunk))
    assert hashlib.sha256(file.download_file().readall()).digest() == (
        hashlib.sha256(chunk).digest()
    )


def test_server_busy_is_retried_by_the_sdk_and_429_reaches_the_caller(
    double: AzureDouble, share: ShareClient
) -> None:
    file = share.get_file_client("busy.txt")
    file.upload_file(b"ok")
    busy = double.faults.add(
        Fault(
            listener="files",
            method="HEAD",
            path=r"/busy\.txt$",
            status=503,
            code="ServerBusy",
            headers={"Retry-After": "0"},
            times=2,
        )
    )

    assert file.get_file_properties().size == 2
    assert busy.hits == 2
    statuses = [r.status for r in _files_requests(double, share) if r.method == "HEAD"]
    assert statuses[-3:] == [503, 503, 200]

    # The storage SDK's policy retries 5xx and 408, not 429: the caller sees it.
    double.faults.add(Fault(listener="files", method="GET", status=429, code="TooManyRequests"))
    with pytest.raises(HttpResponseError) as throttled:
        file.download_file()
    assert throttled.value.status_code == 429

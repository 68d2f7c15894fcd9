"""The Files data plane of the double, driven by the real azure-storage-file-share clients over
TLS (the double's CA), authenticated with the account key as a deploy would be."""

from __future__ import annotations

import hashlib
import os
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import DefaultAzureCredential
from azure.mgmt.resource.resources.models import ResourceGroup
from azure.mgmt.storage.models import (
    FileShare,
    FileShareProperties,
    Sku,
    StorageAccountCreateParameters,
)
from azure.storage.fileshare import (
    ContentSettings,
    FileProperties,
    LinearRetry,
    ShareClient,
    ShareFileClient,
    ShareLeaseClient,
    ShareServiceClient,
)

from tests.azure_double.faults import Fault
from tests.azure_double.files import corrupt_uploads, drop_uploads, hold_lease
from tests.azure_double.files_auth import sign, string_to_sign
from tests.azure_double.http import Request
from tests.azure_double.sdk import resources_client, storage_client, use_double_env
from tests.azure_double.server import AzureDouble

ACCOUNT = "acainferfiles"
GROUP = "rg-files"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Account:
    """A storage account made through ARM, as provision makes it, and what deploy reads back."""

    double: AzureDouble
    endpoint: str
    keys: list[str]


@pytest.fixture(scope="module")
def account(azure_double_module: AzureDouble) -> Account:
    double = azure_double_module
    with use_double_env(double):
        groups = resources_client(double)
        groups.resource_groups.create_or_update(GROUP, ResourceGroup(location="eastus"))
        storage = storage_client(double)
        storage.storage_accounts.begin_create(
            GROUP,
            ACCOUNT,
            StorageAccountCreateParameters(
                sku=Sku(name="Standard_LRS"), kind="StorageV2", location="eastus"
            ),
        ).result()
        properties = storage.storage_accounts.get_properties(GROUP, ACCOUNT)
        listed = storage.storage_accounts.list_keys(GROUP, ACCOUNT).keys_property or []
    assert properties.primary_endpoints is not None and properties.primary_endpoints.file
    return Account(double, properties.primary_endpoints.file, [str(key.value) for key in listed])


@pytest.fixture
def double(account: Account) -> Iterator[AzureDouble]:
    yield account.double
    account.double.faults.clear()


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
def share(account: Account) -> ShareClient:
    client = ShareServiceClient(
        account.endpoint,
        credential={"account_name": ACCOUNT, "account_key": account.keys[0]},
        **_client_options(account.double),
    ).get_share_client(f"share-{uuid.uuid4().hex[:12]}")
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


def _ranges(file: ShareFileClient) -> list[tuple[int, int]]:
    return [(r.start, r.end) for r in file.list_ranges()]


def test_parallel_uploads_and_written_ranges(double: AzureDouble, share: ShareClient) -> None:
    data = os.urandom(9 * MIB)
    file = share.get_file_client("parallel.bin")
    file.upload_file(data, max_concurrency=3)
    assert file.download_file(max_concurrency=3).readall() == data
    assert _ranges(file) == [(0, len(data) - 1)]

    # What a resumed upload asks: which ranges already hold data.
    sparse = share.get_file_client("sparse.bin")
    sparse.create_file(3 * MIB)
    assert _ranges(sparse) == []
    sparse.upload_range(b"x" * 1024, offset=MIB, length=1024)
    sparse.upload_range(b"y" * 1024, offset=MIB + 1024, length=1024)
    sparse.upload_range(b"z" * 10, offset=0, length=10)
    assert _ranges(sparse) == [(0, 9), (MIB, MIB + 2047)]
    sparse.clear_range(offset=MIB, length=512)
    assert _ranges(sparse) == [(0, 9), (MIB + 512, MIB + 2047)]
    pages = list(sparse.list_ranges(results_per_page=1).by_page())
    assert [[(r.start, r.end) for r in page] for page in pages] == [
        [(0, 9)],
        [(MIB + 512, MIB + 2047)],
    ]


def test_a_body_changed_on_the_share_folder_gets_a_new_etag(
    double: AzureDouble, share: ShareClient
) -> None:
    file = share.get_file_client("written-by-replica.txt")
    file.upload_file(b"before")
    before = file.get_file_properties()

    (double.share_root(ACCOUNT, share.share_name) / "written-by-replica.txt").write_bytes(
        b"after!!"
    )

    after = file.get_file_properties()
    assert after.etag != before.etag and after.size == len(b"after!!")
    assert file.download_file().readall() == b"after!!"


def test_empty_and_md5_checked_uploads(share: ShareClient) -> None:
    empty = share.get_file_client("empty.txt")
    empty.upload_file(b"")
    assert empty.download_file().readall() == b""

    checked = share.get_file_client("checked.txt")
    checked.upload_file(b"checked body", validate_content=True)
    assert checked.download_file().readall() == b"checked body"


def test_a_range_corrupted_in_flight_is_refused_by_its_md5_and_nothing_is_stored(
    double: AzureDouble, share: ShareClient
) -> None:
    file = share.get_file_client("weights.bin")
    file.create_file(8)
    corrupt_uploads(double, path=r"/weights\.bin$", times=2)

    with pytest.raises(HttpResponseError) as refused:
        file.upload_range(b"checked!", 0, 8, validate_content="md5")
    assert refused.value.status_code == 400 and _code(refused.value) == "Md5Mismatch"
    assert list(file.list_ranges()) == []  # the refused range left nothing behind

    # Without Content-MD5 the service cannot tell: the corrupted bytes are stored.
    file.upload_range(b"unproven", 0, 8)
    assert file.download_file().readall() == bytes([ord("u") ^ 0xFF]) + b"nproven"
    file.upload_range(b"checked!", 0, 8, validate_content="md5")  # the faults are used up
    assert file.download_file().readall() == b"checked!"


def test_the_last_write_time_sent_is_kept_through_preserving_ranges_and_a_rename(
    share: ShareClient,
) -> None:
    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    staged = share.get_file_client("staged")
    staged.create_file(4, file_last_write_time=stamp, metadata={"state": "partial"})
    staged.upload_range(b"data", 0, 4, file_last_write_mode="preserve")
    assert staged.get_file_properties().last_write_time == stamp

    later = stamp + timedelta(hours=1)
    final = staged.rename_file(
        "final", metadata={"state": "whole"}, file_last_write_time=later
    ).get_file_properties()
    assert (final.metadata, final.last_write_time) == ({"state": "whole"}, later)

    share.get_file_client("final").upload_range(b"next", 0, 4)  # a write moves the time
    assert share.get_file_client("final").get_file_properties().last_write_time != later


def test_clearing_a_range_zeroes_it_and_changes_the_etag(share: ShareClient) -> None:
    file = share.get_file_client("data.bin")
    file.upload_file(b"a" * 1000)
    before = file.get_file_properties().etag

    file.clear_range(offset=0, length=512)

    assert file.download_file().readall() == bytes(512) + b"a" * 488
    assert file.get_file_properties().etag != before


def test_properties_metadata_and_resize(share: ShareClient) -> None:
    file = share.get_file_client("config.json")
    file.upload_file(b'{"a": 1}', metadata={"release": "r1"})
    assert file.get_file_properties().metadata == {"release": "r1"}

    file.set_file_metadata({"release": "r2"})
    file.set_http_headers(
        ContentSettings(content_type="application/json", cache_control="no-cache")
    )
    properties = file.get_file_properties()
    assert properties.metadata == {"release": "r2"}
    assert properties.content_settings.content_type == "application/json"
    assert properties.content_settings.cache_control == "no-cache"

    file.resize_file(4)
    assert file.download_file().readall() == b'{"a"'
    # Set properties replaces the content settings as a whole.
    assert file.get_file_properties().content_settings.cache_control is None


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


def test_shares_are_the_same_through_arm_and_the_data_plane(account: Account) -> None:
    double = account.double
    service = _service(double)
    with use_double_env(double):
        shares = storage_client(double).file_shares
        quota = FileShare(file_share_properties=FileShareProperties(share_quota=1024))
        shares.create(GROUP, ACCOUNT, "made-by-arm", quota)
        service.get_share_client("made-by-arm").get_file_client("f.txt").upload_file(b"arm")
        assert (double.share_root(ACCOUNT, "made-by-arm") / "f.txt").read_bytes() == b"arm"

        service.create_share("made-by-data-plane")
        assert shares.get(GROUP, ACCOUNT, "made-by-data-plane").name == "made-by-data-plane"
        service.delete_share("made-by-data-plane")
        with pytest.raises(ResourceNotFoundError):
            shares.get(GROUP, ACCOUNT, "made-by-data-plane")


def test_names_are_case_insensitive_and_keep_their_case(
    double: AzureDouble, share: ShareClient
) -> None:
    share.create_directory("Config")
    share.get_file_client("Config/Settings.JSON").upload_file(b"{}")

    assert share.get_file_client("config/settings.json").download_file().readall() == b"{}"
    assert [
        p.name for p in (double.share_root(ACCOUNT, share.share_name) / "Config").iterdir()
    ] == ["Settings.JSON"]


def test_names_that_would_leave_the_share_are_refused(double: AzureDouble) -> None:
    trust = ssl.create_default_context(cafile=str(double.ca_bundle))
    for path in ["%2E%2E/secret", "share-ok/%2E%2E/x", "share-ok/a%3Ab"]:
        answer = httpx.get(f"{double.files_endpoint(ACCOUNT)}{path}", verify=trust)
        assert answer.status_code == 400, path
        assert answer.headers["x-ms-error-code"] == "InvalidResourceName"


def test_an_older_service_version_is_served(double: AzureDouble, share: ShareClient) -> None:
    old = ShareServiceClient(
        double.files_endpoint(ACCOUNT),
        credential={
            "account_name": ACCOUNT,
            "account_key": double.storage_account_keys(ACCOUNT)[0],
        },
        api_version="2021-06-08",
        **_client_options(double),
    )
    answered: set[str] = set()
    old.get_share_client(share.share_name).get_file_client("old.txt").upload_file(
        b"v", raw_response_hook=lambda r: answered.add(r.http_response.headers["x-ms-version"])
    )
    assert answered == {"2021-06-08"}
    assert share.get_file_client("old.txt").download_file().readall() == b"v"


def test_what_the_double_does_not_implement_says_so_once(
    double: AzureDouble, share: ShareClient
) -> None:
    before = len(_files_requests(double, share))
    with pytest.raises(HttpResponseError) as refused:
        share.create_snapshot()
    assert refused.value.status_code == 501
    assert "does not implement" in str(refused.value)
    assert len(_files_requests(double, share)) == before + 1  # 501 is not retried


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
    hold_lease(double, ACCOUNT, share.share_name, "deploy.lock")

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


def _signed_get(double: AzureDouble, path: str, sent_at: datetime) -> httpx.Response:
    """A GET signed with the account key (SharedKey), dated `sent_at`."""
    headers = {"x-ms-date": format_datetime(sent_at, usegmt=True), "x-ms-version": "2026-10-06"}
    unsigned = Request("GET", unquote(path), path, {}, headers, b"", "files")
    signature = sign(double.storage_account_keys(ACCOUNT)[0], string_to_sign(unsigned, ACCOUNT))
    headers["Authorization"] = f"SharedKey {ACCOUNT}:{signature}"
    trust = ssl.create_default_context(cafile=str(double.ca_bundle))
    return httpx.get(f"https://127.0.0.1:{double.files_port}{path}", headers=headers, verify=trust)


def test_a_signed_request_must_be_recent(double: AzureDouble, share: ShareClient) -> None:
    share.get_file_client("dated.txt").upload_file(b"now")
    path = f"/{ACCOUNT}/{share.share_name}/dated.txt"

    assert _signed_get(double, path, datetime.now(UTC)).content == b"now"
    replayed = _signed_get(double, path, datetime.now(UTC) - timedelta(minutes=20))
    assert replayed.status_code == 403
    assert "too old" in replayed.text


def test_either_key_from_list_keys_signs(account: Account) -> None:
    for index, key in enumerate(account.keys):
        share = _service(account.double, key=key).get_share_client(f"key-{index}")
        share.create_share()
        assert share.get_share_properties().name == f"key-{index}"


def test_bearer_tokens_need_the_backup_intent(double: AzureDouble, share: ShareClient) -> None:
    with use_double_env(double):  # the real credential chain, answered by the stand-in `az`
        credential = DefaultAzureCredential()
        oauth = ShareClient(
            double.files_endpoint(ACCOUNT),
            share.share_name,
            credential=credential,
            token_intent="backup",
            **_client_options(double),
        )
        oauth.get_file_client("by-token.txt").upload_file(b"entra")
        token = credential.get_token("https://storage.azure.com/.default").token
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
    fault = drop_uploads(double.faults, path=r"/model\.bin$", read_bytes=64 * 1024)

    with pytest.raises((ServiceRequestError, ServiceResponseError)):
        file.upload_range(chunk, offset=0, length=len(chunk), retry_total=0)
    assert fault.hits == 1

    file.upload_range(chunk, offset=0, length=len(chunk))
    assert hashlib.sha256(file.download_file().readall()).digest() == (
        hashlib.sha256(chunk).digest()
    )


def test_a_drop_armed_by_another_process_is_retried_by_the_sdk(
    double: AzureDouble, share: ShareClient
) -> None:
    trust = ssl.create_default_context(cafile=str(double.ca_bundle))
    armed = httpx.post(
        f"{double.arm_endpoint}/_double/faults",
        json={
            "listener": "files",
            "method": "PUT",
            "query": "comp=range",
            "drop": True,
            "read_bytes": 4096,
        },
        verify=trust,
    )
    assert armed.status_code == 201
    data = os.urandom(MIB)

    share.get_file_client("retried.bin").upload_file(data)  # the SDK's retry policy resends

    assert share.get_file_client("retried.bin").download_file().readall() == data
    ranges = [r for r in _files_requests(double, share) if r.query.get("comp") == "range"]
    assert [(r.status, r.body_size) for r in ranges] == [(0, 4096), (201, MIB)]


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

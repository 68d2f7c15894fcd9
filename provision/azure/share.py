"""The Azure Files share behind the `Share` protocol (azure-storage-file-share).

Authentication: Entra ID (a bearer token with `x-ms-file-request-intent: backup`, the only way
the Files REST API takes OAuth) when the caller has a data role on the share; otherwise the
account key, read through ARM (`listKeys`) into memory only, never written or printed.

Writes are atomic: the body goes to a temporary name in the same folder, then a rename with
replace puts it in place, so a reader (a replica's SMB mount) never sees half a file. An upload
whose connection drops is retried by the SDK's retry policy, which also backs off on ServerBusy
(503); a body that never arrived stays under its temporary name and the next deploy uploads it.

Large files (`open_upload`, model weights) are written in ranges, each Put Range carrying its
Content-MD5: the service refuses a range whose bytes differ from what was sent (Md5Mismatch), so
every stored range is whole and exact; a refused range is sent again. The temporary carries the
content's SHA-256, its source file and its writer (host, pid) in its metadata: an upload killed
halfway leaves it, and the next upload of the same, unchanged source resumes it from the ranges
the service lists as written (Get Ranges), while `discard_stale_uploads` deletes the ones no
running upload writes to.

`create_exclusive` is a rename without replace (the service refuses it when the name exists), and
the file so created is leased (file leases are infinite): the deploy lock. While this client holds
the lease, no other client can rewrite or delete the lock; a lock taken over as stale (see
deploy_lock.py) has its lease broken first, and only then.
"""

from __future__ import annotations

import functools
import hashlib
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from posixpath import dirname
from typing import Any, Concatenate, ParamSpec, TypeVar

from provision.azure.arm import Arm
from provision.errors import OperationError
from provision.processes import pid_alive
from provision.share import STALE_UPLOAD_SECONDS, UploadSource

# Backs off 1 s, then 3, 5, 9, 17, 33 s: long enough for ServerBusy to pass on a busy account.
RETRY_INITIAL_BACKOFF, RETRY_INCREMENT_BASE, RETRY_TOTAL = 1, 2, 6
TEMPORARY_PREFIX = ".upload-"
P = ParamSpec("P")
T = TypeVar("T")
MAX_RANGE_BYTES = 4 << 20  # the most one Put Range request may carry
MD5_ATTEMPTS = 3  # a range the service refuses as corrupted in flight is sent this many times
# File metadata (names are C# identifiers, case-insensitive): the content's SHA-256, the last
# write time it belongs to, and, on a temporary, the host and pid of the upload writing it, the
# source file it copies (a hash of host and path) and when its hashing began.
META_SHA256 = "sha256"
META_HASHED_WRITE = "sha256lastwrite"
META_HOST = "uploadhost"
META_PID = "uploadpid"
META_SOURCE = "uploadsource"
META_HASHED_AT = "uploadhashedat"
# Temporaries this process is writing now (share-relative paths): a leftover of this very
# process (an aborted upload) is stale, one it is writing is not.
_WRITING: set[str] = set()
_WRITING_LOCK = threading.Lock()


@dataclass(frozen=True)
class ShareLocation:
    account: str
    share: str
    endpoint: (
        str  # the account's primary file endpoint, e.g. https://<account>.file.core.windows.net/
    )


def _error_code(error: Exception) -> str:
    # The SDK gives a StorageErrorCode (a str enum whose str() is its name) or a plain string.
    code = getattr(error, "error_code", None)
    return str(getattr(code, "value", code) or "")


def _status(error: BaseException) -> int | None:
    return getattr(error, "status_code", None)


@contextmanager
def _storage_errors(action: str) -> Iterator[None]:
    from azure.core.exceptions import AzureError, HttpResponseError

    try:
        yield
    except HttpResponseError as error:
        code = _error_code(error) or f"HTTP {_status(error)}"
        message = " ".join(str(getattr(error, "message", "") or error).split())[:300]
        raise OperationError(f"{action}: {code}: {message}") from error
    except AzureError as error:
        raise OperationError(f"{action}: cannot reach the share ({error})") from error


def _authorizing(
    method: Callable[Concatenate[AzureShare, P], T],
) -> Callable[Concatenate[AzureShare, P], T]:
    """A Share operation run through `AzureShare._authorized` (see there)."""

    @functools.wraps(method)
    def run(share: AzureShare, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return share._authorized(lambda: method(share, *args, **kwargs))

    return run


def _merged(ranges: Iterator[Any]) -> list[tuple[int, int]]:
    """Get Ranges' (start, end) pairs, inclusive, with adjacent ones joined (the service may list
    two neighbouring Put Ranges apart)."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted((int(r.start), int(r.end)) for r in ranges):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


class AzureUpload:
    """A file written in ranges under a temporary name (created at its full size first), then
    renamed over its name: readers see the old file or the whole new one.

    Every range goes with its Content-MD5, and keeps the temporary's last write time (`preserve`),
    so that time stays the one the upload began with; the rename sets the content's SHA-256 and
    that time as the file's metadata (see `AzureShare.holds`)."""

    def __init__(
        self,
        share: AzureShare,
        path: str,
        temporary: Any,
        temporary_path: str,
        sha256: str,
        write_time: datetime,
        stored: list[tuple[int, int]],
    ) -> None:
        self._share = share
        self._path = path
        self._temporary = temporary
        self._temporary_path = temporary_path
        self._sha256 = sha256
        self._write_time = write_time
        self._stored = stored

    def stored(self, offset: int, length: int) -> bool:
        last = offset + length - 1
        return any(start <= offset and last <= end for start, end in self._stored)

    def write_range(self, offset: int, data: bytes) -> None:

        view = memoryview(data)
        with _storage_errors(f"uploading {self._path} to {self._share.describe()}"):
            for start in range(0, len(view), MAX_RANGE_BYTES):
                piece = bytes(view[start : start + MAX_RANGE_BYTES])
                _md5_checked(
                    functools.partial(
                        self._temporary.upload_range,
                        piece,
                        offset + start,
                        len(piece),
                        validate_content="md5",
                        file_last_write_mode="preserve",
                    )
                )

    def commit(self) -> None:
        metadata = {
            META_SHA256: self._sha256,
            META_HASHED_WRITE: self._write_time.isoformat(),
        }
        try:
            with _storage_errors(
                f"renaming the upload of {self._path} on {self._share.describe()}"
            ):
                self._temporary.rename_file(
                    self._path,
                    overwrite=True,
                    metadata=metadata,
                    file_last_write_time=self._write_time,
                )
        finally:
            _writing(self._temporary_path, False)

    def abort(self) -> None:
        """Keep the temporary when it holds ranges: the next upload of the same content resumes
        it, and `discard_stale_uploads` removes it otherwise."""
        from azure.core.exceptions import AzureError

        _writing(self._temporary_path, False)
        if self._stored:
            return
        with suppress(AzureError):
            if not _merged(self._temporary.list_ranges()):
                self._temporary.delete_file()


def _md5_checked(send: Callable[[], T]) -> T:
    """`send()` a request that carries its Content-MD5; one the service refuses as changed in
    flight (Md5Mismatch: nothing of it was stored) is sent again, up to MD5_ATTEMPTS times."""
    from azure.core.exceptions import HttpResponseError

    for _ in range(MD5_ATTEMPTS - 1):
        try:
            return send()
        except HttpResponseError as error:
            if _error_code(error) != "Md5Mismatch":
                raise
    return send()


def _upload_whole(file: Any, data: bytes) -> None:
    """Create `file` with `data`, its bytes checked by the service (Content-MD5)."""
    _md5_checked(lambda: file.upload_file(data, validate_content=True))


def _writing(temporary_path: str, writing: bool) -> None:
    with _WRITING_LOCK:
        if writing:
            _WRITING.add(temporary_path)
        else:
            _WRITING.discard(temporary_path)


class AzureShare:
    """One file share; safe to use from several threads (uploads run in parallel)."""

    def __init__(self, location: ShareLocation, arm: Arm) -> None:
        self.location = location
        self._arm = arm
        self._client_lock = threading.Lock()
        self._client: Any = None
        self._folders: set[str] = {""}
        self._leases: dict[str, str] = {}  # path -> lease id this client holds
        self._settled = False  # whether the first request told which credential works

    # -- the client and how it authenticates -----------------------------------------------

    def _new_client(self, credential: Any, **options: Any) -> Any:
        from azure.storage.fileshare import ExponentialRetry, ShareClient

        return ShareClient(
            self.location.endpoint,
            self.location.share,
            credential=credential,
            retry_policy=ExponentialRetry(
                initial_backoff=RETRY_INITIAL_BACKOFF,
                increment_base=RETRY_INCREMENT_BASE,
                retry_total=RETRY_TOTAL,
            ),
            **options,
        )

    @property
    def client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self._new_client(self._arm.credential, token_intent="backup")
            return self._client

    def _use_account_key(self, refused: Any) -> None:
        """No data role for this identity: the account key from now on, kept in memory only."""
        with self._client_lock:
            if self._client is not refused:
                return  # another thread switched already
            with _storage_errors(f"reading the keys of storage account {self.location.account}"):
                keys = self._arm.storage.storage_accounts.list_keys(
                    self._arm.group, self.location.account
                ).keys_property
            credential = {"account_name": self.location.account, "account_key": keys[0].value}
            self._client = self._new_client(credential)
            self._settled = True

    def _authorized(self, call: Callable[[], T]) -> T:
        """Run `call`, which makes its requests with `self.client`. Whether Entra ID will do is
        learnt from the first request that answers (no request spent on asking first): a 401 or
        403 before any request passed switches to the account key, and `call` runs again."""
        if self._settled:
            return call()
        tried = self.client
        try:
            result = call()
        except OperationError as error:
            status = _status(error.__cause__) if error.__cause__ else None
            refused = status == 401 or status == 403
            if self._settled or not refused:
                self._settled = True
                raise
            self._use_account_key(tried)
            return call()
        except BaseException:
            self._settled = True  # the service answered (e.g. not found): the token was taken
            raise
        self._settled = True
        return result

    def _read_share_properties(self) -> None:
        with _storage_errors(f"reading {self.describe()}"):
            self.client.get_share_properties()

    def _file(self, path: str) -> Any:
        return self.client.get_file_client(path)

    # -- the Share protocol ------------------------------------------------------------------

    def describe(self) -> str:
        return f"Azure Files share {self.location.account}/{self.location.share}"

    @_authorizing
    def exists(self, path: str) -> bool:
        with _storage_errors(f"reading {path} on {self.describe()}"):
            return bool(self._file(path).exists())

    @_authorizing
    def read_bytes(self, path: str) -> bytes:
        from azure.core.exceptions import ResourceNotFoundError

        with _storage_errors(f"reading {path} on {self.describe()}"):
            try:
                return bytes(self._file(path).download_file().readall())
            except ResourceNotFoundError as error:
                raise FileNotFoundError(f"{self.describe()}: {path}") from error

    def _make_folders(self, path: str) -> None:
        """Create the folders `path` needs, deepest first: the folder a new file goes into is
        usually the only one missing (a new `objects/<xx>/`), so one request does."""
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

        folder = dirname(path)
        missing: list[str] = []
        while folder not in self._folders:
            try:
                self.client.get_directory_client(folder).create_directory()
            except ResourceExistsError:
                pass
            except ResourceNotFoundError as error:
                if _error_code(error) != "ParentNotFound":
                    raise
                missing.append(folder)
                folder = dirname(folder)
                continue
            self._folders.add(folder)
            break
        for name in reversed(missing):
            with suppress(ResourceExistsError):
                self.client.get_directory_client(name).create_directory()
            self._folders.add(name)

    def _temporary_beside(self, path: str) -> Any:
        return self._file(self._temporary_path_beside(path))

    @staticmethod
    def _temporary_path_beside(path: str) -> str:
        folder = dirname(path)
        name = f"{TEMPORARY_PREFIX}{secrets.token_hex(6)}"
        return f"{folder}/{name}" if folder else name

    def _in_folder(self, path: str, create: Any) -> None:
        """`create()` a file beside `path`; its folders are made only when the service says a
        parent is missing (most writes go to folders that exist: no request spent on them)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            create()
        except ResourceNotFoundError as error:
            if _error_code(error) != "ParentNotFound":
                raise
            self._make_folders(path)
            create()

    def _upload_temporary(self, path: str, data: bytes) -> Any:
        temporary = self._temporary_beside(path)
        self._in_folder(path, lambda: _upload_whole(temporary, data))
        return temporary

    @_authorizing
    def write_bytes(self, path: str, data: bytes) -> None:
        from azure.core.exceptions import HttpResponseError

        lease = self._leases.get(path)
        with _storage_errors(f"writing {path} on {self.describe()}"):
            temporary = self._upload_temporary(path, data)
            try:
                temporary.rename_file(path, overwrite=True, destination_lease=lease)
            except HttpResponseError as error:
                temporary.delete_file()
                if _status(error) == 412:  # someone else's lease: this client lost the lock
                    raise PermissionError(
                        f"{path} on {self.describe()} is leased by another client"
                    ) from error
                raise
            if lease is not None:  # the replaced file's lease went with it: take it again
                self._file(path).acquire_lease(lease_id=lease)

    @_authorizing
    def write_in_place(self, path: str, data: bytes) -> None:
        with _storage_errors(f"writing {path} on {self.describe()}"):
            file = self._file(path)
            self._in_folder(path, lambda: _upload_whole(file, data))

    @_authorizing
    def create_exclusive(self, path: str, data: bytes) -> bool:
        from azure.core.exceptions import ResourceExistsError

        with _storage_errors(f"creating {path} on {self.describe()}"):
            temporary = self._upload_temporary(path, data)
            try:
                created = temporary.rename_file(path, overwrite=False)
            except ResourceExistsError:
                temporary.delete_file()
                return False
            self._leases[path] = created.acquire_lease().id
            return True

    @_authorizing
    def release_exclusive(self, path: str) -> None:
        """Delete with this client's lease: refused (412) once another client broke it and took
        the file over, and then left alone."""
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        lease = self._leases.pop(path, None)
        if lease is None:
            return
        with _storage_errors(f"deleting {path} on {self.describe()}"):
            try:
                self._file(path).delete_file(lease=lease)
            except ResourceNotFoundError:
                return
            except HttpResponseError as error:
                if _status(error) != 412:
                    raise

    @_authorizing
    def delete(self, path: str) -> None:
        """Delete a file; a lease another client holds is broken first (deploy_lock deletes
        someone else's lock only once it is stale, or on --break-lock)."""
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        file = self._file(path)
        lease = self._leases.pop(path, None)
        with _storage_errors(f"deleting {path} on {self.describe()}"):
            try:
                file.delete_file(lease=lease)
            except ResourceNotFoundError:
                return
            except HttpResponseError as error:
                if _status(error) != 412:
                    raise
                from azure.storage.fileshare import ShareLeaseClient

                ShareLeaseClient(file).break_lease()
                try:
                    file.delete_file()
                except ResourceNotFoundError:
                    return

    @_authorizing
    def delete_empty_folder(self, path: str) -> bool:
        """Delete a folder if it is empty; False when it holds something or is missing."""
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        with _storage_errors(f"deleting folder {path} on {self.describe()}"):
            try:
                self.client.get_directory_client(path).delete_directory()
            except ResourceNotFoundError:
                return False
            except HttpResponseError as error:
                if _error_code(error) != "DirectoryNotEmpty":
                    raise
                return False
        return True

    def list_files(self, prefix: str) -> Iterator[str]:
        from azure.core.exceptions import ResourceNotFoundError

        if not self._settled:  # a listing answers as it is read: settle the credential first
            self._authorized(self._read_share_properties)

        with _storage_errors(f"listing {prefix} on {self.describe()}"):
            folders = [prefix.strip("/")]
            while folders:
                folder = folders.pop()
                entries = self.client.get_directory_client(folder).list_directories_and_files()
                try:
                    for entry in sorted(entries, key=lambda e: str(e.name)):
                        path = f"{folder}/{entry.name}" if folder else str(entry.name)
                        if entry.is_directory:
                            folders.append(path)
                        else:
                            yield path
                except ResourceNotFoundError:
                    continue

    @_authorizing
    def holds(self, path: str, size: int, sha256: str) -> bool:
        """One properties request gives the size and, when `open_upload` wrote the file, its
        SHA-256 from the metadata.

        Sound because the recorded hash is of the source bytes the upload sent, and the service
        stored each range only after checking its Content-MD5, so the file holds exactly those
        bytes; and the hash counts only while the file's last write time is still the one
        recorded beside it: any later write (a Put Range, a rewrite over SMB, which keeps the
        metadata) moves that time, and a rewrite through REST (`az storage file upload`) drops
        the metadata. Otherwise, and for files other tools put there, the content is read back
        as a stream (what is stored, not what was sent)."""
        from azure.core.exceptions import ResourceNotFoundError

        with _storage_errors(f"reading {path} on {self.describe()}"):
            try:
                properties = self._file(path).get_file_properties()
            except ResourceNotFoundError:
                return False
        if int(properties.size) != size:
            return False
        recorded = _recorded_sha256(properties)
        if recorded is not None:
            return recorded == sha256
        digest = hashlib.sha256()
        with _storage_errors(f"reading {path} on {self.describe()}"):
            for block in self._file(path).download_file(max_concurrency=4).chunks():
                digest.update(block)
        return digest.hexdigest() == sha256

    # -- uploads in ranges, resumable --------------------------------------------------------

    @_authorizing
    def open_upload(self, path: str, source: UploadSource) -> AzureUpload:
        """A new temporary beside `path`, or the stale one an interrupted upload of the same
        source file left (claimed by rewriting its writer), resumed from the ranges it holds."""
        with _storage_errors(f"creating {path} on {self.describe()}"):
            resumable = self._resumable(dirname(path), source)
            if resumable is not None:
                temporary_path, properties = resumable
                temporary = self._file(temporary_path)
                temporary.set_file_metadata(_upload_metadata(source))
                stored = _merged(temporary.list_ranges())
                write_time = properties.last_write_time
            else:
                temporary_path = self._temporary_path_beside(path)
                temporary = self._file(temporary_path)
                write_time = datetime.now(UTC).replace(microsecond=0)
                metadata = _upload_metadata(source)
                self._in_folder(
                    path,
                    lambda: temporary.create_file(
                        source.size, file_last_write_time=write_time, metadata=metadata
                    ),
                )
                stored = []
        _writing(temporary_path, True)
        return AzureUpload(self, path, temporary, temporary_path, source.sha256, write_time, stored)

    def _resumable(self, folder: str, source: UploadSource) -> tuple[str, Any] | None:
        """A stale temporary in `folder` that an upload of this very source file (same host,
        same path, same size and SHA-256) left, the file unchanged since that upload began
        hashing it: each range it stored holds these bytes (its MD5 was checked on arrival)."""
        for temporary_path, properties in self._temporaries(folder):
            metadata = properties.metadata or {}
            try:
                hashed_at = float(metadata.get(META_HASHED_AT, ""))
            except ValueError:
                continue
            if (
                int(properties.size) == source.size
                and metadata.get(META_SHA256) == source.sha256
                and metadata.get(META_SOURCE) == _source_id(source)
                and source.modified < hashed_at
                and self._stale(temporary_path, properties)
            ):
                return temporary_path, properties
        return None

    @_authorizing
    def discard_stale_uploads(self, folder: str) -> int:
        """Delete the temporaries of `open_upload` in `folder` that no running upload writes:
        its writer's pid is gone from this host (or it is this process's own aborted one), or
        nothing wrote to it for STALE_UPLOAD_SECONDS (a writer on another machine)."""
        from azure.core.exceptions import ResourceNotFoundError

        removed = 0
        with _storage_errors(f"removing stale uploads in {folder} on {self.describe()}"):
            for temporary_path, properties in self._temporaries(folder):
                if self._stale(temporary_path, properties):
                    with suppress(ResourceNotFoundError):
                        self._file(temporary_path).delete_file()
                        removed += 1
        return removed

    def _temporaries(self, folder: str) -> Iterator[tuple[str, Any]]:
        """The upload temporaries in `folder` (none when it is missing) with their properties."""
        from azure.core.exceptions import ResourceNotFoundError

        listing = self.client.get_directory_client(folder).list_directories_and_files(
            name_starts_with=TEMPORARY_PREFIX
        )
        try:
            names = [str(e.name) for e in listing if not e.is_directory]
        except ResourceNotFoundError:
            return
        for name in names:
            temporary_path = f"{folder}/{name}" if folder else name
            try:
                yield temporary_path, self._file(temporary_path).get_file_properties()
            except ResourceNotFoundError:
                continue  # committed or removed meanwhile

    def _stale(self, temporary_path: str, properties: Any) -> bool:
        metadata = properties.metadata or {}
        if metadata.get(META_HOST) == socket.gethostname():
            try:
                pid = int(metadata.get(META_PID, ""))
            except ValueError:
                pid = 0
            if pid == os.getpid():
                with _WRITING_LOCK:
                    return temporary_path not in _WRITING
            if pid and not pid_alive(pid):
                return True
        idle = datetime.now(UTC) - properties.last_modified
        return idle.total_seconds() > STALE_UPLOAD_SECONDS


def _source_id(source: UploadSource) -> str:
    """The source file on this host, as metadata can carry it (ASCII, whatever the path)."""
    named = f"{socket.gethostname()}\0{source.local.resolve()}"
    return hashlib.sha256(named.encode()).hexdigest()[:32]


def _upload_metadata(source: UploadSource) -> dict[str, str]:
    return {
        META_SHA256: source.sha256,
        META_HOST: socket.gethostname(),
        META_PID: str(os.getpid()),
        META_SOURCE: _source_id(source),
        META_HASHED_AT: repr(source.hashed_at),
    }


def _recorded_sha256(properties: Any) -> str | None:
    """The SHA-256 that `AzureUpload.commit` recorded, if the file was not written since."""
    metadata = properties.metadata or {}
    recorded, hashed_write = metadata.get(META_SHA256), metadata.get(META_HASHED_WRITE)
    if not recorded or not hashed_write or properties.last_write_time is None:
        return None
    try:
        written = datetime.fromisoformat(hashed_write)
    except ValueError:
        return None
    return str(recorded) if written == properties.last_write_time else None

"""`aca-infer upload-model`: a base model and its LoRA adapter onto the share, checked, resumable.

1. The adapter must fit the base: `adapter_config.json`'s `base_model_name_or_path` names the
   base folder (or the base config's `_name_or_path`), and every `target_modules` entry is a
   module of the base (module names read from the safetensors headers or index, never the
   weights; a table of well-known architectures when the base has no safetensors).
2. Files go to the share's AI Toolkit layout: `model-cache/<org>/<base folder>` and
   `models/<name>/adapter` (name default `qlora/qlora/gpu_model`, the AI Toolkit's own path).
3. Each file is hashed first (SHA-256, streamed: it decides what to upload and names the
   content), then written in ranges of `CHUNK_BYTES` by `WORKERS` threads: read again in order
   and hashed again as it is read, with at most WORKERS ranges read ahead of those sent, so
   memory stays near 2 x WORKERS x CHUNK_BYTES whatever the file size. A file appears under its
   name only once whole (`Share.open_upload`); if the source changed while it was sent (the two
   hashes differ), the upload is refused.
4. A re-run uploads only what is missing or different: a file of the same size whose hash on the
   share (`Share.holds`: on Azure the hash recorded at upload, over bytes the service checked
   range by range with Content-MD5, never a read-back) equals the local one is left alone; after
   upload each file is verified the same way (size and hash under its name). An interrupted
   file never appears under its name: on Azure its temporary is resumed from the ranges already
   stored (only the missing ones are sent) when the source file has not been written since that
   upload began hashing it, and the temporaries of other interrupted uploads are removed from
   the folders written to (`Share.discard_stale_uploads`), never one a running upload writes.
5. The folders and files uploaded are recorded on the share (`provision/upload_record.py`):
   `down --purge` deletes exactly those.
6. `modelPath`/`adapterPath` are kept for the target (as `--set` keeps them); the next
   `aca-infer up` makes them live.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from posixpath import dirname
from typing import Any

from provision.errors import InputError, OperationError
from provision.share import Share, UploadSource
from provision.target_state import TargetState, updated
from provision.targets import Progress, Target
from provision.upload_record import record_upload, uploaded_folders

CHUNK_BYTES = 4 << 20  # one Azure Put Range: a resumed upload skips exactly the ranges stored
WORKERS = 4
HASH_BLOCK = 1 << 20
DEFAULT_ADAPTER_NAME = "qlora/qlora/gpu_model"

# Module names of well-known architectures, for a base without safetensors to read them from.
KNOWN_MODULES = {
    "phi3": {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"},
    "phi": {"q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"},
    "llama": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "mistral": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "qwen2": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
}

Advance = Callable[[int], None]


@dataclass(frozen=True)
class UploadModelSettings:
    base_dir: Path
    adapter_dir: Path
    name: str | None = None
    workers: int = WORKERS
    chunk_bytes: int = CHUNK_BYTES

    def __post_init__(self) -> None:
        if not (self.base_dir / "config.json").is_file():
            raise InputError(
                f"--base {self.base_dir}: no config.json there; give the base model's folder"
            )
        if not (self.adapter_dir / "adapter_config.json").is_file():
            raise InputError(
                f"--adapter {self.adapter_dir}: no adapter_config.json there; give the LoRA "
                "adapter's folder"
            )
        if self.name is not None:
            path = PurePosixPath(self.name)
            if not self.name or path.is_absolute() or ".." in path.parts or "\\" in self.name:
                raise InputError(f"--name {self.name!r}: give a relative name, e.g. my-finetune")


@dataclass(frozen=True)
class UploadModelResult:
    target: str
    model_path: str
    adapter_path: str
    uploaded: int
    unchanged: int
    bytes_uploaded: int
    bytes_resumed: int  # already on the share from an interrupted upload: not sent again
    stale_uploads_removed: int
    verified: int
    next_step: str


def _read_json(path: Path, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{flag} {path.parent}: {path.name} is not valid JSON ({error})") from None
    if not isinstance(value, dict):
        raise InputError(f"{flag} {path.parent}: {path.name} is not a JSON object")
    return value


def _safetensors_keys(file: Path) -> list[str]:
    # The header is a little-endian u64 length, then that many bytes of JSON: no weights read.
    with file.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    return [key for key in header if key != "__metadata__"]


def base_module_paths(base_dir: Path) -> set[str] | None:
    """Dotted paths of the base model's modules (weight names without `.weight`/`.bias`);
    None when the folder holds no safetensors index or file to read them from."""
    index = base_dir / "model.safetensors.index.json"
    if index.is_file():
        keys: Iterable[str] = json.loads(index.read_text())["weight_map"]
    else:
        files = sorted(base_dir.glob("*.safetensors"))
        if not files:
            return None
        keys = [key for file in files for key in _safetensors_keys(file)]
    return {key.rsplit(".", 1)[0] for key in keys if "." in key}


def _base_names(base_dir: Path, config: dict[str, Any]) -> set[str]:
    names = {base_dir.resolve().name.lower()}
    declared = str(config.get("_name_or_path") or "").rstrip("/")
    if declared:
        names.add(declared.rsplit("/", 1)[-1].lower())
    return names


def check_adapter_fits(base_dir: Path, adapter_dir: Path) -> str:
    """Raise InputError when the adapter was not made for this base; returns the org the base
    model comes from (its hub namespace), for the share layout."""
    config = _read_json(base_dir / "config.json", "--base")
    adapter = _read_json(adapter_dir / "adapter_config.json", "--adapter")
    architecture = ", ".join(config.get("architectures") or [str(config.get("model_type"))])
    expected = str(adapter.get("base_model_name_or_path") or "").rstrip("/")
    if expected and expected.rsplit("/", 1)[-1].lower() not in _base_names(base_dir, config):
        raise InputError(
            f"--adapter {adapter_dir}: its adapter_config.json names base model {expected!r}, "
            f"but --base {base_dir} is {base_dir.resolve().name} ({architecture}); pass the base "
            "model the adapter was trained on"
        )
    _check_target_modules(
        base_dir, adapter_dir, config, adapter.get("target_modules"), architecture
    )
    parts = expected.split("/")
    if len(parts) == 2 and not expected.startswith((".", "/")):
        return parts[0]
    declared = str(config.get("_name_or_path") or "").split("/")
    return declared[0] if len(declared) == 2 and declared[0] else "local"


def _check_target_modules(
    base_dir: Path, adapter_dir: Path, config: dict[str, Any], targets: Any, architecture: str
) -> None:
    if not targets or targets == "all-linear":
        return
    found = base_module_paths(base_dir)
    if found is not None:
        paths, leaves = found, {path.rsplit(".", 1)[-1] for path in found}
    else:
        known = KNOWN_MODULES.get(str(config.get("model_type")))
        if known is None:
            return  # nothing to check against; the server's load reports a mismatch
        paths, leaves = known, known
    if isinstance(targets, str):  # PEFT: a regular expression over the full module names
        if not any(re.fullmatch(targets, path) for path in paths):
            raise InputError(
                f"--adapter {adapter_dir}: target_modules {targets!r} matches no module of "
                f"the base model ({architecture}); its modules include {sorted(leaves)[:8]}"
            )
        return
    missing = sorted(str(t) for t in targets if str(t) not in leaves)
    if missing:
        raise InputError(
            f"--adapter {adapter_dir}: target_modules {missing} are not modules of the base "
            f"model at {base_dir} ({architecture}), whose modules include {sorted(leaves)[:8]}; "
            "the adapter was made for another architecture"
        )


def _shipped(directory: Path) -> list[Path]:
    return sorted(
        path
        for path in directory.rglob("*")
        if path.is_file()
        and not any(
            part.startswith(".") or part == "__pycache__"
            for part in path.relative_to(directory).parts
        )
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _settle(pending: set[Future[None]], keep: int) -> set[Future[None]]:
    """Wait until at most `keep` of the sends are running; a failed one raises here."""
    while len(pending) > keep:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for future in done:
            future.result()
    return pending


def _upload_file(
    share: Share,
    source: UploadSource,
    remote: str,
    settings: UploadModelSettings,
    advance: Advance,
) -> int:
    """Send what the share lacks of the source file; returns the bytes sent."""
    local, size = source.local, source.size
    upload = share.open_upload(remote, source)
    digest = hashlib.sha256()
    sent = 0

    def send(offset: int, data: bytes) -> None:
        upload.write_range(offset, data)
        advance(len(data))

    try:
        pending: set[Future[None]] = set()
        with (
            local.open("rb") as reader,
            ThreadPoolExecutor(settings.workers, thread_name_prefix="upload") as pool,
        ):
            try:
                for offset in range(0, size, settings.chunk_bytes):
                    data = reader.read(min(settings.chunk_bytes, size - offset))
                    digest.update(data)
                    if upload.stored(offset, len(data)):
                        advance(len(data))
                        continue
                    pending = _settle(pending, settings.workers)
                    pending.add(pool.submit(send, offset, data))
                    sent += len(data)
                _settle(pending, 0)
            finally:
                for future in pending:
                    future.cancel()
        if digest.hexdigest() != source.sha256:
            raise OperationError(
                f"{local} changed while it was uploaded; run upload-model again once it is final"
            )
        upload.commit()
    except BaseException:
        upload.abort()
        raise
    return sent


@dataclass
class _Tally:
    uploaded: int = 0
    unchanged: int = 0
    bytes_uploaded: int = 0
    bytes_resumed: int = 0
    stale_uploads_removed: int = 0
    verified: int = 0


def _upload_tree(
    share: Share,
    local_dir: Path,
    remote_dir: str,
    settings: UploadModelSettings,
    tally: _Tally,
    progress: Progress,
    advance: Advance,
) -> None:
    # Ours: what an earlier run wrote plus what this run writes. A file already there and equal
    # (e.g. the fine-tuning run's own base model) is not claimed, so --purge keeps it.
    ours = dict(uploaded_folders(share).get(remote_dir, {}))
    folders: set[str] = set()
    for local in _shipped(local_dir):
        relative = local.relative_to(local_dir).as_posix()
        remote = f"{remote_dir}/{relative}"
        folders.add(dirname(remote))
        found = local.stat()
        size, hashed_at = found.st_size, time.time()
        sha = file_sha256(local)
        if share.holds(remote, size, sha):
            tally.unchanged += 1
            advance(size)
            continue
        progress(f"upload {relative} ({size} bytes) to {remote_dir}")
        ours[relative] = size
        record_upload(share, remote_dir, ours)  # before the bytes: an interrupted file counts
        source = UploadSource(local, size, sha, found.st_mtime, hashed_at)
        sent = _upload_file(share, source, remote, settings, advance)
        if sent < size:
            progress(f"resumed {relative}: {size - sent} bytes were already on the share")
        if not share.holds(remote, size, sha):
            raise OperationError(
                f"{remote} on {share.describe()} does not match {local} after upload; rerun "
                "upload-model (it uploads only what is missing or different)"
            )
        tally.uploaded += 1
        tally.verified += 1
        tally.bytes_uploaded += sent
        tally.bytes_resumed += size - sent
    for folder in sorted(folders):
        removed = share.discard_stale_uploads(folder)
        if removed:
            progress(f"removed {removed} temporaries of interrupted uploads in {folder}")
        tally.stale_uploads_removed += removed


def total_bytes(settings: UploadModelSettings) -> int:
    return sum(
        p.stat().st_size for d in (settings.base_dir, settings.adapter_dir) for p in _shipped(d)
    )


def upload_model(
    target: Target,
    values: TargetState,
    settings: UploadModelSettings,
    progress: Progress,
    advance: Advance,
) -> UploadModelResult:
    org = check_adapter_fits(settings.base_dir, settings.adapter_dir)
    target.endpoint()  # raises when the target is not provisioned: nothing is copied then
    model_path = f"model-cache/{org}/{settings.base_dir.resolve().name}"
    adapter_path = f"models/{settings.name or DEFAULT_ADAPTER_NAME}/adapter"
    tally = _Tally()
    for local_dir, remote_dir in (
        (settings.base_dir, model_path),
        (settings.adapter_dir, adapter_path),
    ):
        _upload_tree(target.share, local_dir, remote_dir, settings, tally, progress, advance)
    values.save(updated(values.load(), {"modelPath": model_path, "adapterPath": adapter_path}))
    return UploadModelResult(
        target=target.name,
        model_path=model_path,
        adapter_path=adapter_path,
        uploaded=tally.uploaded,
        unchanged=tally.unchanged,
        bytes_uploaded=tally.bytes_uploaded,
        bytes_resumed=tally.bytes_resumed,
        stale_uploads_removed=tally.stale_uploads_removed,
        verified=tally.verified,
        next_step=f"aca-infer up --target {target.name}",
    )

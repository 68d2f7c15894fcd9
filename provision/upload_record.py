"""What `aca-infer upload-model` put on a share, recorded on the share itself (`app/uploads.json`).

`down --purge` deletes exactly these files and nothing else of the model areas: modelPath and
adapterPath cannot tell (`--set` writes them too, and a reused share holds the fine-tuning run's
own model). The record lives on the share, so it serves both targets and outlives a lost local
state dir; it is written atomically (`Share.write_bytes`), and a re-upload replaces its folder's
entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from provision.release import APP_DIR
from provision.share import Share, read_bytes_or_none

UPLOADS = f"{APP_DIR}/uploads.json"
UPLOADED_REASON = "uploaded by aca-infer upload-model"
NOT_UPLOADED_REASON = (
    "not uploaded by aca-infer: files of others (e.g. the fine-tuning run's model); never deleted"
)


def uploaded_folders(share: Share) -> dict[str, dict[str, int]]:
    """{folder: {file relative to the folder: size}} as upload-model recorded them; an
    unreadable record deletes nothing: safer than guessing."""
    data = read_bytes_or_none(share, UPLOADS)
    if data is None:
        return {}
    try:
        folders = json.loads(data)["folders"]
        return {
            str(folder): {str(name): int(size) for name, size in files.items()}
            for folder, files in folders.items()
            if isinstance(files, dict)
        }
    except (ValueError, KeyError, TypeError, AttributeError):  # not JSON, not UTF-8, not ours
        return {}


def record_upload(share: Share, folder: str, files: Mapping[str, int]) -> None:
    recorded = uploaded_folders(share)
    recorded[folder] = dict(sorted(files.items()))
    data = json.dumps({"folders": dict(sorted(recorded.items()))}, indent=2) + "\n"
    share.write_bytes(UPLOADS, data.encode())


@dataclass(frozen=True)
class PurgeSplit:
    uploaded: tuple[str, ...]  # folders upload-model filled
    uploaded_files: tuple[str, ...]  # their files now on the share (share-relative)
    others: tuple[str, ...]  # folders holding anything else outside the app area


def purge_split(share: Share) -> PurgeSplit:
    """The share outside `app/`: the upload-model folders (to delete with --purge) and the
    folders of every other file (kept)."""
    recorded = uploaded_folders(share)
    ours = {f"{folder}/{name}" for folder, files in recorded.items() for name in files}
    present = [path for path in share.list_files("") if not path.startswith(f"{APP_DIR}/")]
    uploaded_files = tuple(path for path in present if path in ours)
    others = tuple(sorted({_parent(path) for path in present if path not in ours}))
    folders = tuple(sorted(f for f in recorded if any(p.startswith(f"{f}/") for p in present)))
    return PurgeSplit(folders, uploaded_files, others)


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else path

"""`aca-infer upload-model --target azure` through the Azure double: every range checked by its
Content-MD5, the hash kept in the file's metadata instead of a read-back, and an upload killed
halfway resumed from the ranges already stored, leaving no temporary behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provision.azure.share import MD5_ATTEMPTS
from tests.azure_double.apps_testing import wait_for
from tests.azure_double.files import corrupt_uploads
from tests.azure_double.server import AzureDouble
from tests.provision.azure.test_deploy_double import DeploySession, deploy_session
from tests.provision.test_model_upload import make_adapter, make_base

WEIGHTS_MIB = 48  # twelve 4 MiB ranges: still uploading when the kill test strikes


@pytest.fixture
def session(azure_double: AzureDouble, tmp_path: Path) -> Iterator[DeploySession]:
    yield deploy_session(azure_double, tmp_path)


@pytest.fixture
def model(tmp_path: Path) -> tuple[Path, Path]:
    base = make_base(tmp_path / "src")
    block = os.urandom(1 << 20)
    with (base / "weights.bin").open("wb") as weights:
        for index in range(WEIGHTS_MIB):
            weights.write(bytes([index]) + block[1:])
    adapter = make_adapter(
        tmp_path / "src", "microsoft/Phi-3-mini-4k-instruct", ["qkv_proj", "o_proj"]
    )
    return base, adapter


def arguments(model: tuple[Path, Path]) -> list[str]:
    base, adapter = model
    return ["upload-model", "--target", "azure", "--base", str(base), "--adapter", str(adapter)]


def upload(session: DeploySession, model: tuple[Path, Path]) -> dict[str, Any]:
    result = session.aca("--output", "json", *arguments(model))
    assert result.exit_code == 0, result.stderr
    value: dict[str, Any] = json.loads(result.stdout)
    return value


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".upload-"))


def downloads(session: DeploySession) -> list[str]:
    """Reads of file content (GET without comp): what a read-back verification would make."""
    return [
        r.path
        for r in session.double.requests
        if r.listener == "files" and r.method == "GET" and "comp" not in r.query
        and "/model-cache/" in r.path
    ]  # fmt: skip


def test_uploads_are_verified_and_reruns_decided_without_reading_the_share_back(
    session: DeploySession, model: tuple[Path, Path]
) -> None:
    first = upload(session, model)
    assert first["verified"] == first["uploaded"] == 6
    placed = session.share_root / first["model_path"] / "weights.bin"
    assert placed.read_bytes() == (model[0] / "weights.bin").read_bytes()
    again = upload(session, model)
    assert (again["uploaded"], again["unchanged"], again["bytes_uploaded"]) == (0, 6, 0)
    assert downloads(session) == []


def test_a_file_rewritten_behind_the_service_is_read_back_and_uploaded_again(
    session: DeploySession, model: tuple[Path, Path]
) -> None:
    first = upload(session, model)
    # Another writer (a replica's SMB mount) rewrites it in place: same size, metadata kept.
    placed = session.share_root / first["model_path"] / "weights.bin"
    with placed.open("r+b") as handle:
        handle.write(b"rewritten")
    fixed = upload(session, model)
    assert (fixed["uploaded"], fixed["unchanged"]) == (1, 5)
    assert downloads(session)  # its recorded hash no longer counted: it was read back
    assert placed.read_bytes() == (model[0] / "weights.bin").read_bytes()


def test_a_range_corrupted_in_flight_is_refused_and_sent_again(
    session: DeploySession, model: tuple[Path, Path]
) -> None:
    fault = corrupt_uploads(session.double, path=r"/model-cache/.*/\.upload-", times=1)
    done = upload(session, model)
    assert fault.hits == 1
    refused = [
        r for r in session.double.requests if r.query.get("comp") == "range" and r.status == 400
    ]
    assert len(refused) == 1
    placed = session.share_root / done["model_path"] / "weights.bin"
    assert placed.read_bytes() == (model[0] / "weights.bin").read_bytes()


def test_ranges_corrupted_every_time_fail_exit_4_and_no_file_appears(
    session: DeploySession, model: tuple[Path, Path]
) -> None:
    # Every attempt at the first file's range is corrupted.
    corrupt_uploads(session.double, path=r"/model-cache/.*/\.upload-", times=MD5_ATTEMPTS)
    failed = session.aca("--output", "json", *arguments(model))
    assert failed.exit_code == 4, failed.stderr
    assert "Md5Mismatch" in failed.stderr and "Traceback" not in failed.stderr
    folder = session.share_root / "model-cache/microsoft/Phi-3-mini-4k-instruct"
    assert (folder / "config.json").read_text() == "{}"  # the share's own: never replaced
    done = upload(session, model)
    assert done["uploaded"] == 6
    assert temporaries(folder) == []


def kill_halfway(session: DeploySession, model: tuple[Path, Path]) -> None:
    """Run upload-model in a child process and SIGKILL it once two ranges of the weights are
    stored (their temporary left on the share, with the killed pid)."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "provision", "--project-dir", str(session.project)),
            *("--output", "json", *arguments(model)),
        ],
        env={**os.environ, **session.env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def stored_ranges() -> int:
        return sum(
            1
            for r in session.double.requests
            if r.query.get("comp") == "range" and r.status == 201
            and r.body_size == 4 << 20
        )  # fmt: skip

    try:
        wait_for(lambda: stored_ranges() >= 2, timeout=120, interval=0.005)
    finally:
        process.kill()
        process.wait()


def test_an_upload_killed_halfway_resumes_its_ranges_and_leaves_no_temporary(
    session: DeploySession, model: tuple[Path, Path]
) -> None:
    folder = session.share_root / "model-cache/microsoft/Phi-3-mini-4k-instruct"
    # A temporary some older upload left long ago: removed by the next run.
    old = folder / ".upload-0123456789ab"
    old.write_bytes(b"left over")
    os.utime(old, (1_000_000_000, 1_000_000_000))

    kill_halfway(session, model)
    size = (model[0] / "weights.bin").stat().st_size
    everything = sum(p.stat().st_size for d in model for p in d.iterdir())
    assert not (folder / "weights.bin").exists(), "the kill came too late: the file was whole"
    assert len(temporaries(folder)) == 2  # the killed upload's and the old one

    resumed = upload(session, model)
    assert 2 * (4 << 20) <= resumed["bytes_resumed"] < size
    assert resumed["bytes_uploaded"] <= everything - resumed["bytes_resumed"]
    assert resumed["stale_uploads_removed"] == 1  # the old one; the killed one was resumed
    assert (folder / "weights.bin").read_bytes() == (model[0] / "weights.bin").read_bytes()
    assert temporaries(folder) == []


def test_a_source_written_since_the_killed_upload_is_sent_whole(
    session: DeploySession, model: tuple[Path, Path]
) -> None:
    folder = session.share_root / "model-cache/microsoft/Phi-3-mini-4k-instruct"
    kill_halfway(session, model)
    # Rewritten after the killed upload began hashing it (here with the same bytes): the
    # ranges it stored cannot be told to be of the file as it is now.
    weights = model[0] / "weights.bin"
    weights.write_bytes(weights.read_bytes())

    again = upload(session, model)
    assert again["bytes_resumed"] == 0
    assert again["stale_uploads_removed"] == 1  # the killed upload's temporary
    assert (folder / "weights.bin").read_bytes() == weights.read_bytes()
    assert temporaries(folder) == []

"""`aca-infer deploy --target azure` through the Azure double: the real storage and Container Apps
SDK clients against an Azure Files share and a container app whose revisions run real replica
processes (the stand-in app) from that share."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provision.azure.naming import ai_toolkit_names, resource_group_id
from provision.azure.uniquestring import unique_string
from provision.local.share import LocalShare
from provision.release import sha256_bytes
from provision.release_history import read_current
from tests.azure_double.faults import Fault
from tests.azure_double.files import corrupt_uploads, drop_uploads, hold_lease
from tests.azure_double.server import AzureDouble
from tests.provision.app_trees import apply_tree, local_tree, remote_tree, trees
from tests.provision.azure.double_project import Session
from tests.provision.azure.projects import copy_templates
from tests.provision.standin_app import write_model_files, write_standin_app
from tests.provision.test_model_upload import make_adapter, make_base

GROUP = "rg-deploy"
LOCATION = "westus3"
TIMEOUT = "120"
IMAGE = "ghcr.io/example/aca-infer-serve:1"
SHIPPED = 4  # __init__.py, __main__.py, the release's runtime record, the bootstrap


def live_release(session: DeploySession) -> str | None:
    return read_current(LocalShare(session.share_root))


@contextmanager
def health_during(session: DeploySession) -> Iterator[list[tuple[int, str]]]:
    """Ask the public endpoint's /health in a loop while the block runs; each answer is
    (status, the release it names) on 200, else (status, the start of its body)."""
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def loop() -> None:
        endpoint = session.config()["ACA_APP_ENDPOINT"]
        with httpx.Client(verify=session.tls(), timeout=30) as client:
            while not stop.is_set():
                response = client.get(f"{endpoint}/health")
                ok = response.status_code == 200
                said = response.json()["release"] if ok else response.text[:100]
                answers.append((response.status_code, str(said)))

    looping = threading.Thread(target=loop)
    looping.start()
    try:
        yield answers
    finally:
        stop.set()
        looping.join()


class DeploySession(Session):
    names: dict[str, str]

    @property
    def share_root(self) -> Path:
        return self.double.share_root(self.names["storageAccountName"], self.names["fileShareName"])

    @property
    def app_dir(self) -> Path:
        return self.project / "inference_app"

    def deploy(self, *arguments: str) -> Result:
        return self.aca("--output", "json", "deploy", "--target", "azure", *arguments)

    def deployed(self, *arguments: str) -> dict[str, Any]:
        result = self.deploy("--ready-timeout", TIMEOUT, *arguments)
        assert result.exit_code == 0, result.stderr
        value: dict[str, Any] = json.loads(result.stdout)
        return value

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.double.ca_bundle))

    def storage_requests(self) -> int:
        return sum(1 for r in self.double.requests if r.listener == "files")

    def health(self, client: httpx.Client) -> dict[str, Any]:
        endpoint = self.config()["ACA_APP_ENDPOINT"]
        response = client.get(f"{endpoint}/health")
        assert response.status_code == 200, response.text
        value: dict[str, Any] = response.json()
        return value


def deploy_session(
    azure_double: AzureDouble, tmp_path: Path, image: str | None = IMAGE
) -> DeploySession:
    """A provisioned project (the stand-in app seeded, the model files on the share). `image`:
    the replica's image (None: the default public image, for which deploy brings wheels)."""
    project = tmp_path / "project"
    copy_templates(project)
    write_standin_app(project)
    azure_double.config.extra["probe_time_scale"] = 0.02
    session = DeploySession(azure_double, project)
    suffix = unique_string(resource_group_id(azure_double.subscription_id, GROUP))[:5]
    session.names = ai_toolkit_names(suffix)
    session.seed_app(session.names["storageAccountName"], session.names["fileShareName"])
    # By default an image that brings the server's packages: no wheelhouse to put on the share.
    chosen = () if image is None else ("--set", f"containerImage={image}")
    result = session.provision("-g", GROUP, "-l", LOCATION, *chosen)
    assert result.exit_code == 0, result.stderr
    write_model_files(session.share_root)
    return session


@pytest.fixture
def session(azure_double: AzureDouble, tmp_path: Path) -> Iterator[DeploySession]:
    yield deploy_session(azure_double, tmp_path)


# The stand-in server's own files stay in every edited tree, so each release can get ready.
SERVER_FILES = frozenset({"__init__.py", "__main__.py"})


# One share and one app for all examples: each sequence goes on from what the last one left.
@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(trees, min_size=1, max_size=3))
def test_after_any_sequence_of_edits_and_deploys_the_live_release_equals_the_local_tree(
    session: DeploySession, edits: list[dict[str, str]]
) -> None:
    for tree in edits:
        apply_tree(session.app_dir, tree, keep=SERVER_FILES)
        done = session.deployed()
        # Read back as the replica's mount sees the share: the double's store of it.
        assert remote_tree(LocalShare(session.share_root)) == local_tree(session.app_dir)
        with httpx.Client(verify=session.tls()) as client:
            assert session.health(client)["release"] == done["release"]


def test_first_deploy_then_a_no_op_then_one_changed_file(session: DeploySession) -> None:
    first = session.deployed()
    assert first["ready"] and first["previous_release"] is None
    assert first["uploaded"] == SHIPPED and first["bytes_uploaded"] > 0
    with httpx.Client(verify=session.tls()) as client:
        assert session.health(client)["release"] == first["release"]

    again = session.deployed()
    assert again["release"] == first["release"]
    assert again["uploaded"] == 0 and again["bytes_uploaded"] == 0

    main = session.app_dir / "__main__.py"
    main.write_text(main.read_text() + "\n# changed\n")
    changed = session.deployed()
    assert changed["release"] != first["release"]
    assert changed["previous_release"] == first["release"]
    assert changed["uploaded"] == 1 and changed["bytes_uploaded"] == main.stat().st_size
    with httpx.Client(verify=session.tls()) as client:
        assert session.health(client)["release"] == changed["release"]
    assert live_release(session) == changed["release"]


def test_a_release_that_raises_at_import_exits_5_and_the_old_one_keeps_serving(
    session: DeploySession,
) -> None:
    good = session.deployed()
    main = session.app_dir / "__main__.py"
    main.write_text('raise RuntimeError("broken at import")\n' + main.read_text())
    with health_during(session) as answers:
        result = session.deploy("--ready-timeout", "60")
    assert result.exit_code == 5, result.stderr
    assert "broken at import" in result.stderr  # the failed replica's console, shown
    assert f"release {good['release']} kept serving" in result.stderr
    assert "Traceback (most recent call last)" not in result.stderr.split("console")[0]
    assert [answer for answer in answers if answer != (200, good["release"])] == []
    assert live_release(session) == good["release"]
    latest = _app(session)["properties"]["latestRevisionName"]
    assert any(r["name"] == latest for r in _revisions(session)), "the failed revision exists"


def _app(session: DeploySession) -> dict[str, Any]:
    app = session.double.store.get(
        f"{session.group_id(GROUP)}/providers/Microsoft.App/containerApps/"
        f"{session.names['acaAppName']}".lower()
    )
    assert app is not None
    return app


def _revisions(session: DeploySession) -> list[dict[str, Any]]:
    return list(session.double.store.list(_app(session)["id"].lower() + "/revisions/"))


def test_after_a_failed_roll_out_the_tree_that_serves_is_found_live_at_once(
    session: DeploySession,
) -> None:
    good = session.deployed()
    main = session.app_dir / "__main__.py"
    original = main.read_text()
    main.write_text('raise RuntimeError("broken at import")\n' + original)
    assert session.deploy("--ready-timeout", "60").exit_code == 5
    main.write_text(original)  # the user puts the working code back
    revisions = len(_revisions(session))
    again = session.deployed()
    # The app's template still names the failed revision; the one serving is what counts.
    assert (again["release"], again["restarted"]) == (good["release"], False)
    assert len(_revisions(session)) == revisions


def test_a_client_loop_during_a_deploy_sees_no_failure(session: DeploySession) -> None:
    first = session.deployed()
    main = session.app_dir / "__main__.py"
    main.write_text(main.read_text() + "\n# next\n")
    with health_during(session) as answers:
        second = session.deployed()
        with httpx.Client(verify=session.tls()) as client:
            while session.health(client)["release"] != second["release"]:
                pass
    assert [answer for answer in answers if answer[0] != 200] == []
    assert {release for _, release in answers} == {first["release"], second["release"]}


def test_an_upload_whose_connection_drops_is_resumed(session: DeploySession) -> None:
    fault = drop_uploads(session.double.faults, path=r"/app/objects/", read_bytes=16, times=1)
    first = session.deployed()
    assert fault.hits == 1
    for path, entry in json.loads(
        (session.share_root / f"app/releases/{first['release']}.json").read_text()
    )["files"].items():
        body = session.share_root / f"app/objects/{entry['sha256'][:2]}/{entry['sha256']}"
        assert body.stat().st_size == entry["size"], path


def test_bytes_corrupted_in_flight_are_refused_and_sent_again(session: DeploySession) -> None:
    fault = corrupt_uploads(session.double, path=r"/app/(objects|releases)/", times=2)
    first = session.deployed()
    assert fault.hits == 2
    manifest = session.share_root / f"app/releases/{first['release']}.json"
    assert "r-" + sha256_bytes(manifest.read_bytes())[:12] == first["release"]
    for entry in json.loads(manifest.read_text())["files"].values():
        body = session.share_root / f"app/objects/{entry['sha256'][:2]}/{entry['sha256']}"
        assert sha256_bytes(body.read_bytes()) == entry["sha256"]


def test_uploads_that_keep_failing_exit_4_and_the_next_deploy_converges(
    session: DeploySession,
) -> None:
    drop_uploads(session.double.faults, path=r"/app/objects/", read_bytes=16, times=100)
    failed = session.deploy("--ready-timeout", TIMEOUT)
    assert failed.exit_code == 4, failed.stderr
    assert "Traceback" not in failed.stderr
    session.double.faults.clear()
    # The lock the failed deploy held was released: no --break-lock needed.
    done = session.deployed()
    assert done["ready"]
    assert live_release(session) == done["release"]


def _grow(app_dir: Path, files: int) -> None:
    """Enough files that a deploy is still uploading when the test kills it."""
    extra = app_dir / "extra"
    extra.mkdir(exist_ok=True)
    for index in range(files):
        (extra / f"module_{index}.py").write_text(f"VALUE = {index}\n" + "#" * 2000)


def test_a_deploy_killed_halfway_then_run_again_converges_without_break_lock(
    session: DeploySession,
) -> None:
    first = session.deployed()
    _grow(session.app_dir, 200)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "provision",
            "--project-dir",
            str(session.project),
            "deploy",
            "--target",
            "azure",
            "--ready-timeout",
            TIMEOUT,
        ],
        env={**os.environ, **session.env()},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    for line in process.stderr:
        if "uploaded 50/" in line:
            break
    else:
        pytest.fail(f"the deploy ended before it uploaded 50 files (exit {process.wait()})")
    lock = session.share_root / "app/deploy.lock"
    assert lock.is_file()
    process.kill()
    process.wait()
    process.stderr.close()
    assert lock.is_file()  # left behind, leased by a client that is gone

    with httpx.Client(verify=session.tls()) as client:  # the killed deploy switched nothing
        assert session.health(client)["release"] == first["release"]
    result = session.deploy("--ready-timeout", TIMEOUT)
    assert result.exit_code == 0, result.stderr
    assert "took over the deploy lock of" in result.stderr
    assert "no longer runs" in result.stderr
    second = json.loads(result.stdout)
    assert 0 < second["uploaded"] < 201  # what the killed deploy uploaded is not sent again
    assert live_release(session) == second["release"]
    assert not lock.exists()
    with httpx.Client(verify=session.tls()) as client:
        assert session.health(client)["release"] == second["release"]


def _lock_of(host: str, heartbeat: float) -> bytes:
    return json.dumps(
        {
            "holder": f"builder@{host}",
            "host": host,
            "pid": 4242,
            "since": "2026-01-01T00:00:00+00:00",
            "heartbeat": heartbeat,
            "token": "0123456789abcdef",
        }
    ).encode()


def test_a_live_holder_elsewhere_is_named_and_its_lease_kept(session: DeploySession) -> None:
    session.deployed()
    lock = session.share_root / "app/deploy.lock"
    lock.write_bytes(_lock_of("build-agent-7", time.time()))
    hold_lease(
        session.double,
        session.names["storageAccountName"],
        session.names["fileShareName"],
        "app/deploy.lock",
    )
    result = session.deploy("--ready-timeout", TIMEOUT)
    assert result.exit_code == 4, result.stderr
    assert "another deploy holds app/deploy.lock" in result.stderr
    assert "builder@build-agent-7 (pid 4242)" in result.stderr
    assert json.loads(lock.read_bytes())["host"] == "build-agent-7"


def test_a_stale_holder_elsewhere_is_taken_over_breaking_its_lease(
    session: DeploySession,
) -> None:
    first = session.deployed()
    lock = session.share_root / "app/deploy.lock"
    lock.write_bytes(_lock_of("build-agent-7", time.time() - 3600))
    hold_lease(
        session.double,
        session.names["storageAccountName"],
        session.names["fileShareName"],
        "app/deploy.lock",
    )
    (session.app_dir / "__main__.py").write_text(
        (session.app_dir / "__main__.py").read_text() + "\n# after the stale lock\n"
    )
    result = session.deploy("--ready-timeout", TIMEOUT)
    assert result.exit_code == 0, result.stderr
    assert "took over the deploy lock of builder@build-agent-7 (pid 4242)" in result.stderr
    assert "no heartbeat for" in result.stderr
    assert json.loads(result.stdout)["previous_release"] == first["release"]
    assert not lock.exists()


def test_up_provisions_then_deploys(session: DeploySession) -> None:
    env = session.env(AZURE_RESOURCE_GROUP=GROUP, AZURE_LOCATION=LOCATION)
    result = session.aca("--output", "json", "up", "--target", "azure", env=env)
    assert result.exit_code == 0, result.stderr
    deployed = json.loads(result.stdout)["deploy"]
    assert deployed["ready"]
    with httpx.Client(verify=session.tls()) as client:
        assert session.health(client)["release"] == deployed["release"]


def test_restart_restarts_the_live_revision_in_place(session: DeploySession) -> None:
    first = session.deployed()
    with httpx.Client(verify=session.tls()) as client:
        before = session.health(client)["instance_id"]
    restarted = session.deployed("--restart")
    assert restarted["release"] == first["release"] and restarted["uploaded"] == 0
    assert any(
        r.method == "POST" and r.path.lower().endswith("/restart") for r in session.double.requests
    )
    with httpx.Client(verify=session.tls()) as client:
        # Same revision, so the same pinned identity: no new revision was rolled out.
        assert session.health(client)["instance_id"] == before


def test_upload_model_to_the_share_survives_a_dropped_range_and_reruns_upload_nothing(
    session: DeploySession, tmp_path: Path
) -> None:
    base = make_base(tmp_path / "src")
    (base / "weights.bin").write_bytes(bytes(range(256)) * 40_000)  # ~10 MB: several 4 MiB ranges
    adapter = make_adapter(
        tmp_path / "src", "microsoft/Phi-3-mini-4k-instruct", ["qkv_proj", "o_proj"]
    )
    fault = drop_uploads(session.double.faults, path=r"/weights\.bin$|/\.upload-", times=1)
    arguments = (
        "upload-model",
        "--target",
        "azure",
        "--base",
        str(base),
        "--adapter",
        str(adapter),
    )
    result = session.aca("--output", "json", *arguments)
    assert result.exit_code == 0, result.stderr
    uploaded = json.loads(result.stdout)
    assert fault.hits == 1
    model = session.share_root / uploaded["model_path"]
    assert (model / "weights.bin").read_bytes() == (base / "weights.bin").read_bytes()
    assert not [p for p in model.iterdir() if p.name.startswith(".upload-")]

    again = json.loads(session.aca("--output", "json", *arguments).stdout)
    assert again["uploaded"] == 0 and again["bytes_uploaded"] == 0


def test_a_deploy_without_the_adapter_on_the_share_names_it_and_changes_nothing(
    session: DeploySession,
) -> None:
    (session.share_root / "models/qlora/qlora/gpu_model/adapter/adapter_config.json").unlink()
    result = session.deploy("--ready-timeout", TIMEOUT)
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: adapterPath 'models/qlora/qlora/gpu_model/adapter'")
    assert live_release(session) is None


def _keys_read(session: DeploySession, since: int) -> int:
    return sum(1 for r in session.double.requests[since:] if r.path.endswith("/listKeys"))


def test_the_share_is_reached_with_entra_id_and_no_key_is_read(session: DeploySession) -> None:
    since = len(session.double.requests)
    session.deployed()
    assert _keys_read(session, since) == 0


def test_without_a_data_role_the_account_key_is_read_through_arm(session: DeploySession) -> None:
    first = session.deployed()
    (session.app_dir / "__main__.py").write_text(
        (session.app_dir / "__main__.py").read_text() + "\n# after a role change\n"
    )
    since = len(session.double.requests)
    # The identity lost its data role: the first storage request is refused as the service does.
    session.double.faults.add(
        Fault(
            listener="files",
            status=403,
            code="AuthorizationPermissionMismatch",
            message="This request is not authorized to perform this operation using this "
            "permission.",
        )
    )
    second = session.deployed()
    assert second["previous_release"] == first["release"] and second["uploaded"] == 1
    assert _keys_read(session, since) == 1
    assert live_release(session) == second["release"]

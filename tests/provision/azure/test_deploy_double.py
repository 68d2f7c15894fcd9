"""`aca-infer deploy --target azure` through the Azure double: the real storage and Container Apps
SDK clients against an Azure Files share and a container app whose revisions run real replica
processes (the stand-in app) from that share."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result

from provision.azure.naming import ai_toolkit_names, resource_group_id
from provision.azure.uniquestring import unique_string
from tests.azure_double.files import drop_uploads
from tests.azure_double.server import AzureDouble
from tests.provision.azure.double_project import Session
from tests.provision.azure.projects import copy_templates
from tests.provision.standin_app import write_model_files, write_standin_app

GROUP = "rg-deploy"
LOCATION = "westus3"
TIMEOUT = "120"


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


@pytest.fixture
def session(azure_double: AzureDouble, tmp_path: Path) -> Iterator[DeploySession]:
    project = tmp_path / "project"
    copy_templates(project)
    write_standin_app(project)
    azure_double.config.extra["probe_time_scale"] = 0.02
    session = DeploySession(azure_double, project)
    suffix = unique_string(resource_group_id(azure_double.subscription_id, GROUP))[:5]
    session.names = ai_toolkit_names(suffix)
    session.seed_app(session.names["storageAccountName"], session.names["fileShareName"])
    result = session.provision("-g", GROUP, "-l", LOCATION)
    assert result.exit_code == 0, result.stderr
    write_model_files(session.share_root)
    yield session


def test_first_deploy_then_a_no_op_then_one_changed_file(session: DeploySession) -> None:
    first = session.deployed()
    assert first["ready"] and first["previous_release"] is None
    assert first["uploaded"] == 3 and first["bytes_uploaded"] > 0
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
    assert (session.share_root / "app/current").read_text() == changed["release"]


def test_a_release_that_raises_at_import_exits_5_and_the_old_one_keeps_serving(
    session: DeploySession,
) -> None:
    good = session.deployed()
    main = session.app_dir / "__main__.py"
    main.write_text('raise RuntimeError("broken at import")\n' + main.read_text())
    failures: list[str] = []
    stop = threading.Event()

    def loop() -> None:
        endpoint = session.config()["ACA_APP_ENDPOINT"]
        with httpx.Client(verify=session.tls(), timeout=30) as client:
            while not stop.is_set():
                response = client.get(f"{endpoint}/health")
                if response.status_code != 200 or response.json()["release"] != good["release"]:
                    failures.append(f"{response.status_code} {response.text[:100]}")

    looping = threading.Thread(target=loop)
    looping.start()
    try:
        result = session.deploy("--ready-timeout", "60")
    finally:
        stop.set()
        looping.join()
    assert result.exit_code == 5, result.stderr
    assert "broken at import" in result.stderr  # the failed replica's console, shown
    assert f"release {good['release']} kept serving" in result.stderr
    assert "Traceback (most recent call last)" not in result.stderr.split("console")[0]
    assert failures == []
    assert (session.share_root / "app/current").read_text() == good["release"]
    app = session.double.store.get(
        f"{session.group_id(GROUP)}/providers/Microsoft.App/containerApps/"
        f"{session.names['acaAppName']}".lower()
    )
    assert app is not None
    revisions = session.double.store.list(app["id"].lower() + "/revisions/")
    failed = [r for r in revisions if r["name"] == app["properties"]["latestRevisionName"]]
    assert failed, "the failed revision exists"


def test_a_client_loop_during_a_deploy_sees_no_failure(session: DeploySession) -> None:
    first = session.deployed()
    main = session.app_dir / "__main__.py"
    main.write_text(main.read_text() + "\n# next\n")
    seen: set[str] = set()
    failures: list[str] = []
    stop = threading.Event()

    def loop() -> None:
        endpoint = session.config()["ACA_APP_ENDPOINT"]
        with httpx.Client(verify=session.tls(), timeout=30) as client:
            while not stop.is_set():
                response = client.get(f"{endpoint}/health")
                if response.status_code == 200:
                    seen.add(response.json()["release"])
                else:
                    failures.append(f"{response.status_code} {response.text[:100]}")

    looping = threading.Thread(target=loop)
    looping.start()
    try:
        second = session.deployed()
        with httpx.Client(verify=session.tls()) as client:
            while session.health(client)["release"] != second["release"]:
                pass
    finally:
        stop.set()
        looping.join()
    assert failures == []
    assert seen == {first["release"], second["release"]}


def test_an_upload_whose_connection_drops_is_resumed(session: DeploySession) -> None:
    fault = drop_uploads(session.double.faults, path=r"/app/objects/", read_bytes=16, times=1)
    first = session.deployed()
    assert fault.hits == 1
    for path, entry in json.loads(
        (session.share_root / f"app/releases/{first['release']}.json").read_text()
    )["files"].items():
        body = session.share_root / f"app/objects/{entry['sha256'][:2]}/{entry['sha256']}"
        assert body.stat().st_size == entry["size"], path


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
    assert (session.share_root / "app/current").read_text() == done["release"]

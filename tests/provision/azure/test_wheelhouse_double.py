"""The default public image lacks the server's packages: deploy puts their wheels on the Azure
Files share once per requirements key, and the release names that wheelhouse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provision.azure.target import AzureTarget
from provision.deploy import DeploySettings, deploy
from provision.local.share import LocalShare
from provision.release import Manifest, object_path, release_path
from provision.wheelhouse import RUNTIME_FILE, wheelhouse_path
from tests.azure_double.server import AzureDouble
from tests.provision.azure.test_deploy_double import deploy_session
from tests.provision.test_wheelhouse import FolderDownloader


def quiet(message: str) -> None:
    pass


def test_the_default_image_gets_the_servers_wheels_on_the_share_once(
    azure_double: AzureDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = deploy_session(azure_double, tmp_path, image=None)
    for name, value in session.env().items():  # the CLI's environment: az, the CA, ARM
        monkeypatch.setenv(name, value)
    target = AzureTarget(session.project, session.env())
    assert target.image_platform() is not None
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name in ("serve_a-1.0-py3-none-any.whl", "serve_b-2.0-py3-none-any.whl"):
        (wheels / name).write_bytes(name.encode() * 100)
    downloader = FolderDownloader(wheels)
    settings = DeploySettings(session.app_dir, ready_timeout=120.0, downloader=downloader)

    first = deploy(target, settings, quiet)
    share = LocalShare(session.share_root)  # what the replicas' mount sees
    runtime = Manifest.from_json(share.read_bytes(release_path(first.release))).files[RUNTIME_FILE]
    key = json.loads(share.read_bytes(object_path(runtime.sha256)))["wheelhouse"]
    wheelhouse = Manifest.from_json(share.read_bytes(wheelhouse_path(key)))
    assert set(wheelhouse.files) == {p.name for p in wheels.iterdir()}
    for name, entry in wheelhouse.files.items():
        assert share.read_bytes(object_path(entry.sha256)) == (wheels / name).read_bytes()
    assert first.ready and len(downloader.calls) == 1

    main = session.app_dir / "__main__.py"
    main.write_text(main.read_text() + "\n# next\n")
    second = deploy(target, settings, quiet)
    assert second.ready and second.uploaded == 1  # the changed file; no wheel again
    assert len(downloader.calls) == 1

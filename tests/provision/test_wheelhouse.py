"""The server's packages for an image that lacks them: wheels put on the share once per
requirements key by deploy, installed by the bootstrap without any index, once per replica."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from bench.package_index import make_wheel, serve_index
from provision.deploy import DeploySettings, deploy
from provision.local.share import LocalShare
from provision.release import Manifest, object_path, release_path
from provision.release_history import read_current
from provision.wheelhouse import (
    DEFAULT_IMAGE,
    PYTORCH_IMAGE_PLATFORM,
    RUNTIME_FILE,
    WHEELHOUSES_DIR,
    ImagePlatform,
    PipDownloader,
    RuntimeSpec,
    needed_packages,
    platform_for_image,
    serve_requirements,
)
from tests.provision.fakes import FakeTarget

THIS_PYTHON = ImagePlatform(f"{sys.version_info.major}.{sys.version_info.minor}", "2.35")
PROBE = "acainfer-probe"
MAIN = (
    "import acainfer_probe, os\n"
    "print('serving with acainfer_probe', acainfer_probe.VERSION, 'from', "
    "os.path.dirname(os.path.dirname(acainfer_probe.__file__)))\n"
)


def quiet(message: str) -> None:
    pass


class FolderDownloader:
    """Hands out wheels prepared in a folder, counting the calls (a deploy downloads once)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.calls: list[tuple[str, ...]] = []

    def download(
        self, requirements: Sequence[str], platform: ImagePlatform, destination: Path
    ) -> list[Path]:
        self.calls.append(tuple(requirements))
        destination.mkdir(parents=True, exist_ok=True)
        return [Path(shutil.copy(w, destination)) for w in sorted(self.folder.glob("*.whl"))]


def write_app(app: Path, main: str = MAIN) -> Path:
    app.mkdir(parents=True, exist_ok=True)
    (app / "__init__.py").write_text("")
    (app / "__main__.py").write_text(main)
    return app


def test_the_default_image_is_pinned_and_known_custom_images_bring_their_packages() -> None:
    assert "@sha256:" in DEFAULT_IMAGE
    assert platform_for_image(DEFAULT_IMAGE) == PYTORCH_IMAGE_PLATFORM
    assert platform_for_image("myregistry.azurecr.io/aca-infer-runtime:1") is None


def test_serve_requirements_leave_torch_to_the_image() -> None:
    names = {line.split(">")[0].split("=")[0] for line in serve_requirements()}
    assert "torch" not in names
    assert {"fastapi", "transformers", "peft"} <= names


def test_the_key_changes_with_the_requirements_and_the_platform() -> None:
    one = RuntimeSpec(("fastapi>=0.115",), PYTORCH_IMAGE_PLATFORM)
    assert one.key == RuntimeSpec(("fastapi>=0.115",), PYTORCH_IMAGE_PLATFORM).key
    assert one.key != RuntimeSpec(("fastapi>=0.116",), PYTORCH_IMAGE_PLATFORM).key
    assert one.key != RuntimeSpec(("fastapi>=0.115",), ImagePlatform("3.12", "2.35")).key
    assert one.key != RuntimeSpec(("fastapi>=0.115",), ImagePlatform("3.11", "2.28")).key


def test_the_image_takes_wheels_for_its_glibc_and_every_older_one() -> None:
    tags = PYTORCH_IMAGE_PLATFORM.platform_tags()
    assert tags[0] == "manylinux_2_35_x86_64" and "manylinux_2_17_x86_64" in tags
    assert "manylinux2014_x86_64" in tags and "manylinux_2_36_x86_64" not in tags
    assert PYTORCH_IMAGE_PLATFORM.abis() == ["cp311", "abi3", "none"]
    assert RuntimeSpec(("fastapi>=0.115",), None).key is None


def report_item(name: str, requires: Sequence[str] = (), requested: bool = False) -> dict:
    return {
        "metadata": {"name": name, "version": "1.0", "requires_dist": list(requires)},
        "requested": requested,
    }


def test_what_only_torch_needs_is_left_to_the_image() -> None:
    report = {
        "install": [
            report_item("peft", ["torch>=1.13", "safetensors", "pytest; extra == 'test'"], True),
            report_item("torch", ["nvidia-cublas-cu12; platform_system == 'Linux'", "sympy"]),
            report_item("nvidia-cublas-cu12"),
            report_item("sympy"),
            report_item("safetensors"),
            report_item("colorama-only-on-windows"),
            report_item("uvicorn", ["colorama-only-on-windows; sys_platform == 'win32'"], True),
        ]
    }

    needed = [name for name, _ in needed_packages(report, PYTORCH_IMAGE_PLATFORM)]

    assert needed == ["peft", "safetensors", "uvicorn"]


def test_pip_downloads_the_needed_wheels_for_the_image_from_an_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real pip against a loopback index: resolves for the image's platform, skips torch."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # only the loopback index
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    served = tmp_path / "served"
    make_wheel(served, "probe-app", requires=["probe-lib>=1.0", "torch>=2.4"])
    make_wheel(served, "probe-lib")
    make_wheel(served, "torch", "2.7.1", requires=["probe-torch-only"])
    make_wheel(served, "probe-torch-only")

    with serve_index(served) as index:
        wheels = PipDownloader(index.url).download(
            ["probe-app>=1.0"], PYTORCH_IMAGE_PLATFORM, tmp_path / "out"
        )

    assert [w.name for w in wheels] == [
        "probe_app-1.0-py3-none-any.whl",
        "probe_lib-1.0-py3-none-any.whl",
    ]


def test_wheels_are_uploaded_once_per_requirements_key(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, PROBE)
    downloader = FolderDownloader(wheels)
    target = FakeTarget(tmp_path / "share", PYTORCH_IMAGE_PLATFORM)
    app = write_app(tmp_path / "inference_app")

    def deploy_with(requirements: tuple[str, ...], restart: bool = False) -> int:
        settings = DeploySettings(
            app, requirements=requirements, downloader=downloader, restart=restart
        )
        return deploy(target, settings, quiet).bytes_uploaded

    first = deploy_with((f"{PROBE}>=1.0",))
    wheel_size = (wheels / "acainfer_probe-1.0-py3-none-any.whl").stat().st_size
    assert len(downloader.calls) == 1 and first > wheel_size
    assert deploy_with((f"{PROBE}>=1.0",), restart=True) == 0
    assert len(downloader.calls) == 1  # same key: nothing downloaded or uploaded

    changed = deploy_with((f"{PROBE}>=0.9",))  # a changed requirement is a new key ...
    assert len(downloader.calls) == 2
    assert len(list(target.share.list_files(WHEELHOUSES_DIR))) == 2  # ... beside the previous
    assert changed < wheel_size  # ... and the wheel the share already had is not uploaded again

    for version in ("0.8", "0.7", "0.6", "0.5"):
        deploy_with((f"{PROBE}>={version}",))
    # The wheelhouses of the last 5 releases (kept for rollback) stay; the oldest is pruned.
    assert len(list(target.share.list_files(WHEELHOUSES_DIR))) == 5


def run_bootstrap(
    share: Path, runtime: Path, *, no_network: bool
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ACA_INFER_MOUNT_ROOT": str(share),
        "ACA_INFER_RUNTIME_DIR": str(runtime),
        # Were pip to reach for an index, this one refuses at once.
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple/",
        "PIP_CONFIG_FILE": os.devnull,
    }
    env.pop("PIP_FIND_LINKS", None)
    command = [sys.executable, str(share / "app/bootstrap.py")]
    if no_network and shutil.which("unshare") and os.geteuid() == 0:
        command = ["unshare", "--net", *command]  # no network at all, not even loopback
    return subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=share, timeout=120, check=False
    )


@pytest.fixture
def share_with_wheels(tmp_path: Path) -> Path:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, PROBE, "1.2")
    target = FakeTarget(tmp_path / "share", THIS_PYTHON)
    settings = DeploySettings(
        write_app(tmp_path / "inference_app"),
        requirements=(f"{PROBE}>=1.0",),
        downloader=FolderDownloader(wheels),
    )
    deploy(target, settings, quiet)
    return tmp_path / "share"


def test_the_bootstrap_installs_from_the_share_without_network_once_per_key(
    share_with_wheels: Path, tmp_path: Path
) -> None:
    runtime = tmp_path / "runtime"

    first = run_bootstrap(share_with_wheels, runtime, no_network=True)

    assert first.returncode == 0, first.stderr
    installs = [line for line in first.stderr.splitlines() if "installing" in line]
    assert len(installs) == 1
    assert "installing 1 wheels for requirements w-" in installs[0]
    assert f"because this Python lacks {PROBE}>=1.0" in installs[0]
    installed = next((runtime / "packages").iterdir())
    assert first.stdout.strip() == f"serving with acainfer_probe 1.2 from {installed}"

    marker = (installed / ".complete").stat().st_mtime_ns
    second = run_bootstrap(share_with_wheels, runtime, no_network=True)

    assert second.returncode == 0, second.stderr
    assert "installing nothing: reusing the packages for requirements w-" in second.stderr
    assert "installing 1 wheels" not in second.stderr
    assert (installed / ".complete").stat().st_mtime_ns == marker
    assert second.stdout == first.stdout


def test_an_image_that_has_the_packages_installs_nothing(tmp_path: Path) -> None:
    target = FakeTarget(tmp_path / "share", None)
    app = write_app(tmp_path / "inference_app", "print('serving')\n")
    deploy(target, DeploySettings(app, requirements=("click>=8",)), quiet)

    started = run_bootstrap(tmp_path / "share", tmp_path / "runtime", no_network=True)

    assert started.returncode == 0, started.stderr
    assert "installing nothing: Python" in started.stderr
    assert "already has the server's 1 packages" in started.stderr
    assert not (tmp_path / "runtime/packages").exists()


def test_a_missing_package_with_no_wheels_stops_with_what_to_do(tmp_path: Path) -> None:
    target = FakeTarget(tmp_path / "share", None)
    app = write_app(tmp_path / "inference_app")
    deploy(target, DeploySettings(app, requirements=(f"{PROBE}>=1.0",)), quiet)

    started = run_bootstrap(tmp_path / "share", tmp_path / "runtime", no_network=True)

    assert started.returncode == 3
    assert f"lacks {PROBE}>=1.0 and the release brings no wheels" in started.stderr
    assert "infra/image/Dockerfile" in started.stderr


def test_the_release_records_its_requirements_for_the_bootstrap(share_with_wheels: Path) -> None:
    share = LocalShare(share_with_wheels)
    release = Manifest.from_json(share.read_bytes(release_path(str(read_current(share)))))
    record = json.loads(share.read_bytes(object_path(release.files[RUNTIME_FILE].sha256)))
    assert record["requirements"] == [
        {"line": f"{PROBE}>=1.0", "name": PROBE, "specifiers": [[">=", "1.0"]]}
    ]
    assert record["wheelhouse"].startswith("w-") and record["python"] == THIS_PYTHON.python_version

"""The wheel as a user gets it: built once per session with `python -m build`, installed into a
fresh virtual environment outside the checkout.

The environment gets the wheel with `--no-deps` and reaches the already-installed dependencies
through a .pth line naming this interpreter's site-packages: no network, and seconds instead of
an install of torch. A directory a .pth line adds has its own .pth files ignored, so the
checkout's editable install stays out of that environment's sys.path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Dist:
    wheel: Path
    sdist: Path


@dataclass(frozen=True)
class Installed:
    venv: Path
    python: Path
    command: Path
    dependencies: Path  # the site-packages the .pth line adds

    def env(self, **extra: str) -> dict[str, str]:
        """A user's shell: the venv first on PATH, nothing of the checkout in PYTHONPATH."""
        base = {
            key: value
            for key, value in os.environ.items()
            if key in {"HOME", "LANG", "LC_ALL", "TMPDIR", "USER"}
        }
        return {
            **base,
            "PATH": f"{self.venv / 'bin'}{os.pathsep}/usr/local/bin:/usr/bin:/bin",
            "HF_HUB_OFFLINE": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "AZURE_TOKEN_CREDENTIALS": "dev",
            **extra,
        }


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend comes from the dev extra, not from an index.
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)])
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return Dist(wheel, sdist)


@pytest.fixture(scope="session")
def installed(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    venv = tmp_path_factory.mktemp("user-venv")
    _run([sys.executable, "-m", "venv", "--without-pip", "--clear", str(venv)])
    python = venv / "bin" / "python"
    site_packages = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
        ).stdout.strip()
    )
    dependencies = Path(sysconfig.get_paths()["purelib"])
    (site_packages / "aca_infer_test_dependencies.pth").write_text(f"{dependencies}\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(dist.wheel),
        ]
    )
    return Installed(venv, python, venv / "bin" / "aca-infer", dependencies)

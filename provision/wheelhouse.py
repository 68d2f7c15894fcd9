"""The server's Python packages for a replica image that lacks them, as wheels on the share.

The default image is the public PyTorch CUDA runtime image: it has Python and torch, not the rest
of the `serve` extra. Rather than pip-installing that from the internet at every start (what the
AI Toolkit's replica does), `deploy` downloads the wheels once, for the image's platform and
Python, and puts them on the share in a content-addressed area keyed by a hash of the
requirements and the platform:

    app/wheelhouses/<key>.json   file name -> content hash of every wheel (written last)
    app/objects/..               the wheel bodies, shared with the releases' files

A deploy with unchanged requirements finds `<key>.json` and downloads and uploads nothing; a
changed requirement makes a new key, whose wheels are downloaded and uploaded once (bodies the
share already has are not uploaded again). The release names its key (`RUNTIME_FILE`), and the
bootstrap installs those wheels with `pip install --no-index` into the replica's local disk once
per key, or nothing when the image already has the packages (a custom image built from
infra/image/Dockerfile).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from provision.errors import OperationError, PrerequisiteError
from provision.release import APP_DIR

DISTRIBUTION = "aca-infer"
SERVE_EXTRA = "serve"
IMAGE_PACKAGES = frozenset({"torch"})  # the image brings these (and what only they need)
WHEELHOUSES_DIR = f"{APP_DIR}/wheelhouses"
RUNTIME_FILE = "aca_infer_runtime.json"  # in every release, beside the app package

# docker.io/pytorch/pytorch, tag 2.7.1-cuda12.8-cudnn9-runtime, pinned by digest (see
# infra/README.md "Runtime image" for where the digest was confirmed). Its Python is 3.11
# (pytorch/pytorch's Dockerfile: ARG PYTHON_VERSION=3.11) on Ubuntu 22.04 (glibc 2.35), x86_64.
DEFAULT_IMAGE = (
    "docker.io/pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime"
    "@sha256:c16f4c749e2d9e96878875cdf6cc45cddda1d1a36fddd371dd6f2360f1b6e2a2"
)


@dataclass(frozen=True)
class ImagePlatform:
    """What `pip download` needs to pick wheels that install in the image."""

    python_version: str  # "3.11"
    glibc: str  # the image's C library, e.g. "2.35": wheels for it or any older manylinux run
    machine: str = "x86_64"

    @property
    def platform(self) -> str:
        return f"manylinux_{self.glibc.replace('.', '_')}_{self.machine}"

    def platform_tags(self) -> list[str]:
        """Every manylinux tag the image runs: pip takes `--platform` literally, so each older
        glibc version and the legacy names are listed."""
        major, minor = (int(n) for n in self.glibc.split("."))
        tags = [f"manylinux_{major}_{m}_{self.machine}" for m in range(minor, 16, -1)]
        legacy = ["manylinux2014", "manylinux2010", "manylinux1"]
        return tags + [f"{name}_{self.machine}" for name in legacy]

    def abis(self) -> list[str]:
        """This CPython's own ABI, the stable ABI, and pure/ABI-free wheels."""
        return ["cp" + self.python_version.replace(".", ""), "abi3", "none"]

    def marker_environment(self) -> dict[str, str]:
        return {
            "python_version": self.python_version,
            "python_full_version": self.python_version + ".0",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "platform_machine": self.machine,
            "os_name": "posix",
            "implementation_name": "cpython",
            "platform_python_implementation": "CPython",
            "extra": "",
        }


PYTORCH_IMAGE_PLATFORM = ImagePlatform("3.11", "2.35")
_KNOWN_IMAGES = {DEFAULT_IMAGE: PYTORCH_IMAGE_PLATFORM}


def platform_for_image(image: str) -> ImagePlatform | None:
    """The platform to download wheels for, or None for an image that brings the packages
    itself (one built from infra/image/Dockerfile, or any other the user names)."""
    return _KNOWN_IMAGES.get(image)


def serve_requirements() -> tuple[str, ...]:
    """The `serve` extra of the installed aca-infer, without what the image brings (torch)."""
    try:
        declared = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError as err:
        raise PrerequisiteError(
            f"{DISTRIBUTION} is not installed, so its '{SERVE_EXTRA}' requirements are unknown; "
            "install it (pip install aca-infer)"
        ) from err
    found = []
    for line in declared:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or not marker.evaluate({"extra": SERVE_EXTRA}):
            continue
        if canonicalize_name(requirement.name) in IMAGE_PACKAGES:
            continue
        requirement.marker = None
        found.append(str(requirement))
    return tuple(sorted(found))


@dataclass(frozen=True)
class RuntimeSpec:
    """What a release needs installed beside its code; written into the release."""

    requirements: tuple[str, ...]
    platform: ImagePlatform | None  # None: the replica's interpreter is expected to have them

    @property
    def key(self) -> str | None:
        if self.platform is None:
            return None
        document = {
            "requirements": sorted(self.requirements),
            "python": self.platform.python_version,
            "platform": self.platform.platform,
            "machine": self.platform.machine,
            "excluded": sorted(IMAGE_PACKAGES),
        }
        encoded = json.dumps(document, sort_keys=True).encode()
        return "w-" + hashlib.sha256(encoded).hexdigest()[:16]

    def to_json(self) -> bytes:
        """Read by the bootstrap (standard library only): names and version bounds it can check
        against the interpreter's installed distributions without `packaging`."""
        parsed = [Requirement(line) for line in self.requirements]
        document = {
            "requirements": [
                {
                    "line": str(r),
                    "name": canonicalize_name(r.name),
                    "specifiers": [[s.operator, s.version] for s in r.specifier],
                }
                for r in parsed
            ],
            "wheelhouse": self.key,
            "python": self.platform.python_version if self.platform else None,
        }
        return json.dumps(document, indent=1, sort_keys=True).encode()


def wheelhouse_path(key: str) -> str:
    return f"{WHEELHOUSES_DIR}/{key}.json"


class WheelDownloader(Protocol):
    def download(
        self, requirements: Sequence[str], platform: ImagePlatform, destination: Path
    ) -> list[Path]:
        """Wheels for `requirements` and their dependencies (minus IMAGE_PACKAGES and what only
        they need) for `platform`, saved in `destination`."""


def _run_pip(arguments: Sequence[str], what: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", *arguments],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise OperationError(f"pip could not {what}: {last[0]}")


def needed_packages(report: dict[str, Any], platform: ImagePlatform) -> list[tuple[str, str]]:
    """(name, version) of every package in a `pip install --report` that the requested ones
    need without going through an image package: torch's own dependencies (CUDA libraries,
    triton, ...) are in the image already."""
    items: dict[str, Any] = {canonicalize_name(i["metadata"]["name"]): i for i in report["install"]}
    environment = platform.marker_environment()
    wanted: dict[str, set[str]] = {}
    pending: list[tuple[str, frozenset[str]]] = [
        (name, frozenset(item.get("requested_extras") or ()))
        for name, item in items.items()
        if item.get("requested")
    ]
    while pending:
        name, extras = pending.pop()
        if name in IMAGE_PACKAGES or name not in items:
            continue
        seen = wanted.get(name)
        if seen is not None and extras <= seen:
            continue
        wanted[name] = (seen or set()) | set(extras)
        for line in items[name]["metadata"].get("requires_dist") or ():
            requirement = Requirement(line)
            if _applies(requirement.marker, environment, wanted[name]):
                pending.append((canonicalize_name(requirement.name), frozenset(requirement.extras)))
    return sorted((name, items[name]["metadata"]["version"]) for name in wanted)


def _applies(marker: Marker | None, environment: dict[str, str], extras: Iterable[str]) -> bool:
    if marker is None:
        return True
    return any(marker.evaluate({**environment, "extra": e}) for e in ("", *extras))


class PipDownloader:
    """`pip` resolves for the image's platform (metadata only where the index serves it), then
    downloads exactly the needed wheels, binary only."""

    def __init__(self, index_url: str | None = None) -> None:
        self.index_url = index_url

    def _platform_args(self, platform: ImagePlatform) -> list[str]:
        args = ["--only-binary=:all:", "--disable-pip-version-check"]
        args += ["--python-version", platform.python_version, "--implementation", "cp"]
        for tag in platform.platform_tags():
            args += ["--platform", tag]
        for abi in platform.abis():
            args += ["--abi", abi]
        return args + (["--index-url", self.index_url] if self.index_url else [])

    def download(
        self, requirements: Sequence[str], platform: ImagePlatform, destination: Path
    ) -> list[Path]:
        destination.mkdir(parents=True, exist_ok=True)
        report_file = destination / ".report.json"
        _run_pip(
            [
                "install",
                "--dry-run",
                "--ignore-installed",
                "--quiet",
                "--report",
                str(report_file),
                *self._platform_args(platform),
                *requirements,
            ],
            f"resolve {', '.join(requirements)} for Python {platform.python_version}",
        )
        report = json.loads(report_file.read_text())
        report_file.unlink()
        pins = [f"{name}=={version}" for name, version in needed_packages(report, platform)]
        _run_pip(
            [
                "download",
                "--no-deps",
                "--quiet",
                "--dest",
                str(destination),
                *self._platform_args(platform),
                *pins,
            ],
            f"download wheels for Python {platform.python_version} ({platform.platform})",
        )
        return sorted(destination.glob("*.whl"))

"""Start the inference server from a release on the share (copied there by deploy).

The release is the one pinned in ACA_INFER_RELEASE (a revision's, or a local replica start's,
environment), so a restart never changes the code under a running revision; only when none is
pinned does the bootstrap start the live one (the newest marker in `app/history/`).

The container runs `python /mount/app/bootstrap.py`; the local target runs the same file with
ACA_INFER_MOUNT_ROOT pointing at its folder. Standard library only: this runs before anything
else is known about the environment.

The release is copied from the share to local disk first, verified against its manifest, and
started from there: imports then never touch the network share, and a deploy that is writing the
next release cannot change the code under a running server.

The server's packages: the release names its requirements and, for an image that lacks them
(the public PyTorch image), a wheelhouse that deploy put on the share. When the interpreter
already has every requirement (an image built from infra/image/Dockerfile, the local target's
virtual environment) nothing is installed. Otherwise the wheels are installed with
`pip install --no-index` (never the internet) into the local runtime folder, once per
requirements key: a later start of the same replica reuses that install.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

APP_MODULE = "inference_app"
RUNTIME_FILE = "aca_infer_runtime.json"
HISTORY_MARKER = re.compile(r"\d{8}_\d{8}T\d{6}Z_r-[0-9a-f]+")


def fail(message: str) -> NoReturn:
    print(f"bootstrap: {message}", file=sys.stderr, flush=True)
    raise SystemExit(3)


def copy_manifest(app_dir: Path, manifest_file: Path, target: Path, what: str) -> Path:
    """Copy every file a manifest names from the share's objects into `target`, each checked
    against its hash; `target` appears whole or not at all."""
    files = json.loads(manifest_file.read_text())["files"]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    for relative, entry in files.items():
        body = (app_dir / "objects" / entry["sha256"][:2] / entry["sha256"]).read_bytes()
        if hashlib.sha256(body).hexdigest() != entry["sha256"]:
            shutil.rmtree(staging)
            fail(f"{relative} in {what} does not match its hash")
        destination = staging / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(body)
    (staging / ".complete").write_text(what)
    if target.exists():  # a copy interrupted earlier: replace it whole
        shutil.rmtree(target)
    os.replace(staging, target)
    return target


def materialise(app_dir: Path, release: str, runtime_dir: Path) -> Path:
    target = runtime_dir / "releases" / release
    if (target / ".complete").is_file():
        return target
    manifest_file = app_dir / "releases" / f"{release}.json"
    if not manifest_file.is_file():
        fail(f"release {release} has no manifest at {manifest_file}")
    # The id is the hash of the manifest (deploy writes it in place): a cut one is refused.
    if "r-" + hashlib.sha256(manifest_file.read_bytes()).hexdigest()[:12] != release:
        fail(f"the manifest of release {release} at {manifest_file} does not match its id")
    return copy_manifest(app_dir, manifest_file, target, f"release {release}")


def _release_tuple(version: str) -> tuple[int, ...]:
    numbers = re.match(r"^\s*v?(\d+(?:\.\d+)*)", version)
    if numbers is None:
        return ()
    parts = [int(n) for n in numbers.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def _satisfies(installed: str, operator: str, wanted: str) -> bool:
    """The common comparisons on release numbers; an unknown operator counts as unsatisfied,
    which only costs an install from the share."""
    have, need = _release_tuple(installed), _release_tuple(wanted)
    if not have or not need:
        return False
    if operator == "~=":
        prefix = need[:-1] if len(need) > 1 else need
        return have >= need and have[: len(prefix)] == prefix
    comparisons = {
        ">=": have >= need,
        ">": have > need,
        "<=": have <= need,
        "<": have < need,
        "==": have == need,
        "!=": have != need,
    }
    return comparisons.get(operator, False)


def missing_requirements(requirements: list[dict[str, Any]]) -> list[str]:
    missing = []
    for requirement in requirements:
        try:
            installed = importlib.metadata.version(requirement["name"])
        except importlib.metadata.PackageNotFoundError:
            missing.append(requirement["line"])
            continue
        specifiers = requirement["specifiers"]
        if not all(_satisfies(installed, op, version) for op, version in specifiers):
            missing.append(f"{requirement['line']} (has {installed})")
    return missing


def install_packages(app_dir: Path, code_dir: Path, runtime_dir: Path) -> Path | None:
    """Make the release's requirements importable; returns the folder to add to sys.path."""
    runtime_file = code_dir / RUNTIME_FILE
    if not runtime_file.is_file():
        return None  # a release from before the requirements were recorded
    runtime = json.loads(runtime_file.read_text())
    missing = missing_requirements(runtime["requirements"])
    if not missing:
        print(
            f"bootstrap: installing nothing: Python {sys.version.split()[0]} at "
            f"{sys.executable} already has the server's {len(runtime['requirements'])} packages",
            file=sys.stderr,
            flush=True,
        )
        return None
    key = runtime["wheelhouse"]
    if key is None:
        fail(
            f"this Python ({sys.executable}) lacks {', '.join(missing)} and the release brings no "
            "wheels for it: use an image built from infra/image/Dockerfile, or the default image "
            "(deploy then puts the wheels on the share)"
        )
    installed = runtime_dir / "packages" / key
    if (installed / ".complete").is_file():
        print(
            f"bootstrap: installing nothing: reusing the packages for requirements {key} "
            f"installed at an earlier start in {installed}",
            file=sys.stderr,
            flush=True,
        )
        return installed
    wanted = runtime["python"]
    have = f"{sys.version_info.major}.{sys.version_info.minor}"
    if wanted != have:
        fail(f"the wheels for requirements {key} are for Python {wanted}; this image has {have}")
    manifest_file = app_dir / "wheelhouses" / f"{key}.json"
    if not manifest_file.is_file():
        fail(f"the wheels for requirements {key} are not on the share ({manifest_file}): deploy")
    wheels = copy_manifest(
        app_dir, manifest_file, runtime_dir / "wheels" / key, f"wheelhouse {key}"
    )
    files = sorted(str(p) for p in wheels.glob("*.whl"))
    print(
        f"bootstrap: installing {len(files)} wheels for requirements {key} from the share into "
        f"{installed}, because this Python lacks {', '.join(missing)}",
        file=sys.stderr,
        flush=True,
    )
    installed.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=installed.parent, prefix=f".{key}."))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-index",
            "--find-links",
            str(wheels),
            "--no-deps",
            "--target",
            str(staging),
            "--quiet",
            "--disable-pip-version-check",
            "--no-warn-script-location",
            *files,
        ],
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        fail(f"pip could not install the wheels for requirements {key} (exit {done.returncode})")
    (staging / ".complete").write_text(key)
    if installed.exists():
        shutil.rmtree(installed)
    os.replace(staging, installed)
    shutil.rmtree(wheels, ignore_errors=True)
    return installed


def live_release(app_dir: Path) -> str | None:
    """The release the newest marker in `history/` names (`<sequence>_<time>_<release>`)."""
    history = app_dir / "history"
    names = sorted(p.name for p in history.iterdir()) if history.is_dir() else []
    markers = [name for name in names if HISTORY_MARKER.fullmatch(name)]
    return markers[-1].rsplit("_", 1)[-1] if markers else None


def main() -> None:
    mount_root = Path(os.environ.get("ACA_INFER_MOUNT_ROOT", "/mount"))
    app_dir = mount_root / "app"
    release = os.environ.get("ACA_INFER_RELEASE", "").strip() or live_release(app_dir)
    if not release:
        fail(f"no release is live in {app_dir}: deploy a release first (aca-infer deploy)")
    runtime_dir = Path(os.environ.get("ACA_INFER_RUNTIME_DIR", "/tmp/aca-infer"))
    code_dir = materialise(app_dir, release, runtime_dir)
    packages = install_packages(app_dir, code_dir, runtime_dir)
    os.environ["ACA_INFER_RELEASE"] = release
    os.environ.setdefault("ACA_INFER_RUNTIME_DIR", str(runtime_dir))
    if packages is not None:
        sys.path.insert(0, str(packages))
        # Child processes (e.g. a compile worker) import the same packages.
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(packages), os.environ.get("PYTHONPATH", "")) if p
        )
    sys.path.insert(0, str(code_dir))
    sys.argv = [APP_MODULE, *sys.argv[1:]]
    print(f"bootstrap: starting release {release} from {code_dir}", file=sys.stderr, flush=True)
    runpy.run_module(APP_MODULE, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

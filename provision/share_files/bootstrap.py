"""Start the inference server from a release on the share (copied there by deploy).

The release is the one pinned in ACA_INFER_RELEASE (a revision's, or a local replica start's,
environment), so a restart never changes the code under a running revision; only when none is
pinned does the bootstrap start the one `current` names.

The container runs `python /mount/app/bootstrap.py`; the local target runs the same file with
ACA_INFER_MOUNT_ROOT pointing at its folder. Standard library only: this runs before anything
else is known about the environment.

The release is copied from the share to local disk first, verified against its manifest, and
started from there: imports then never touch the network share, and a deploy that is writing the
next release cannot change the code under a running server.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import shutil
import sys
import tempfile
from pathlib import Path

APP_MODULE = "inference_app"


def fail(message: str) -> None:
    print(f"bootstrap: {message}", file=sys.stderr, flush=True)
    raise SystemExit(3)


def materialise(app_dir: Path, release: str, runtime_dir: Path) -> Path:
    target = runtime_dir / "releases" / release
    if (target / ".complete").is_file():
        return target
    manifest_file = app_dir / "releases" / f"{release}.json"
    if not manifest_file.is_file():
        fail(f"release {release} has no manifest at {manifest_file}")
    files = json.loads(manifest_file.read_text())["files"]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{release}."))
    for relative, entry in files.items():
        body = (app_dir / "objects" / entry["sha256"][:2] / entry["sha256"]).read_bytes()
        if hashlib.sha256(body).hexdigest() != entry["sha256"]:
            fail(f"{relative} in release {release} does not match its hash")
        destination = staging / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(body)
    (staging / ".complete").write_text(release)
    if target.exists():  # a copy interrupted earlier: replace it whole
        shutil.rmtree(target)
    os.replace(staging, target)
    return target


def main() -> None:
    mount_root = Path(os.environ.get("ACA_INFER_MOUNT_ROOT", "/mount"))
    app_dir = mount_root / "app"
    current = app_dir / "current"
    release = os.environ.get("ACA_INFER_RELEASE", "").strip()
    if not release:
        if not current.is_file():
            fail(f"{current} does not exist: deploy a release first (aca-infer deploy)")
        release = current.read_text().strip()
    runtime_dir = Path(os.environ.get("ACA_INFER_RUNTIME_DIR", "/tmp/aca-infer"))
    code_dir = materialise(app_dir, release, runtime_dir)
    os.environ["ACA_INFER_RELEASE"] = release
    sys.path.insert(0, str(code_dir))
    sys.argv = [APP_MODULE, *sys.argv[1:]]
    print(f"bootstrap: starting release {release} from {code_dir}", file=sys.stderr, flush=True)
    runpy.run_module(APP_MODULE, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()

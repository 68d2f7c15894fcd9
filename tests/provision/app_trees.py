"""Sequences of edits to an app tree (hypothesis), and the two sides the deploy property compares:
the tree on disk and the live release on a share, as a replica would materialise it."""

from __future__ import annotations

from pathlib import Path

from hypothesis import strategies as st

from provision.release import Manifest, object_path, release_path
from provision.release_history import read_current
from provision.share import Share
from provision.wheelhouse import RUNTIME_FILE

file_names = st.sampled_from(["a.py", "b.py", "pkg/c.py", "pkg/d.txt", "pkg/sub/e.py"])
# One state of the edited files; a file missing from the next state has been deleted.
trees = st.dictionaries(file_names, st.text(max_size=20), max_size=5)


def apply_tree(app: Path, tree: dict[str, str], keep: frozenset[str]) -> None:
    """Make `app` hold `tree` beside the files named in `keep` (the server's own): files the
    tree lacks are deleted, the others written."""
    for old in sorted(app.rglob("*"), reverse=True):
        relative = old.relative_to(app).as_posix()
        if old.is_file() and relative not in keep and relative not in tree:
            old.unlink()
    for name, body in tree.items():
        (app / name).parent.mkdir(parents=True, exist_ok=True)
        (app / name).write_text(body)


def remote_tree(share: Share) -> dict[str, bytes]:
    """What a replica would see of the code: the current release, materialised from the share
    (without the record of its requirements, RUNTIME_FILE, which test_wheelhouse covers)."""
    release = read_current(share)
    assert release is not None
    manifest = Manifest.from_json(share.read_bytes(release_path(release)))
    return {
        path: share.read_bytes(object_path(entry.sha256))
        for path, entry in manifest.files.items()
        if path != RUNTIME_FILE
    }


def local_tree(app: Path) -> dict[str, bytes]:
    return {
        f"inference_app/{p.relative_to(app).as_posix()}": p.read_bytes()
        for p in app.rglob("*")
        if p.is_file()
    }

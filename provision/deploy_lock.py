"""`app/deploy.lock` on the share: one deploy at a time, and the second says who holds it."""

from __future__ import annotations

import getpass
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from provision.errors import OperationError
from provision.release import LOCK
from provision.share import Share


def _holder() -> dict[str, object]:
    return {
        "holder": f"{getpass.getuser()}@{socket.gethostname()}",
        "pid": os.getpid(),
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _describe(share: Share) -> str:
    try:
        info = json.loads(share.read_bytes(LOCK))
        return f"{info['holder']} (pid {info['pid']}) since {info['since']}"
    except (OSError, ValueError, KeyError):
        return "an unknown holder"


@contextmanager
def deploy_lock(share: Share, break_lock: bool = False) -> Iterator[None]:
    if break_lock:
        share.delete(LOCK)
    if not share.create_exclusive(LOCK, json.dumps(_holder()).encode()):
        raise OperationError(
            f"another deploy holds {LOCK} on {share.describe()}: {_describe(share)}; "
            "wait for it, or rerun with --break-lock if no deploy is running"
        )
    try:
        yield
    finally:
        share.delete(LOCK)

"""`app/deploy.lock` on the share: one deploy at a time, a lock that heals when its holder dies.

The lock file records who holds it (user@host, host, pid) and a random token; it is written once
and never rewritten, so a holder can never undo a take-over. Its heartbeat lives beside it, in
`app/deploy.lock.beat-<token>`, which a background thread of the holder rewrites every
`HEARTBEAT_SECONDS`. A lock is *stale*, and is
taken over automatically (saying whose it was), when its holder is gone:

- it was taken on this host and its pid no longer runs (a `kill -9`, a crash, a closed laptop
  lid on the same machine), or
- its heartbeat is older than `STALE_AFTER_SECONDS` (a holder on another machine that died).

A live holder makes a second deploy fail fast naming it (no waiting: a deploy takes minutes, and
the user decides). `--break-lock` still removes any lock unconditionally.

Taking over is claimed through `create_exclusive` of a marker named by the stale lock's token, so
of two deploys that find the same stale lock only one takes it over. The holder checks its token
on every heartbeat; a lost lock (taken over because this holder looked dead, e.g. a machine that
slept) is reported by `DeployLock.check()`, which the engine calls before switching anything.

This works on any `Share`; a target whose storage has real leases (Azure Files) holds a lease on
the lock file as well, so that a second writer is refused by the storage itself.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

from provision.errors import OperationError
from provision.processes import pid_alive
from provision.release import LOCK
from provision.share import Share

HEARTBEAT_SECONDS = 5.0
STALE_AFTER_SECONDS = 60.0
TAKEOVER_MARKER = f"{LOCK}.takeover"


@dataclass(frozen=True)
class LockInfo:
    holder: str
    host: str
    pid: int
    since: str
    heartbeat: float  # seconds since the epoch: when taken, then the latest beat
    token: str

    def describe(self) -> str:
        beat = datetime.fromtimestamp(self.heartbeat, UTC).isoformat(timespec="seconds")
        return f"{self.holder} (pid {self.pid}) since {self.since}, last heartbeat {beat}"

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()


def _parse(data: bytes) -> LockInfo | None:
    try:
        raw = json.loads(data)
        return LockInfo(
            holder=str(raw["holder"]),
            host=str(raw.get("host", "")),
            pid=int(raw["pid"]),
            since=str(raw["since"]),
            heartbeat=float(raw.get("heartbeat", 0.0)),
            token=str(raw.get("token", "")),
        )
    except (ValueError, KeyError, TypeError):
        return None


def _beat_path(token: str) -> str:
    return f"{LOCK}.beat-{token}"


def _read(share: Share) -> tuple[bytes, LockInfo | None] | None:
    """The lock file as stored, and what it says with its latest heartbeat."""
    try:
        data = share.read_bytes(LOCK)
    except (OSError, KeyError):
        return None
    info = _parse(data)
    if info is not None and info.token:
        with contextlib.suppress(OSError, KeyError, ValueError):
            beat = float(share.read_bytes(_beat_path(info.token)))
            info = replace(info, heartbeat=max(info.heartbeat, beat))
    return data, info


def stale_reason(
    info: LockInfo | None,
    now: float,
    host: str,
    alive: Callable[[int], bool] = pid_alive,
    stale_after: float = STALE_AFTER_SECONDS,
) -> str | None:
    """Why the lock's holder is gone, or None when it may still be running."""
    if info is None:
        return "the lock file is unreadable"
    if info.host == host and not alive(info.pid):
        return f"pid {info.pid} no longer runs on {host}"
    age = now - info.heartbeat
    if age > stale_after:
        return f"no heartbeat for {age:.0f}s (more than {stale_after:.0f}s)"
    return None


class DeployLock:
    """A held lock: refreshes its heartbeat in a thread until released."""

    def __init__(self, share: Share, info: LockInfo, heartbeat_seconds: float) -> None:
        self.share = share
        self.info = info
        self._stop = threading.Event()
        self._lost: str | None = None
        self._beaten = False  # whether a heartbeat file was written (and must be deleted)
        self._thread = threading.Thread(
            target=self._beat, args=(heartbeat_seconds,), name="deploy-lock-heartbeat", daemon=True
        )
        self._thread.start()

    def _owned(self) -> bool:
        """Whether the lock file still names this holder (the token is in the lock file
        itself: one read, no heartbeat needed)."""
        try:
            info = _parse(self.share.read_bytes(LOCK))
        except (OSError, KeyError):
            return False
        return info is not None and info.token == self.info.token

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            if not self._owned():
                self._lost = "another deploy took the lock over (this one looked dead)"
                return
            with contextlib.suppress(OSError):  # a missed beat is fine; the next one retries
                self._beaten = True  # set first: a write cut short may still leave the file
                self.share.write_bytes(_beat_path(self.info.token), str(time.time()).encode())

    def check(self) -> None:
        """Raise when the lock was lost: nothing may be switched any more."""
        if self._lost is not None:
            raise OperationError(f"{LOCK} on {self.share.describe()}: {self._lost}; rerun deploy")

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        self.share.release_exclusive(LOCK)  # left alone when another deploy took it over
        if self._beaten:
            self.share.delete(_beat_path(self.info.token))


def _new_info() -> LockInfo:
    host = socket.gethostname()
    return LockInfo(
        holder=f"{getpass.getuser()}@{host}",
        host=host,
        pid=os.getpid(),
        since=datetime.now(UTC).isoformat(timespec="seconds"),
        heartbeat=time.time(),
        token=secrets.token_hex(8),
    )


def acquire(
    share: Share,
    progress: Callable[[str], None],
    break_lock: bool = False,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
    stale_after: float = STALE_AFTER_SECONDS,
) -> DeployLock:
    if break_lock:
        share.delete(LOCK)
    info = _new_info()
    if share.create_exclusive(LOCK, info.to_json()):
        return DeployLock(share, info, heartbeat_seconds)
    found = _read(share)
    if found is None:  # released between our attempt and the read: try once more
        if share.create_exclusive(LOCK, info.to_json()):
            return DeployLock(share, info, heartbeat_seconds)
        found = _read(share)
    held = found[1] if found else None
    reason = stale_reason(held, time.time(), info.host, stale_after=stale_after)
    whose = held.describe() if held else "an unknown holder"
    if reason is None:
        raise OperationError(
            f"another deploy holds {LOCK} on {share.describe()}: {whose}; wait for it to "
            "finish (a lock whose holder dies is taken over automatically)"
        )
    # One taker per stale lock: the marker is named by the stale lock's token.
    marker = f"{TAKEOVER_MARKER}.{held.token if held and held.token else 'unknown'}"
    claimed = share.create_exclusive(marker, info.to_json())
    if not claimed or _read(share) != found:  # another deploy took it over first
        if claimed:
            share.delete(marker)
        raise OperationError(
            f"another deploy is taking over the stale {LOCK} on {share.describe()} "
            f"({whose}); rerun in a moment"
        )
    progress(f"took over the deploy lock of {whose}: {reason}")
    share.delete(LOCK)
    if held is not None and held.token:
        share.delete(_beat_path(held.token))
    taken = share.create_exclusive(LOCK, info.to_json())
    share.delete(marker)
    if not taken:
        raise OperationError(
            f"another deploy took {LOCK} on {share.describe()} at the same moment; rerun"
        )
    return DeployLock(share, info, heartbeat_seconds)


@contextmanager
def deploy_lock(
    share: Share, progress: Callable[[str], None], break_lock: bool = False
) -> Iterator[DeployLock]:
    lock = acquire(share, progress, break_lock)
    try:
        yield lock
    finally:
        lock.release()

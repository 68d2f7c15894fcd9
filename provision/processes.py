"""Is a process still running? Used by the deploy lock (is its holder alive) and the local
replica (is it still serving)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def _is_zombie(pid: int) -> bool:
    # A replica started by an earlier `aca-infer` run is not our child; once it exits it may
    # linger as a zombie until its new parent reaps it, and it still answers kill(0).
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return not _is_zombie(pid)

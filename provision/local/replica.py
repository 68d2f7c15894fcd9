"""The local replica: `python app/bootstrap.py` from the local share, in its own session,
exactly as the container starts it, with a pid file and a log file."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from provision.readiness import wait_until_ready
from provision.release import BOOTSTRAP
from provision.targets import Progress, ReadyState

STOP_GRACE_SECONDS = 10.0


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


class LocalReplica:
    def __init__(
        self,
        state_dir: Path,
        share_dir: Path,
        environment: Mapping[str, str],
        ready_url: str,
    ) -> None:
        self.pid_file = state_dir / "replica.pid"
        self.log_file = state_dir / "replica.log"
        self.share_dir = share_dir
        self.environment = dict(environment)
        self.ready_url = ready_url

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def is_running(self) -> bool:
        return self.pid() is not None

    def stop(self) -> bool:
        pid = self.pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        # The replica leads its own process group: signal the group so no child outlives it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        return True

    def restart(self) -> None:
        self.stop()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACA_INFER_")}
        env.update(self.environment)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, str(self.share_dir / BOOTSTRAP)],
                cwd=self.share_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{process.pid}\n")

    def _gone_reason(self) -> str | None:
        if self.is_running():
            return None
        return f"the replica process exited; last log lines:\n{self.logs(15)}"

    def wait_ready(self, timeout: float, progress: Progress) -> ReadyState:
        if not self.is_running():
            return ReadyState(False, "the replica is not running")
        return wait_until_ready(self.ready_url, timeout, self._gone_reason, progress)

    def logs(self, lines: int = 40) -> str:
        if not self.log_file.is_file():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

"""The local replica: `python app/bootstrap.py` from the local share, in its own session,
exactly as the container starts it, with a record of the running process and a log file.

`replica.json` records what runs: the pid, the endpoint, the release started, the instance id
generated for this start (`ACA_INFER_INSTANCE_ID`, reported by the server's /health) and the
parameter values it was started with, so a later command can prove who answers on the port and
tell which changed settings still wait for a restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from provision.errors import OperationError
from provision.fsutil import write_json_atomic
from provision.local.events import record_event
from provision.readiness import wait_until_ready
from provision.release import BOOTSTRAP, CURRENT
from provision.targets import Progress, ReadyState, ReplicaIdentity

RECORD_FILE = "replica.json"
LOG_FILE = "replica.log"

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


def port_is_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:port now (as uvicorn binds: SO_REUSEADDR, so
    connections of an earlier server still in TIME_WAIT do not count as busy)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass(frozen=True)
class ReplicaRecord:
    pid: int
    instance_id: str
    release: str | None
    endpoint: str
    port: int
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> ReplicaIdentity:
        return ReplicaIdentity(self.endpoint, self.release, self.instance_id)


def read_record(state_dir: Path) -> ReplicaRecord | None:
    """The running replica's record; None when there is none or its process is gone."""
    try:
        record = ReplicaRecord(**json.loads((state_dir / RECORD_FILE).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return record if pid_alive(record.pid) else None


@dataclass(frozen=True)
class ReplicaLaunch:
    """How the next start runs: the server's environment, its port, and the parameter values
    behind them (recorded, to tell later which changed)."""

    environment: Mapping[str, str]
    port: int
    settings: Mapping[str, Any]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class LocalReplica:
    def __init__(self, state_dir: Path, share_dir: Path, launch: ReplicaLaunch) -> None:
        self.state_dir = state_dir
        self.record_file = state_dir / RECORD_FILE
        self.log_file = state_dir / LOG_FILE
        self.share_dir = share_dir
        self.launch = launch

    def record(self) -> ReplicaRecord | None:
        return read_record(self.state_dir)

    def is_running(self) -> bool:
        return self.record() is not None

    def identity(self) -> ReplicaIdentity | None:
        record = self.record()
        return record.identity if record else None

    def settings_changed(self) -> list[str]:
        record = self.record()
        if record is None:
            return []
        wanted = self.launch.settings
        return [name for name in wanted if record.settings.get(name) != wanted[name]]

    def stop(self) -> bool:
        record = self.record()
        self.record_file.unlink(missing_ok=True)
        if record is None:
            return False
        pid = record.pid
        # The replica leads its own process group: signal the group so no child outlives it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        record_event(self.state_dir, f"replica stopped: pid {pid}, release {record.release}")
        return True

    def restart(self) -> None:
        self.stop()
        port = self.launch.port
        if not port_is_free(port):
            raise OperationError(
                f"port {port} is in use by another process, so the replica cannot listen there; "
                "stop that process, or choose another port: aca-infer provision --target local "
                "--set localPort=0"
            )
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        instance_id = secrets.token_hex(8)
        release = _read_current(self.share_dir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACA_INFER_")}
        env.update(self.launch.environment)
        env["ACA_INFER_INSTANCE_ID"] = instance_id
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
        record = ReplicaRecord(
            pid=process.pid,
            instance_id=instance_id,
            release=release,
            endpoint=self.launch.endpoint,
            port=port,
            settings=dict(self.launch.settings),
        )
        write_json_atomic(self.record_file, asdict(record))
        record_event(
            self.state_dir,
            f"replica started: pid {process.pid}, release {release}, port {port}, "
            f"instance {instance_id}",
        )

    def _gone_reason(self) -> str | None:
        if self.is_running():
            return None
        return f"the replica process exited; last log lines:\n{self.logs(15)}"

    def wait_ready(self, timeout: float, progress: Progress) -> ReadyState:
        record = self.record()
        if record is None:
            return ReadyState(False, "the replica is not running")
        return wait_until_ready(record.identity, timeout, self._gone_reason, progress)

    def logs(self, lines: int = 40) -> str:
        if not self.log_file.is_file():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


def _read_current(share_dir: Path) -> str | None:
    # The release the bootstrap will start: `current`, read just before the start.
    try:
        return (share_dir / CURRENT).read_text().strip() or None
    except OSError:
        return None

"""The local replica: `python app/bootstrap.py` from the local share, in its own session,
exactly as the container starts it, behind the front proxy that owns the public port.

Each start is pinned to a release (`ACA_INFER_RELEASE`, which the bootstrap reads first)
and listens on a private port; the front proxy (`front_proxy.py`) routes the public port to the
live one. `roll_out` starts the next replica beside the running one and switches the route only
once it is ready, then lets the old one finish its requests and stops it: no request fails
during a deploy, a rollback or a key change. `restart` keeps the in-place restart.

`replica.json` records what runs: the pid, the public endpoint, the private port, the release
started, the instance id generated for this start (`ACA_INFER_INSTANCE_ID`, reported by the
server's /health), its log file and the parameter values it was started with, so a later command
can prove who answers on the port and tell which changed settings still wait for a restart.
`candidate.json` names a replica being started beside the live one, so one left behind by a
killed deploy is stopped by the next command. `front.json` (0600) records the proxy.
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

import httpx

from provision.errors import OperationError
from provision.fsutil import write_json_atomic
from provision.local.events import record_event
from provision.local.front_proxy import CONTROL_PATH, TOKEN_HEADER
from provision.local.share import LocalShare
from provision.processes import pid_alive
from provision.readiness import wait_until_ready
from provision.release import BOOTSTRAP
from provision.release_history import read_current
from provision.targets import Progress, ReadyState, ReplicaIdentity

RECORD_FILE = "replica.json"
CANDIDATE_FILE = "candidate.json"
FRONT_FILE = "front.json"
FRONT_LOG = "front.log"
LOG_FILE = "replica.log"

STOP_GRACE_SECONDS = 10.0
# How long a take-over lets the old replica finish its requests (streams included) before
# stopping it: the longest request Azure's ingress lets through (240 s idle timeout).
DRAIN_SECONDS = 240.0
FRONT_START_SECONDS = 20.0
FAILED_LOG_LINES = 15


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


def any_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class ReplicaRecord:
    pid: int
    instance_id: str
    release: str | None
    endpoint: str  # the public endpoint, through the front proxy
    port: int  # the public port
    settings: Mapping[str, Any] = field(default_factory=dict)
    private_port: int = 0
    log_file: str = LOG_FILE

    @property
    def identity(self) -> ReplicaIdentity:
        return ReplicaIdentity(self.endpoint, self.release, self.instance_id)

    @property
    def private_identity(self) -> ReplicaIdentity:
        return ReplicaIdentity(
            f"http://127.0.0.1:{self.private_port}", self.release, self.instance_id
        )


@dataclass(frozen=True)
class FrontRecord:
    pid: int
    port: int
    token: str

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CONTROL_PATH}"


def _read_alive(path: Path, kind: type[Any]) -> Any:
    try:
        record = kind(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return record if pid_alive(record.pid) else None


def read_record(state_dir: Path) -> ReplicaRecord | None:
    """The running replica's record; None when there is none or its process is gone."""
    record: ReplicaRecord | None = _read_alive(state_dir / RECORD_FILE, ReplicaRecord)
    return record


def read_front(state_dir: Path) -> FrontRecord | None:
    """The running front proxy's record; None when there is none or its process is gone."""
    record: FrontRecord | None = _read_alive(state_dir / FRONT_FILE, FrontRecord)
    return record


def _kill_group(pid: int) -> None:
    # Each process leads its own process group: signal the group so no child outlives it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


@dataclass(frozen=True)
class ReplicaLaunch:
    """How the next start runs: the server's environment, its public port, and the parameter
    values behind them (recorded, to tell later which changed)."""

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
        self.candidate_file = state_dir / CANDIDATE_FILE
        self.front_file = state_dir / FRONT_FILE
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

    # -- processes -----------------------------------------------------------------------

    def _stop_candidate(self) -> None:
        """A replica left starting by a deploy that was killed: never serving, stop it."""
        leftover: ReplicaRecord | None = _read_alive(self.candidate_file, ReplicaRecord)
        live = self.record()
        if leftover is not None and (live is None or leftover.pid != live.pid):
            _kill_group(leftover.pid)
            (self.state_dir / leftover.log_file).unlink(missing_ok=True)
        self.candidate_file.unlink(missing_ok=True)

    def _stop_replica(self) -> bool:
        self._stop_candidate()
        record = self.record()
        self.record_file.unlink(missing_ok=True)
        if record is None:
            return False
        _kill_group(record.pid)
        (self.state_dir / record.log_file).unlink(missing_ok=True)
        record_event(self.state_dir, f"replica stopped: pid {record.pid}, release {record.release}")
        return True

    def stop(self) -> bool:
        """Stop the replica and the front proxy: the endpoint goes away."""
        stopped = self._stop_replica()
        front = read_front(self.state_dir)
        self.front_file.unlink(missing_ok=True)
        if front is not None:
            _kill_group(front.pid)
        return stopped

    def _spawn(self, release: str | None) -> ReplicaRecord:
        """Start a replica pinned to `release` on a private port; recorded as the candidate."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        instance_id = secrets.token_hex(8)
        private_port = any_free_port()
        log_name = f"replica-{instance_id}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACA_INFER_")}
        env.update(self.launch.environment)
        env["ACA_INFER_PORT"] = str(private_port)
        env["ACA_INFER_INSTANCE_ID"] = instance_id
        if release is not None:
            env["ACA_INFER_RELEASE"] = release
        with (self.state_dir / log_name).open("ab") as log:
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
            port=self.launch.port,
            settings=dict(self.launch.settings),
            private_port=private_port,
            log_file=log_name,
        )
        write_json_atomic(self.candidate_file, asdict(record))
        record_event(
            self.state_dir,
            f"replica started: pid {process.pid}, release {release}, port {self.launch.port}, "
            f"instance {instance_id}",
        )
        return record

    def _promote(self, record: ReplicaRecord) -> None:
        write_json_atomic(self.record_file, asdict(record))
        self.candidate_file.unlink(missing_ok=True)

    # -- the front proxy -----------------------------------------------------------------

    def _front(self, backend: int | None) -> FrontRecord:
        """The front proxy on the public port, started (routing to `backend`) if needed."""
        front = read_front(self.state_dir)
        if front is not None and front.port == self.launch.port:
            return front
        if front is not None:  # localPort changed: the endpoint moves
            _kill_group(front.pid)
            self.front_file.unlink(missing_ok=True)
        port = self.launch.port
        if not port_is_free(port):
            raise OperationError(
                f"port {port} is in use by another process, so the replica cannot listen there; "
                "stop that process, or choose another port: aca-infer provision --target local "
                "--set localPort=0"
            )
        token = secrets.token_urlsafe(24)
        env = {**os.environ, "ACA_INFER_FRONT_PORT": str(port), "ACA_INFER_FRONT_TOKEN": token}
        if backend is not None:
            env["ACA_INFER_FRONT_BACKEND"] = str(backend)
        with (self.state_dir / FRONT_LOG).open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "provision.local.front_proxy"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        front = FrontRecord(process.pid, port, token)
        write_json_atomic(self.front_file, asdict(front), mode=0o600)
        self._await_front(front)
        return front

    def _await_front(self, front: FrontRecord) -> None:
        deadline = time.monotonic() + FRONT_START_SECONDS
        while True:
            with contextlib.suppress(httpx.HTTPError):
                self._control(front)
                return
            if not pid_alive(front.pid) or time.monotonic() >= deadline:
                log = (self.state_dir / FRONT_LOG).read_text(errors="replace").splitlines()
                raise OperationError(
                    f"the front proxy on port {front.port} did not start: " + " | ".join(log[-3:])
                )
            time.sleep(0.1)

    def _control(self, front: FrontRecord, backend: int | None = None) -> dict[str, Any]:
        headers = {TOKEN_HEADER: front.token}
        with httpx.Client(timeout=5.0) as client:
            if backend is None:
                response = client.get(front.control_url, headers=headers)
            else:
                response = client.put(front.control_url, headers=headers, json={"backend": backend})
        response.raise_for_status()
        state: dict[str, Any] = response.json()
        return state

    def _drain(self, front: FrontRecord, port: int, progress: Progress) -> None:
        """Wait until the proxy has no request in flight to `port` (at most DRAIN_SECONDS)."""
        if str(port) in self._control(front)["in_flight"]:
            progress(f"let the old replica finish its requests (at most {DRAIN_SECONDS:.0f}s)")
        deadline = time.monotonic() + DRAIN_SECONDS
        while str(port) in self._control(front)["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)

    # -- the Replica protocol ------------------------------------------------------------

    def restart(self, release: str | None = None) -> None:
        """In place: stop the running replica, start one on `release` (default: the live one)."""
        self._stop_replica()
        front = self._front(None)
        record = self._spawn(release or _read_current(self.share_dir))
        self._control(front, record.private_port)
        self._promote(record)

    def roll_out(self, release: str, timeout: float, progress: Progress) -> ReadyState:
        """Start a replica on `release` beside the running one; once it is ready the front proxy
        routes to it, the old one finishes its requests and stops. A replica that does not get
        ready is stopped; the old one kept serving throughout. Without a running replica this is
        a start in place."""
        self._stop_candidate()
        old = self.record()
        front = read_front(self.state_dir)
        if old is None or front is None or front.port != self.launch.port:
            self.restart(release)
            return self.wait_ready(timeout, progress)
        new = self._spawn(release)
        progress(f"start release {release} beside the running {old.release}")

        def gone() -> str | None:
            if pid_alive(new.pid):
                return None
            return "the replica process exited"

        state = wait_until_ready(new.private_identity, timeout, gone, progress)
        if not state.ready:
            _kill_group(new.pid)
            lines = self._log_tail(new.log_file, FAILED_LOG_LINES)
            (self.state_dir / new.log_file).unlink(missing_ok=True)
            self.candidate_file.unlink(missing_ok=True)
            return ReadyState(False, f"{state.reason}; last log lines:\n{lines}")
        self._control(front, new.private_port)
        self._promote(new)
        progress(f"release {release} took over {self.launch.endpoint}; stop {old.release}")
        self._drain(front, old.private_port, progress)
        _kill_group(old.pid)
        (self.state_dir / old.log_file).unlink(missing_ok=True)
        record_event(
            self.state_dir,
            f"replica took over: pid {new.pid} (release {release}) replaced pid {old.pid} "
            f"(release {old.release})",
        )
        return ReadyState(True)

    def _gone_reason(self) -> str | None:
        if self.is_running():
            return None
        return f"the replica process exited; last log lines:\n{self.logs(FAILED_LOG_LINES)}"

    def wait_ready(self, timeout: float, progress: Progress) -> ReadyState:
        record = self.record()
        if record is None:
            return ReadyState(False, "the replica is not running")
        return wait_until_ready(record.identity, timeout, self._gone_reason, progress)

    def _log_tail(self, name: str, lines: int) -> str:
        path = self.state_dir / name
        if not path.is_file():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def log_path(self) -> Path | None:
        """The live replica's log; after a crash its record is gone, so the newest log."""
        record: ReplicaRecord | None = None
        with contextlib.suppress(OSError, ValueError, TypeError):
            record = ReplicaRecord(**json.loads(self.record_file.read_text()))
        if record is not None:
            return self.state_dir / record.log_file
        logs = sorted(self.state_dir.glob("replica*.log"), key=lambda p: p.stat().st_mtime)
        return logs[-1] if logs else None

    def logs(self, lines: int = 40) -> str:
        path = self.log_path()
        return self._log_tail(path.name, lines) if path else ""


def _read_current(share_dir: Path) -> str | None:
    # The release the replica pins when none is named: the live one, read just before the start.
    try:
        return read_current(LocalShare(share_dir))
    except OSError:
        return None

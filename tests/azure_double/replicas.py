"""Real replica processes for the double's container app revisions.

A replica is `sys.executable` running the container's command, with every argument and
environment value that starts with a volume's mount path rewritten to that volume's share folder
(the double's stand-in for the SMB mount), the revision's environment (secrets already resolved),
and the double's own `ACA_INFER_PORT` / `ACA_INFER_HOST` / `ACA_INFER_RUNTIME_DIR`.

Readiness is the revision's readiness probe (else its startup probe) answering 200 over HTTP, as
ACA's probes do. A container that exits is restarted, as ACA (Kubernetes) restarts a crashed
container, until the startup budget runs out; then the replica is failed. Console output is kept
per replica (stdout and stderr merged) for the log stream.
"""

from __future__ import annotations

import collections
import contextlib
import datetime
import http.client
import os
import secrets
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
CONSOLE_LINES_KEPT = 5000
PROBE_TIMEOUT_S = 2.0
# The shortest wait before a crashed container restarts (however far the backoff is scaled).
MIN_RESTART_BACKOFF_S = 0.05
_ALPHABET = string.ascii_lowercase + string.digits


def random_suffix(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


class CommandNotRunnable(ValueError):
    """The container's command is not a Python command the double can run."""


def python_argv(command: list[str]) -> list[str]:
    """The container's command run by this interpreter: `python x.py` -> `sys.executable x.py`."""
    if not command or not Path(command[0]).name.startswith("python"):
        raise CommandNotRunnable(
            f"the double runs only Python commands (python ...), got {command[:1] or 'none'}"
        )
    return [sys.executable, *command[1:]]


def rewrite_mounts(value: str, mounts: dict[str, Path]) -> str:
    """'/mount/app/x' -> '<share folder>/app/x' for the longest mount path that prefixes it."""
    for mount_path in sorted(mounts, key=len, reverse=True):
        prefix = mount_path.rstrip("/")
        if value == prefix or value.startswith(prefix + "/"):
            return str(mounts[mount_path]) + value[len(prefix) :]
    return value


@dataclass(frozen=True)
class Probe:
    path: str
    initial_delay_s: float
    period_s: float
    failure_threshold: int

    def budget_s(self) -> float:
        return self.initial_delay_s + self.period_s * self.failure_threshold


@dataclass(frozen=True)
class ReplicaSpec:
    """What a replica runs; frozen at replica start (a secret changed later is not seen)."""

    container_name: str
    argv: list[str]
    env: dict[str, str]
    mounts: dict[str, Path]
    ready_probe: Probe | None
    startup_budget_s: float
    probe_interval_s: float
    stop_grace_s: float
    # Kubernetes' crash-loop backoff: the first restart waits this long, each next one twice as
    # long, up to the cap (10 s and 300 s on ACA; scaled down in tests with the probe budgets).
    restart_backoff_s: float = 10.0
    restart_backoff_cap_s: float = 300.0
    crash_at_start: bool = False
    # Why the container cannot start at all (a command the double cannot run): every start
    # fails with this line on the console.
    start_error: str = ""

    def backoff_s(self, restarts: int) -> float:
        wait = min(self.restart_backoff_s * 2 ** min(restarts, 16), self.restart_backoff_cap_s)
        return max(wait, MIN_RESTART_BACKOFF_S)


@dataclass
class ConsoleLine:
    time: str
    text: str


@dataclass
class Replica:
    """One replica: its process (restarted when it exits), its readiness and its console."""

    name: str
    spec: ReplicaSpec
    runtime_root: Path
    created: str = field(default_factory=now_iso)
    port: int = 0
    restart_count: int = 0
    # Starting -> Running (ready) | Failed (never ready in its budget); Stopped once stopped.
    state: str = "Starting"
    state_details: str = ""
    console_total: int = 0
    console: collections.deque[ConsoleLine] = field(
        default_factory=lambda: collections.deque(maxlen=CONSOLE_LINES_KEPT)
    )

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._settled = threading.Event()  # ready or failed
        self._console_changed = threading.Condition()
        self.runtime_dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=self.runtime_root))
        self._supervisor = threading.Thread(
            target=self._supervise, name=f"replica-{self.name}", daemon=True
        )

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._supervisor.start()

    def stop(self) -> None:
        """SIGTERM to the replica's process group, SIGKILL after the grace period (as ACA)."""
        self._stopping.set()
        self._settled.set()
        self._terminate()
        if self._supervisor.is_alive() and threading.current_thread() is not self._supervisor:
            self._supervisor.join(timeout=self.spec.stop_grace_s + 5)
        if self.state != "Failed":  # a failed replica keeps saying why
            self._set_state("Stopped", "")

    @property
    def finished(self) -> bool:
        """Stopped or failed: its console gets no more lines."""
        return self.state in ("Stopped", "Failed")

    def wait_settled(self, timeout: float | None = None) -> bool:
        """True once the replica is ready; False when it failed, was stopped or timed out."""
        self._settled.wait(timeout)
        return self._ready.is_set() and not self._stopping.is_set()

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and not self._stopping.is_set() and self._alive()

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None else None

    def _alive(self) -> bool:
        process = self._process
        return process is not None and process.poll() is None

    def _set_state(self, state: str, details: str) -> None:
        with self._lock:
            self.state, self.state_details = state, details

    # ---- the supervisor thread -------------------------------------------------------------
    def _supervise(self) -> None:
        deadline = time.monotonic() + self.spec.startup_budget_s
        failure = (
            f"the replica did not pass its startup/readiness probe within "
            f"{self.spec.startup_budget_s:.1f}s"
        )
        while not self._stopping.is_set():
            cannot_start = self._launch()
            if cannot_start:
                failure = cannot_start
                break
            if not self._ready.is_set():
                self._await_ready(deadline)
            if self._ready.is_set():
                self._settled.set()
            self._wait_exit()
            if self._stopping.is_set():
                break
            code = self._process.returncode if self._process else None
            self._log_system(f"container '{self.spec.container_name}' exited with code {code}")
            if not self._ready.is_set() and time.monotonic() >= deadline:
                break
            if self._ready.is_set():  # crashed after it served: the next start gets a budget
                deadline = time.monotonic() + self.spec.startup_budget_s
            self._ready.clear()
            self._set_state("Starting", f"container exited with code {code}; restarting")
            self.restart_count += 1
            if self._stopping.wait(self.spec.backoff_s(self.restart_count - 1)):
                break
        if not self._stopping.is_set():
            self._terminate()
            self._set_state("Failed", f"{failure} ({self.restart_count} restarts)")
        self._settled.set()

    def _launch(self) -> str | None:
        """Start the container's process; None when started, else why it cannot start."""
        problem = None
        if self.spec.start_error:
            problem = f"failed to start container: {self.spec.start_error}"
        for mount_path, folder in self.spec.mounts.items():
            if problem is None and not folder.is_dir():
                problem = f"failed to mount volume at {mount_path}: {folder} does not exist"
        if problem is not None:
            self._log_system(problem)
            return problem
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACA_INFER_")}
        env.update({k: rewrite_mounts(v, self.spec.mounts) for k, v in self.spec.env.items()})
        env.update(
            {
                "ACA_INFER_PORT": str(self.port),
                "ACA_INFER_HOST": LOOPBACK,
                "ACA_INFER_RUNTIME_DIR": str(self.runtime_dir),
                "CONTAINER_APP_REPLICA_NAME": self.name,
                "PYTHONUNBUFFERED": "1",
            }
        )
        argv = [rewrite_mounts(a, self.spec.mounts) for a in self.spec.argv]
        if self.spec.crash_at_start:
            argv = [sys.executable, "-c", "raise SystemExit('replica crashed at start')"]
        self._process = subprocess.Popen(
            argv,
            cwd=self.runtime_dir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        threading.Thread(
            target=self._pump_console,
            args=(self._process,),
            name=f"console-{self.name}",
            daemon=True,
        ).start()
        self._set_state("Starting", "")
        return None

    def _await_ready(self, deadline: float) -> None:
        probe = self.spec.ready_probe
        while not self._stopping.is_set() and self._alive() and time.monotonic() < deadline:
            if probe is None or self._probe(probe.path):
                self._ready.set()
                self._set_state("Running", "")
                return
            self._stopping.wait(self.spec.probe_interval_s)
        if self._alive() and not self._stopping.is_set():
            self._log_system(
                f"startup probe failed: {probe.path if probe else ''} never answered 200"
            )
            self._terminate()

    def _probe(self, path: str) -> bool:
        connection = http.client.HTTPConnection(LOOPBACK, self.port, timeout=PROBE_TIMEOUT_S)
        try:
            connection.request("GET", path)
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def _wait_exit(self) -> None:
        process = self._process
        while process is not None and process.poll() is None and not self._stopping.is_set():
            self._stopping.wait(0.1)

    def _terminate(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(self.spec.stop_grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    # ---- console ---------------------------------------------------------------------------
    def _pump_console(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with process.stdout:
            for raw in iter(process.stdout.readline, b""):
                self._append(raw.decode(errors="replace").rstrip("\r\n"))

    def _log_system(self, text: str) -> None:
        self._append(f"[double] {text}")

    def _append(self, text: str) -> None:
        with self._console_changed:
            self.console.append(ConsoleLine(now_iso(), text))
            self.console_total += 1
            self._console_changed.notify_all()

    def console_lines(self, tail: int | None = None) -> list[ConsoleLine]:
        return self.console_snapshot(tail)[0]

    def console_snapshot(self, tail: int | None = None) -> tuple[list[ConsoleLine], int]:
        """The last `tail` lines (all when None) and how many were ever appended, together, so
        a follower continues exactly after them."""
        with self._console_changed:
            lines = list(self.console)
            total = self.console_total
        return (lines if tail is None else lines[-tail:] if tail else []), total

    def lines_after(self, seen: int, timeout: float) -> tuple[list[ConsoleLine], int]:
        """Lines appended after the first `seen` ones (waiting up to timeout for one), and the
        new total: what a following log stream sends next."""
        with self._console_changed:
            self._console_changed.wait_for(lambda: self.console_total > seen, timeout)
            fresh = min(self.console_total - seen, len(self.console))
            lines = list(self.console)[len(self.console) - fresh :] if fresh else []
            return lines, self.console_total

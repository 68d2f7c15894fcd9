"""What runs behind one container app in the double: its revisions' replicas, which revision takes
the traffic, the ingress route (cold start when scaled to zero) and the idle scale-in.

The rules are ACA's (learn.microsoft.com/azure/container-apps/application-lifecycle-management and
revisions): in Single revision mode a new revision takes traffic only once one of its replicas
is ready, then the previous revision is deactivated (its replicas drain and stop); a revision
that never gets ready leaves the previous one serving. A revision restart starts a new replica
beside the old one and stops the old one once the new one is ready (ACA replaces replicas the
way Kubernetes rolls a deployment), so a restart with a working readiness probe drops nothing.
One replica per revision: the double does not scale out.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.azure_double.ingress import Unavailable
from tests.azure_double.replicas import Replica, ReplicaSpec, random_suffix

STOPPED_PAGE = "Error 404 - This Container App is stopped or does not exist."
NO_REVISION_PAGE = "Error 404 - This Container App has no active revision."
NOT_READY_PAGE = (
    "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
)


@dataclass
class RevisionRuntime:
    name: str
    min_replicas: int
    pod_template: str = field(default_factory=lambda: random_suffix(10))
    active: bool = True
    # Provisioning until one replica was ready once; then Provisioned; Failed if it never was.
    provisioning: str = "Provisioning"
    failure: str = ""
    serving: Replica | None = None
    starting: Replica | None = None
    # A replica that never got ready stays listed (not running) until the revision is
    # deactivated, as ACA lists a crash-looping replica; its console stays readable.
    failed: Replica | None = None
    stopped: list[Replica] = field(default_factory=list)  # kept for the log stream

    def replicas(self) -> list[Replica]:
        return [r for r in (self.serving, self.starting) if r is not None]


class AppRuntime:
    """Thread-safe; every waiting step runs outside the lock."""

    def __init__(
        self,
        name: str,
        single_mode: bool,
        spec_for: Callable[[str], ReplicaSpec],
        runtime_root: Path,
        idle_seconds: Callable[[], float],
    ) -> None:
        self.name = name
        self.single_mode = single_mode
        self._spec_for = spec_for
        self._runtime_root = runtime_root
        self._idle_seconds = idle_seconds
        self._lock = threading.Condition()
        self.revisions: dict[str, RevisionRuntime] = {}
        self.traffic: str | None = None  # the revision taking all traffic
        self.stopped = False
        self._in_flight: dict[str, int] = {}
        self._last_activity = time.monotonic()
        self._closed = threading.Event()
        self._idle_thread = threading.Thread(
            target=self._scale_in_when_idle, name=f"idle-{name}", daemon=True
        )
        self._idle_thread.start()

    # ---- revisions -------------------------------------------------------------------------
    def roll_out(self, revision: str, min_replicas: int, done: Callable[[bool, str], None]) -> None:
        """Start a new revision; it takes the traffic once ready (then `done(True, "")`)."""
        with self._lock:
            runtime = RevisionRuntime(revision, min_replicas)
            self.revisions[revision] = runtime
            replica = self._new_replica(runtime)
            runtime.starting = replica
        threading.Thread(
            target=self._finish_roll_out, args=(runtime, replica, done), daemon=True
        ).start()

    def _finish_roll_out(
        self, runtime: RevisionRuntime, replica: Replica, done: Callable[[bool, str], None]
    ) -> None:
        replica.start()
        ready = replica.wait_settled()
        drained: list[Replica] = []
        with self._lock:
            if runtime.starting is replica:
                runtime.starting = None
            if not ready:
                runtime.provisioning = "Failed"
                runtime.failure = replica.state_details or "the revision was stopped"
                runtime.failed = replica
            else:
                runtime.provisioning = "Provisioned"
                runtime.serving = replica
                self._last_activity = time.monotonic()
                if self.single_mode or self.traffic is None:
                    self.traffic = runtime.name
                if self.single_mode:  # every other revision is deactivated once this one serves
                    for other in self.revisions.values():
                        if other is not runtime and other.active:
                            other.active = False
                            drained.extend(self._take_replicas(other))
            self._lock.notify_all()
        if not ready:
            replica.stop()
        self._drain_and_stop(drained)
        done(ready, runtime.failure)

    def restart(self, revision: str) -> None:
        """New replica beside the serving one; the old one stops once the new one is ready."""
        with self._lock:
            runtime = self.revisions[revision]
            if runtime.starting is not None or self.stopped:
                return
            replica = self._new_replica(runtime)
            runtime.starting = replica
        threading.Thread(target=self._finish_restart, args=(runtime, replica), daemon=True).start()

    def _finish_restart(self, runtime: RevisionRuntime, replica: Replica) -> None:
        replica.start()
        ready = replica.wait_settled()
        old: list[Replica] = []
        with self._lock:
            if runtime.starting is replica:
                runtime.starting = None
            if ready:
                if runtime.serving is not None:
                    old = [runtime.serving]
                runtime.serving = replica
                runtime.provisioning, runtime.failure = "Provisioned", ""
                if runtime.failed is not None:
                    runtime.stopped.append(runtime.failed)
                    runtime.failed = None
                self._last_activity = time.monotonic()
            else:
                runtime.stopped.append(replica)
            self._lock.notify_all()
        if not ready:
            replica.stop()
        self._drain_and_stop(old)

    def activate(self, revision: str) -> None:
        with self._lock:
            runtime = self.revisions[revision]
            runtime.active = True
            if self.traffic is None and runtime.provisioning == "Provisioned":
                self.traffic = revision
            needs_replica = runtime.min_replicas > 0 and not runtime.replicas() and not self.stopped
        if needs_replica:
            self._start_replica(runtime)

    def deactivate(self, revision: str) -> None:
        with self._lock:
            runtime = self.revisions[revision]
            runtime.active = False
            if self.traffic == revision:
                self.traffic = None
            replicas = self._take_replicas(runtime)
        self._drain_and_stop(replicas)

    def stop_app(self) -> None:
        with self._lock:
            self.stopped = True
            replicas = [r for rev in self.revisions.values() for r in self._take_replicas(rev)]
        self._drain_and_stop(replicas)

    def start_app(self) -> None:
        with self._lock:
            self.stopped = False
            wanted = [
                rev
                for rev in self.revisions.values()
                if rev.active and rev.provisioning == "Provisioned" and rev.min_replicas > 0
            ]
        for runtime in wanted:
            self._start_replica(runtime)

    def close(self) -> None:
        """Stop every replica at once (app deleted, double stopping)."""
        self._closed.set()
        with self._lock:
            self.stopped = True
            replicas = [r for rev in self.revisions.values() for r in self._take_replicas(rev)]
            self._lock.notify_all()
        for replica in replicas:
            replica.stop()

    # ---- the ingress route -----------------------------------------------------------------
    @contextlib.contextmanager
    def route(self, wait_s: float) -> Iterator[int]:
        """The port of a ready replica of the revision taking traffic, held for one request;
        a scaled-to-zero revision is started first (the request waits for the cold start)."""
        replica = self._acquire(wait_s)
        try:
            yield replica.port
        finally:
            with self._lock:
                self._in_flight[replica.name] -= 1
                self._last_activity = time.monotonic()
                self._lock.notify_all()

    def _acquire(self, wait_s: float) -> Replica:
        deadline = time.monotonic() + wait_s
        cold_start: RevisionRuntime | None = None
        with self._lock:
            while True:
                if self.stopped:
                    raise Unavailable(404, STOPPED_PAGE)
                runtime = self.revisions.get(self.traffic) if self.traffic else None
                if runtime is None and not self._any_starting():
                    raise Unavailable(404, NO_REVISION_PAGE)
                if runtime is not None:
                    replica = runtime.serving
                    if replica is not None and replica.ready:
                        self._in_flight[replica.name] = self._in_flight.get(replica.name, 0) + 1
                        self._last_activity = time.monotonic()
                        return replica
                    if not runtime.replicas() and cold_start is None:
                        cold_start = runtime
                        break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Unavailable(503, NOT_READY_PAGE)
                self._lock.wait(min(left, 0.1))
        self._start_replica(cold_start)
        return self._acquire(max(deadline - time.monotonic(), 0.0))

    def _any_starting(self) -> bool:
        return any(rev.starting is not None for rev in self.revisions.values())

    # ---- replicas --------------------------------------------------------------------------
    def _new_replica(self, runtime: RevisionRuntime) -> Replica:
        return Replica(
            name=f"{runtime.name}-{runtime.pod_template}-{random_suffix(5)}",
            spec=self._spec_for(runtime.name),
            runtime_root=self._runtime_root,
        )

    def _start_replica(self, runtime: RevisionRuntime) -> None:
        """Activation (scale from zero, app start): the replica serves once ready."""
        with self._lock:
            if runtime.replicas() or self.stopped:
                return
            replica = self._new_replica(runtime)
            runtime.starting = replica
        threading.Thread(target=self._finish_restart, args=(runtime, replica), daemon=True).start()

    def _take_replicas(self, runtime: RevisionRuntime) -> list[Replica]:
        taken = runtime.replicas()
        runtime.stopped.extend([*taken, *([runtime.failed] if runtime.failed else [])])
        runtime.serving = runtime.starting = runtime.failed = None
        return taken

    def _drain_and_stop(self, replicas: list[Replica]) -> None:
        """Requests in flight on these replicas finish first (ACA drains before SIGTERM)."""
        for replica in replicas:

            def drained(name: str = replica.name) -> bool:
                return self._in_flight.get(name, 0) == 0 or self._closed.is_set()

            with self._lock:
                self._lock.wait_for(drained, timeout=replica.spec.stop_grace_s)
            replica.stop()

    def _scale_in_when_idle(self) -> None:
        while not self._closed.wait(min(max(self._idle_seconds() / 4, 0.05), 1.0)):
            idle = self._idle_seconds()
            victims: list[Replica] = []
            with self._lock:
                quiet = time.monotonic() - self._last_activity >= idle
                busy = any(self._in_flight.values())
                if quiet and not busy:
                    for runtime in self.revisions.values():
                        if runtime.min_replicas == 0 and runtime.starting is None:
                            victims.extend(self._take_replicas(runtime))
            for replica in victims:
                replica.stop()

    # ---- views -----------------------------------------------------------------------------
    def all_replicas(self, revision: str) -> list[Replica]:
        with self._lock:
            runtime = self.revisions.get(revision)
            if runtime is None:
                return []
            return [*runtime.replicas(), *([runtime.failed] if runtime.failed else [])]

    def logged_replicas(self, revision: str) -> list[Replica]:
        """Live and stopped replicas (newest last): the log stream can show a failed one."""
        with self._lock:
            runtime = self.revisions.get(revision)
            if runtime is None:
                return []
            return [*runtime.stopped, *self.all_replicas(revision)]

"""Faults on demand and the domain switches (`config`) the resource handlers consult."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Fault:
    """What to do to the next `times` requests that match every given criterion.

    listener: "arm", "files" or an ingress name (None: any). path: a regex searched in the
    percent-decoded path, case-insensitive. query: a substring of the raw query string.
    Action: answer `status` with `code` (ARM envelope on the ARM listener, Files XML on the files
    listener) and `headers` (e.g. {"Retry-After": "1"}); or, with drop=True, close the connection
    without answering after reading `read_bytes` of the body (None: all of it).
    """

    listener: str | None = "arm"
    method: str | None = None
    path: str | None = None
    query: str | None = None
    times: int = 1
    status: int = 500
    code: str = "InternalServerError"
    message: str = "The double injected this fault."
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    read_bytes: int | None = None
    hits: int = 0

    def matches(self, listener: str, method: str, path: str, raw_query: str) -> bool:
        return (
            (self.listener is None or self.listener == listener)
            and (self.method is None or self.method.upper() == method)
            and (self.path is None or re.search(self.path, path, re.IGNORECASE) is not None)
            and (self.query is None or self.query in raw_query)
        )

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Fault:
        known = {f.name for f in fields(cls)} - {"hits"}
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        return cls(**value)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        """Arm a fault; the returned handle counts its `hits`."""
        with self._lock:
            self._active.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._active.clear()

    def take(self, listener: str, method: str, path: str, raw_query: str) -> Fault | None:
        """The first armed fault matching the request, used up by one."""
        with self._lock:
            for fault in self._active:
                if fault.hits < fault.times and fault.matches(listener, method, path, raw_query):
                    fault.hits += 1
                    return fault
            return None

    def active(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._active if f.hits < f.times]


@dataclass
class DoubleConfig:
    """Domain switches. Settable in process or with POST /_double/config (a JSON object).

    unregistered_providers: namespaces whose registration state is NotRegistered until a
    `register` call. unavailable_profiles: location -> workload profile types not offered there.
    quota: location -> usage name -> limit. replica_crash: replicas exit at start.
    deployment_failure: the next deployments fail with this error (ARM shape, with nested
    `details`). scale_to_zero_idle_s: idle time before a minReplicas 0 app scales to zero.
    """

    locations: list[str] = field(
        default_factory=lambda: ["eastus", "westus3", "swedencentral", "australiaeast"]
    )
    unregistered_providers: set[str] = field(default_factory=set)
    unavailable_profiles: dict[str, list[str]] = field(default_factory=dict)
    quota: dict[str, dict[str, int]] = field(default_factory=dict)
    replica_crash: bool = False
    deployment_failure: dict[str, Any] | None = None
    scale_to_zero_idle_s: float = 300.0
    extra: dict[str, Any] = field(default_factory=dict)

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(sorted(unknown))}")
        for name, value in values.items():
            setattr(self, name, set(value) if name == "unregistered_providers" else value)

    def provider_registered(self, namespace: str) -> bool:
        return namespace.lower() not in {p.lower() for p in self.unregistered_providers}

    def to_json(self) -> dict[str, Any]:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["unregistered_providers"] = sorted(self.unregistered_providers)
        return values

"""The double's resources, keyed by lower-cased ARM id (ARM ids are case-insensitive)."""

from __future__ import annotations

import builtins
import copy
import threading
from typing import Any

Resource = dict[str, Any]


class Store:
    """Thread-safe; every value handed out is a copy, so callers never share state by accident."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._resources: dict[str, Resource] = {}

    def get(self, resource_id: str) -> Resource | None:
        with self._lock:
            found = self._resources.get(resource_id.lower())
            return copy.deepcopy(found) if found is not None else None

    def put(self, resource_id: str, resource: Resource) -> None:
        with self._lock:
            self._resources[resource_id.lower()] = copy.deepcopy(resource)

    def delete(self, resource_id: str) -> Resource | None:
        """Remove the resource and everything under it (children live below their parent's id)."""
        key = resource_id.lower()
        with self._lock:
            removed = self._resources.pop(key, None)
            for child in [k for k in self._resources if k.startswith(key + "/")]:
                del self._resources[child]
            return removed

    def list(self, prefix: str) -> builtins.list[Resource]:
        """Resources whose id starts with prefix, in creation order."""
        key = prefix.lower()
        with self._lock:
            return [copy.deepcopy(v) for k, v in self._resources.items() if k.startswith(key)]

    def children(self, parent_id: str, child_type: str) -> builtins.list[Resource]:
        """Direct children `<parent_id>/<child_type>/<name>` (child_type case-insensitive)."""
        prefix = f"{parent_id}/{child_type}/".lower()
        with self._lock:
            return [
                copy.deepcopy(v)
                for k, v in self._resources.items()
                if k.startswith(prefix) and "/" not in k[len(prefix) :]
            ]

"""ARM's long-running operation protocol: a 201/202 answer with Azure-AsyncOperation, Location and
Retry-After; the status resource moves from InProgress to Succeeded, Failed or Canceled; the
Location resource answers 202 until done, then the result."""

from __future__ import annotations

import datetime
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.azure_double.http import Response, arm_error


class OperationFailed(Exception):
    """Raised by an operation's work: the operation ends Failed with this ARM error object."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", ""))
        self.error = error


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


@dataclass
class Operation:
    id: str
    subscription_id: str
    namespace: str
    location: str
    api_version: str
    status: str = "InProgress"
    start_time: str = field(default_factory=_now)
    end_time: str | None = None
    error: dict[str, Any] | None = None
    result: Any = None
    done: threading.Event = field(default_factory=threading.Event)

    def status_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.status_path(),
            "name": self.id,
            "status": self.status,
            "startTime": self.start_time,
        }
        if self.end_time:
            body["endTime"] = self.end_time
        if self.error:
            body["error"] = self.error
        return body

    def _base(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/providers/{self.namespace}"
            f"/locations/{self.location}"
        )

    def status_path(self) -> str:
        return f"{self._base()}/operationStatuses/{self.id}"

    def result_path(self) -> str:
        return f"{self._base()}/operationResults/{self.id}"


class Operations:
    def __init__(self, endpoint: Callable[[], str], retry_after: Callable[[], int]) -> None:
        self._endpoint = endpoint
        self._retry_after = retry_after
        self._lock = threading.Lock()
        self._operations: dict[str, Operation] = {}
        self._threads: list[threading.Thread] = []

    def start(
        self,
        subscription_id: str,
        namespace: str,
        location: str,
        api_version: str,
        work: Callable[[Operation], Any],
    ) -> Operation:
        """Run work in the background; its return value is the operation's result."""
        operation = Operation(
            id=str(uuid.uuid4()),
            subscription_id=subscription_id,
            namespace=namespace,
            location=location.replace(" ", "").lower() or "global",
            api_version=api_version,
        )
        with self._lock:
            self._operations[operation.id.lower()] = operation
        thread = threading.Thread(
            target=self._run, args=(operation, work), name=f"lro-{operation.id}", daemon=True
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return operation

    def _run(self, operation: Operation, work: Callable[[Operation], Any]) -> None:
        try:
            operation.result = work(operation)
            operation.status = "Succeeded"
        except OperationFailed as failure:
            operation.error = failure.error
            operation.status = "Failed"
        except Exception as error:  # the double's own bug: surface it as ARM would, not hang
            operation.error = {"code": "InternalServerError", "message": repr(error)}
            operation.status = "Failed"
        operation.end_time = _now()
        operation.done.set()

    def headers(self, operation: Operation) -> dict[str, str]:
        query = f"?api-version={operation.api_version}"
        return {
            "Azure-AsyncOperation": f"{self._endpoint()}{operation.status_path()}{query}",
            "Location": f"{self._endpoint()}{operation.result_path()}{query}",
            "Retry-After": str(self._retry_after()),
        }

    def accepted(self, operation: Operation, status: int = 202, body: Any = None) -> Response:
        """The first answer of a long-running request."""
        headers = self.headers(operation)
        if body is None:
            return Response(status, b"", headers)
        return Response.of_json(status, body, headers)

    def get(self, operation_id: str) -> Operation | None:
        with self._lock:
            return self._operations.get(operation_id.lower())

    def status_response(self, operation_id: str) -> Response:
        operation = self.get(operation_id)
        if operation is None:
            return arm_error(404, "OperationNotFound", f"Operation '{operation_id}' not found.")
        headers = {} if operation.done.is_set() else {"Retry-After": str(self._retry_after())}
        return Response.of_json(200, operation.status_body(), headers)

    def result_response(self, operation_id: str) -> Response:
        operation = self.get(operation_id)
        if operation is None:
            return arm_error(404, "OperationNotFound", f"Operation '{operation_id}' not found.")
        if not operation.done.is_set():
            return Response(202, b"", self.headers(operation))
        if operation.error:
            return Response.of_json(
                400 if operation.error.get("code") != "InternalServerError" else 500,
                {"error": operation.error},
            )
        if operation.result is None:
            return Response(204)
        return Response.of_json(200, operation.result)

    def wait_all(self, timeout: float = 10.0) -> None:
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)

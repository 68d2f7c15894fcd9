"""AzureDouble: the TLS listeners on 127.0.0.1, auth, faults, the request log, the store, and
the ARM router that the provider handlers (core, apps, files) plug into."""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import secrets
import shutil
import ssl
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any
from xml.sax.saxutils import escape

from tests.azure_double import deployments, loganalytics, storage_mgmt, tools
from tests.azure_double.arm import Arm, Handler
from tests.azure_double.auth import check_bearer
from tests.azure_double.faults import DoubleConfig, Fault, Faults
from tests.azure_double.http import DropConnection, Request, Response, arm_error
from tests.azure_double.listener import BodyReader, Listener
from tests.azure_double.lro import Operations
from tests.azure_double.store import Store
from tests.azure_double.tls import Certificates, create_certificates

CONTROL_PREFIX = "/_double/"
LOGS_QUERY_PREFIX = "/v1/workspaces/"  # the Log Analytics query API shares the ARM listener


@dataclass(frozen=True)
class RecordedRequest:
    listener: str
    method: str
    path: str
    query: dict[str, str]
    status: int
    body_size: int


def _optional_module(name: str) -> ModuleType | None:
    """The apps/files parts of the double, when this checkout has them."""
    try:
        return importlib.import_module(f"tests.azure_double.{name}")
    except ModuleNotFoundError as missing:
        if missing.name != f"tests.azure_double.{name}":
            raise
        return None


def files_error(status: int, code: str, message: str) -> Response:
    """Azure Files' XML error shape, with the code also in x-ms-error-code."""
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}\n"
        f"RequestId:{uuid.uuid4()}</Message></Error>"
    ).encode()
    return Response(
        status,
        body,
        {"Content-Type": "application/xml", "x-ms-error-code": code},
    )


class AzureDouble:
    """A stateful double of the Azure APIs this project calls, served on 127.0.0.1 over TLS."""

    def __init__(
        self,
        state_dir: Path | None = None,
        subscription_id: str | None = None,
        tenant_id: str | None = None,
    ) -> None:
        self._owns_state_dir = state_dir is None
        self.state_dir = (
            Path(tempfile.mkdtemp(prefix="azure-double-")) if state_dir is None else state_dir
        )
        self.subscription_id = subscription_id or str(uuid.uuid4())
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self.signing_key = secrets.token_urlsafe(32)
        self.store = Store()
        self.faults = Faults()
        self.config = DoubleConfig()
        self.requests: list[RecordedRequest] = []
        self._requests_lock = threading.Lock()
        self.arm = Arm(self)
        self.operations = Operations(lambda: self.arm_endpoint, lambda: self.retry_after_s)
        # Seconds the double asks clients to wait between polls of a long-running operation.
        self.retry_after_s = 1
        self._account_keys: dict[str, list[str]] = {}
        self._files_handler: Handler = self._files_missing
        self._stop_hooks: list[Callable[[], None]] = []
        self._listeners: list[Listener] = []
        self._certificates: Certificates | None = None
        self.arm_endpoint = ""
        self.files_port = 0
        self.ca_bundle = self.state_dir / "tls" / "ca.pem"
        self.env: dict[str, str] = {}
        self._started = False
        self.apps: Any = None  # the Microsoft.App provider, when this checkout has it
        # Set by stop(): background work (deployments waiting on resources) ends promptly.
        self.stopping = threading.Event()

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> AzureDouble:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._certificates = create_certificates(self.state_dir / "tls")
        self.ca_bundle = self._certificates.ca_pem
        context = self.server_ssl_context()
        arm = Listener("arm", self._serve_arm, context)
        self._listeners.append(arm)
        self.arm_endpoint = f"https://{arm.host}:{arm.port}"
        files = Listener("files", self._serve_files, context)
        self._listeners.append(files)
        self.files_port = files.port
        self._started = True
        # Core providers first; apps and files plug in through the same interface.
        for part in (deployments, storage_mgmt, loganalytics):
            part.install(self)
        apps = _optional_module("apps")
        if apps is not None:
            self.apps = apps.install(self)
            if hasattr(apps, "shutdown"):
                self.on_stop(lambda: apps.shutdown(self))
        files_module = _optional_module("files")
        if files_module is not None:
            self._files_handler = files_module.install(self)
        self.env = tools.install(self)
        return self

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        self.stopping.set()
        for hook in reversed(self._stop_hooks):
            with contextlib.suppress(Exception):
                hook()
        for listener in self._listeners:
            listener.stop()
        self._listeners.clear()
        self.operations.wait_all()
        if self._owns_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> AzureDouble:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def on_stop(self, hook: Callable[[], None]) -> None:
        """Run hook when the double stops (before its listeners close), latest first."""
        self._stop_hooks.append(hook)

    # ---- what the parts share --------------------------------------------------------------

    def server_ssl_context(self) -> ssl.SSLContext:
        if self._certificates is None:
            raise RuntimeError("start the double first")
        return self._certificates.server_context()

    def share_root(self, account: str, share: str) -> Path:
        return self.state_dir / "files" / account / share

    def storage_account_keys(self, account: str) -> list[str]:
        return list(self._account_keys[account.lower()])

    def create_storage_account_keys(self, account: str) -> list[str]:
        keys = [base64.b64encode(secrets.token_bytes(64)).decode() for _ in range(2)]
        self._account_keys[account.lower()] = keys
        return list(keys)

    def regenerate_storage_account_key(self, account: str, index: int) -> None:
        self._account_keys[account.lower()][index] = base64.b64encode(
            secrets.token_bytes(64)
        ).decode()

    def forget_storage_account_keys(self, account: str) -> None:
        self._account_keys.pop(account.lower(), None)

    def files_endpoint(self, account: str) -> str:
        return f"https://127.0.0.1:{self.files_port}/{account}/"

    def register_provider_handler(self, namespace: str, handler: Handler) -> None:
        self.arm.handlers[namespace.lower()] = handler

    def internal_request(
        self, method: str, path: str, api_version: str, body: dict[str, Any] | None
    ) -> Response:
        """Dispatch through the ARM router without auth, faults or the request log."""
        request = Request(
            method=method.upper(),
            path=path,
            raw_path=path,
            query={"api-version": api_version},
            headers={"content-type": "application/json"} if body is not None else {},
            body=json.dumps(body).encode() if body is not None else b"",
            listener="arm",
        )
        return self.arm.handle(request)

    # ---- serving ---------------------------------------------------------------------------

    def _record(self, request: Request, status: int) -> None:
        with self._requests_lock:
            self.requests.append(
                RecordedRequest(
                    request.listener,
                    request.method,
                    request.path,
                    dict(request.query),
                    status,
                    len(request.body),
                )
            )

    def _faulted(self, request: Request, read_body: BodyReader) -> Response | None:
        raw_query = "&".join(f"{k}={v}" for k, v in request.query.items())
        fault = self.faults.take(request.listener, request.method, request.path, raw_query)
        if fault is None:
            return None
        if fault.drop:
            request.body = read_body(fault.read_bytes)
            self._record(request, 0)
            raise DropConnection
        request.body = read_body(None)
        if request.listener == "files":
            response = files_error(fault.status, fault.code, fault.message)
        else:
            response = arm_error(fault.status, fault.code, fault.message)
        response.headers.update(fault.headers)
        return response

    def _serve_arm(self, request: Request, read_body: BodyReader) -> Response:
        if request.path.startswith(CONTROL_PREFIX):
            request.body = read_body(None)
            return self._control(request)
        response = self._faulted(request, read_body)
        if response is None:
            request.body = read_body(None)
            response = check_bearer(request, self.signing_key, self.tenant_id)
            if response is None and request.path.lower().startswith(LOGS_QUERY_PREFIX):
                response = loganalytics.answer_query(self, request)
            if response is None:
                response = self.arm.handle(request)
        self._record(request, response.status)
        response.headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
        return response

    def _serve_files(self, request: Request, read_body: BodyReader) -> Response:
        response = self._faulted(request, read_body)
        if response is None:
            request.body = read_body(None)
            response = self._files_handler(request)
        self._record(request, response.status)
        return response

    def _files_missing(self, request: Request) -> Response:
        return files_error(501, "NotImplemented", "This checkout has no Files data plane.")

    # ---- control endpoints for other processes ---------------------------------------------

    def _control(self, request: Request) -> Response:
        what = request.path[len(CONTROL_PREFIX) :].strip("/")
        try:
            if what == "faults" and request.method == "POST":
                fault = self.faults.add(Fault.from_json(request.json() or {}))
                return Response.of_json(201, fault.to_json())
            if what == "faults" and request.method == "DELETE":
                self.faults.clear()
                return Response(204)
            if what == "faults" and request.method == "GET":
                return Response.of_json(200, [f.to_json() for f in self.faults.active()])
            if what == "config" and request.method == "POST":
                self.config.update(request.json() or {})
                return Response.of_json(200, self.config.to_json())
            if what == "config" and request.method == "GET":
                return Response.of_json(200, self.config.to_json())
            if what == "requests" and request.method == "GET":
                with self._requests_lock:
                    return Response.of_json(200, [asdict(r) for r in self.requests])
            if what == "requests" and request.method == "DELETE":
                with self._requests_lock:
                    self.requests.clear()
                return Response(204)
        except (TypeError, ValueError) as bad:
            return Response.of_json(400, {"error": str(bad)})
        return Response.of_json(404, {"error": f"no control endpoint {request.method} {what}"})

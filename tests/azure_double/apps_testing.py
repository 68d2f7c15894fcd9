"""Helpers for tests that drive the double's Microsoft.App with the real SDK clients: the client,
a share holding a tiny HTTP server, and the ARM bodies of an environment, its storage and an app
that runs that server from the share."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from azure.core.exceptions import HttpResponseError, ODataV4Format
from azure.mgmt.appcontainers import ContainerAppsAPIClient

from tests.azure_double.sdk import mgmt_client, resources_client
from tests.azure_double.server import AzureDouble

LOCATION = "eastus"
RESOURCE_GROUP = "rg-apps"
ACCOUNT = "appsdata"
SHARE = "models"
MOUNT = "/mount"

# A stand-in for the inference server: standard library only, the same environment contract
# (ACA_INFER_HOST/PORT), /ready for the probes, and routes that show what the replica sees.
SERVER = r"""
import json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

print("stand-in server starting, greeting", os.environ.get("GREETING"), flush=True)
if os.environ.get("CRASH") == "1":
    sys.exit("stand-in server: CRASH=1, exiting at start")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/ready":
            ready = os.environ.get("NEVER_READY") != "1"
            return self._send(200 if ready else 503, {"ready": ready})
        if self.path == "/hello":
            return self._send(200, {
                "greeting": os.environ.get("GREETING"),
                "key": os.environ.get("API_KEY"),
                "mount": os.environ.get("ACA_INFER_MOUNT_ROOT"),
                "argv": sys.argv,
                "pid": os.getpid(),
            })
        if self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            acks = self.path.partition("?acks=")[2]
            for index in range(3):
                frame = f"data: {index}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
                self.wfile.flush()
                # The next event waits for the client's acknowledgement of this one (a file it
                # writes): a proxy that buffered the stream would leave it unacknowledged.
                ack = os.path.join(acks, f"ack-{index}")
                deadline = time.monotonic() + 10
                while acks and not os.path.exists(ack) and time.monotonic() < deadline:
                    time.sleep(0.01)
                if acks and not os.path.exists(ack):
                    late = b"data: unacknowledged\n\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(late), late))
            self.wfile.write(b"0\r\n\r\n")
            return
        self._send(404, {"error": "not found"})

    def do_POST(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self._send(200, {"echo": body.decode(), "chunked": "content-length" not in self.headers})

    def log_message(self, *args):
        print("request", args[1] if len(args) > 1 else "", flush=True)


print("listening", flush=True)
ADDRESS = (os.environ["ACA_INFER_HOST"], int(os.environ["ACA_INFER_PORT"]))
ThreadingHTTPServer(ADDRESS, Handler).serve_forever()
"""


def apps_client(double: AzureDouble) -> ContainerAppsAPIClient:
    """The real client with the real credential chain (run inside `use_double_env`); polls
    every 0.1 s, since the tests set the double's Retry-After to 0."""
    client: ContainerAppsAPIClient = mgmt_client(
        ContainerAppsAPIClient, double, polling_interval=0.1
    )
    return client


def prepare(double: AzureDouble) -> Path:
    """Resource group, storage account keys and a share holding the stand-in server."""
    double.retry_after_s = 0  # the SDK then polls at its polling_interval
    resources_client(double).resource_groups.create_or_update(
        RESOURCE_GROUP, {"location": LOCATION}
    )
    double.create_storage_account_keys(ACCOUNT)
    share = double.share_root(ACCOUNT, SHARE)
    share.mkdir(parents=True, exist_ok=True)
    (share / "server.py").write_text(SERVER)
    return share


def environment_body(profiles: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "location": LOCATION,
        "properties": {
            "workloadProfiles": profiles
            or [
                {"name": "Consumption", "workloadProfileType": "Consumption"},
                {"name": "gpu", "workloadProfileType": "Consumption-GPU-NC8as-T4"},
            ]
        },
    }


def storage_body(double: AzureDouble) -> dict[str, Any]:
    return {
        "properties": {
            "azureFile": {
                "accountName": ACCOUNT,
                "accountKey": double.storage_account_keys(ACCOUNT)[0],
                "shareName": SHARE,
                "accessMode": "ReadOnly",
            }
        }
    }


def create_environment(double: AzureDouble, client: Any) -> str:
    """The environment "env" with the share as its storage "data"; returns its resource id.
    `client` is an `apps_client`, typed loosely: the SDK's overloads do not take the ARM body
    as a plain dict."""
    environment = client.managed_environments.begin_create_or_update(
        RESOURCE_GROUP, "env", environment_body()
    ).result()
    client.managed_environments_storages.create_or_update(
        RESOURCE_GROUP, "env", "data", storage_body(double)
    )
    return str(environment.id)


def app_body(
    environment_id: str,
    env: dict[str, str] | None = None,
    min_replicas: int = 1,
    startup_failures: int = 10,
    startup_period: int = 3,
    secrets: dict[str, str] | None = None,
) -> dict[str, Any]:
    variables: list[dict[str, str]] = [
        {"name": "ACA_INFER_MOUNT_ROOT", "value": MOUNT},
        {"name": "API_KEY", "secretRef": "api-key"},
    ]
    variables += [{"name": k, "value": v} for k, v in (env or {}).items()]
    probe = {"path": "/ready", "port": 7860, "scheme": "HTTP"}
    return {
        "location": LOCATION,
        "properties": {
            "managedEnvironmentId": environment_id,
            "workloadProfileName": "Consumption",
            "configuration": {
                "activeRevisionsMode": "Single",
                "ingress": {"external": True, "targetPort": 7860, "transport": "auto"},
                "secrets": [
                    {"name": k, "value": v} for k, v in (secrets or {"api-key": "key-1"}).items()
                ],
            },
            "template": {
                "containers": [
                    {
                        "name": "server",
                        "image": "python:3.12-slim",
                        "command": ["python", f"{MOUNT}/server.py"],
                        "env": variables,
                        "probes": [
                            {
                                "type": "Startup",
                                "httpGet": probe,
                                "initialDelaySeconds": 1,
                                "periodSeconds": startup_period,
                                "failureThreshold": startup_failures,
                            },
                            {"type": "Readiness", "httpGet": probe, "periodSeconds": 1},
                        ],
                        "volumeMounts": [{"volumeName": "share", "mountPath": MOUNT}],
                    }
                ],
                "scale": {"minReplicas": min_replicas, "maxReplicas": 1},
                "volumes": [{"name": "share", "storageType": "AzureFile", "storageName": "data"}],
            },
        },
    }


def wait_for(condition: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll until condition() is truthy (returns it) or fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def error_of(raised: HttpResponseError) -> ODataV4Format:
    """ARM's error object of a failed SDK call."""
    assert raised.error is not None, raised
    return raised.error

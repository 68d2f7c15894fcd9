"""The Container Apps log stream of the double: the endpoint `az containerapp logs show` reads.

ACA serves it on the environment's log stream host (`eventStreamEndpoint` without its path):
`GET <host>/subscriptions/{s}/resourceGroups/{rg}/containerApps/{app}/revisions/{revision}
/replicas/{replica}/containers/{container}/logstream?tailLines=N&follow=true|false&output=text|json`
for a replica's console, and `.../containerApps/{app}/eventstream` for system events, both with
`Authorization: Bearer <token>` where the token comes from the app's `getAuthtoken` (ARM POST).
Console lines are `{"TimeStamp": ..., "Log": ...}` (output=json) or `<time> <line>` (text);
system events carry `Msg`, `Reason`, `RevisionName`, `ReplicaName` as ACA's do. The double
serves it on one extra HTTPS listener; a stopped replica's console stays readable, so a failed
revision's last lines can be shown.
"""

from __future__ import annotations

import json
import re
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from tests.azure_double.ingress import UPSTREAM_TIMEOUT_S
from tests.azure_double.replicas import LOOPBACK, ConsoleLine
from tests.azure_double.tls_server import TlsHandler, TlsServer

if TYPE_CHECKING:
    from tests.azure_double.apps import AppsProvider

_CONSOLE = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/containerApps/(?P<app>[^/]+)"
    r"/revisions/(?P<revision>[^/]+)/replicas/(?P<replica>[^/]+)/containers/(?P<container>[^/]+)"
    r"/logstream$",
    re.IGNORECASE,
)
_EVENTS = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/containerApps/(?P<app>[^/]+)"
    r"/eventstream$",
    re.IGNORECASE,
)
MAX_TAIL = 300  # what ACA accepts for tailLines
FOLLOW_POLL_S = 0.5
SYSTEM_PREFIX = "[double] "


def _format(line: ConsoleLine, output: str) -> bytes:
    if output == "json":
        return (json.dumps({"TimeStamp": line.time, "Log": line.text}) + "\n").encode()
    return f"{line.time} {line.text}\n".encode()


def _event(line: ConsoleLine, output: str, app: str, revision: str, replica: str) -> bytes:
    """A system event in the shape of ACA's event stream (Msg/Reason rather than Log)."""
    message = line.text.removeprefix(SYSTEM_PREFIX)
    if output != "json":
        return f"{line.time} {revision} {replica} {message}\n".encode()
    event = {
        "TimeStamp": line.time,
        "Type": "Warning",
        "ContainerAppName": app,
        "RevisionName": revision,
        "ReplicaName": replica,
        "Msg": message,
        "Reason": "ContainerTerminated" if "exited" in message else "ReplicaUnhealthy",
        "EventSource": "ContainerAppController",
        "Count": 1,
    }
    return (json.dumps(event) + "\n").encode()


class _LogHandler(TlsHandler):
    server: TlsServer[AppsProvider]
    timeout = UPSTREAM_TIMEOUT_S

    def do_GET(self) -> None:
        path, _, raw_query = self.path.partition("?")
        path = unquote(path)
        query = {k.lower(): v for k, v in parse_qsl(raw_query)}
        provider: AppsProvider = self.server.app
        token = self.headers.get("authorization", "").removeprefix("Bearer ").strip()
        app_id = provider.app_for_token(token) if token else None
        match = _CONSOLE.match(path) or _EVENTS.match(path)
        if match is None:
            return self.plain(404, "Not found.")
        wanted = provider.app_id_of(match["sub"], match["rg"], match["app"])
        if app_id is None or wanted is None or wanted.lower() != app_id:
            return self.plain(401, "Unauthorized: get a token with the app's getAuthtoken.")
        try:
            tail = int(query.get("taillines") or 20)
        except ValueError:
            return self.plain(400, "tailLines must be an integer.")
        if not 0 <= tail <= MAX_TAIL:
            return self.plain(400, f"tailLines must be between 0 and {MAX_TAIL}.")
        follow = query.get("follow", "false").lower() == "true"
        output = query.get("output", "text").lower()
        if "revision" in match.groupdict():
            replicas = [
                r
                for r in provider.replicas_for_log(wanted, match["revision"])
                if r.name.lower() == match["replica"].lower()
            ]
            if not replicas:
                return self.plain(404, f"Replica '{match['replica']}' was not found.")
            self._stream_console(replicas[-1], tail, follow, output)
        else:
            self._stream_events(provider, wanted, tail, output)

    def _begin(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _stream_console(self, replica: Any, tail: int, follow: bool, output: str) -> None:
        self._begin()
        lines, seen = replica.console_snapshot(tail)
        if lines:
            self._chunk(b"".join(_format(line, output) for line in lines))
        while follow and not replica.finished:
            fresh, seen = replica.lines_after(seen, FOLLOW_POLL_S)
            if fresh:
                self._chunk(b"".join(_format(line, output) for line in fresh))
        self._end()

    def _stream_events(self, provider: AppsProvider, app_id: str, tail: int, output: str) -> None:
        events: list[bytes] = []
        app = provider.store.get(app_id) or {}
        for revision in provider.store.list(app_id + "/revisions/"):
            for replica in provider.replicas_for_log(app_id, revision["name"]):
                for line in replica.console_lines():
                    if line.text.startswith(SYSTEM_PREFIX):
                        events.append(
                            _event(
                                line, output, app.get("name", ""), revision["name"], replica.name
                            )
                        )
        self._begin()
        if tail and events:
            self._chunk(b"".join(sorted(events)[-tail:]))
        self._end()


class LogStream:
    """The log stream host of the double's Container Apps (one HTTPS listener)."""

    def __init__(self, provider: AppsProvider, context: ssl.SSLContext) -> None:
        self._server = TlsServer("logstream", _LogHandler, context, provider)

    @property
    def base_url(self) -> str:
        return f"https://{LOOPBACK}:{self._server.port}"

    def stop(self) -> None:
        self._server.stop()

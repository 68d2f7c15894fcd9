"""Is the server on the endpoint our replica, and is it ready?

`GET /health` must name the release and the instance id the deploy generated for this start
(`ACA_INFER_INSTANCE_ID`): any other server that happens to answer on the port (another copy of
the demo, an unrelated service) is never taken for the replica, and never receives a key.
`GET /ready` then answers 200 once the model is loaded. The wait watches the replica process, so
a crash (for example "address already in use") ends it at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from provision.targets import Progress, ReadyState, ReplicaIdentity

POLL_SECONDS = 0.5


def _answer_reason(response: httpx.Response) -> str:
    try:
        reason = str(response.json().get("reason") or response.text)
    except (ValueError, AttributeError):
        reason = response.text
    return f"{response.status_code}: {reason.strip()[:200]}"


def check_identity(client: httpx.Client, identity: ReplicaIdentity) -> str | None:
    """None when `GET /health` proves the server is this replica, else why it is not."""
    url = f"{identity.endpoint}/health"
    try:
        response = client.get(url)
    except httpx.HTTPError as error:
        return f"not answering ({type(error).__name__})"
    try:
        health = response.json()
    except ValueError:
        health = None
    if response.status_code != 200 or not isinstance(health, dict):
        return f"{url} answered {_answer_reason(response)}"
    answered = (health.get("release"), health.get("instance_id"))
    if answered != (identity.release, identity.instance_id):
        return (
            f"another server answers on {identity.endpoint}: its /health names release "
            f"{answered[0]!r}, instance {answered[1]!r}, not this replica's release "
            f"{identity.release!r}, instance {identity.instance_id!r}"
        )
    return None


def probe_ready(client: httpx.Client, url: str) -> tuple[bool, str]:
    """Whether `GET url` answers 200, and if not, why (the reason the server gives)."""
    try:
        response = client.get(url)
    except httpx.HTTPError as error:
        return False, f"not answering ({type(error).__name__})"
    if response.status_code == 200:
        return True, ""
    return False, _answer_reason(response)


def probe(client: httpx.Client, identity: ReplicaIdentity) -> tuple[bool, str]:
    """Ready only when the server proves it is this replica and its /ready answers 200."""
    not_ours = check_identity(client, identity)
    if not_ours is not None:
        return False, not_ours
    return probe_ready(client, f"{identity.endpoint}/ready")


def wait_until_ready(
    identity: ReplicaIdentity,
    timeout: float,
    alive: Callable[[], str | None],
    progress: Progress,
) -> ReadyState:
    """`alive` returns None while the replica process runs, or why it is gone."""
    deadline = time.monotonic() + timeout
    last = ""
    with httpx.Client(timeout=5.0) as client:
        while True:
            ready, reason = probe(client, identity)
            if ready:
                return ReadyState(True)
            gone = alive()
            if gone is not None:
                return ReadyState(False, gone)
            if reason != last:
                progress(f"waiting for {identity.endpoint}: {reason}")
                last = reason
            if time.monotonic() >= deadline:
                return ReadyState(False, f"not ready after {timeout:.0f}s (last: {reason})")
            time.sleep(POLL_SECONDS)

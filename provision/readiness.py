"""Wait for `GET /ready` to answer 200, watching the replica so a crash ends the wait at once."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from provision.targets import Progress, ReadyState

POLL_SECONDS = 0.5


def probe_ready(client: httpx.Client, url: str) -> tuple[bool, str]:
    """Whether `GET url` answers 200, and if not, why (the reason the server gives)."""
    try:
        response = client.get(url)
    except httpx.HTTPError as error:
        return False, f"not answering ({type(error).__name__})"
    if response.status_code == 200:
        return True, ""
    try:
        reason = str(response.json().get("reason") or response.text)
    except ValueError:
        reason = response.text
    return False, f"{response.status_code}: {reason.strip()[:200]}"


def wait_until_ready(
    ready_url: str,
    timeout: float,
    alive: Callable[[], str | None],
    progress: Progress,
) -> ReadyState:
    """`alive` returns None while the replica runs, or why it is gone."""
    deadline = time.monotonic() + timeout
    last = ""
    with httpx.Client(timeout=5.0) as client:
        while True:
            ready, reason = probe_ready(client, ready_url)
            if ready:
                return ReadyState(True)
            gone = alive()
            if gone is not None:
                return ReadyState(False, gone)
            if reason != last:
                progress(f"waiting for {ready_url}: {reason}")
                last = reason
            if time.monotonic() >= deadline:
                return ReadyState(False, f"not ready after {timeout:.0f}s (last: {reason})")
            time.sleep(POLL_SECONDS)

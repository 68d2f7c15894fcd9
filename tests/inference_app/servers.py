"""Start servers for tests: an app (fake engine) under uvicorn in a thread, or the real
`python -m inference_app` as a child process. Both listen on 127.0.0.1 on a free port and are
stopped when the `with` block ends."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: object, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_config=None, access_log=False, timeout_graceful_shutdown=2)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 30, "the test server to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@contextlib.contextmanager
def serve_process(
    env: Mapping[str, str], log_file: Path, cwd: Path, ready_timeout: float = 120
) -> Iterator[str]:
    """Run `python -m inference_app` in `cwd` (which holds the `inference_app` folder, first on
    sys.path as the replica's bootstrap has it) and wait for /ready."""
    port = free_port()
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ACA_INFER_")},
        "HF_HUB_OFFLINE": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "ACA_INFER_HOST": "127.0.0.1",
        "ACA_INFER_PORT": str(port),
        **env,
    }
    base_url = f"http://127.0.0.1:{port}"
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "inference_app"],
            cwd=cwd,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:

            def ready() -> bool:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"server exited with {process.returncode}: {log_file.read_text()[-3000:]}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    return httpx.get(f"{base_url}/ready", timeout=2).status_code == 200
                return False

            wait_until(ready, ready_timeout, "the server to become ready", interval=0.2)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

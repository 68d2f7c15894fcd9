"""Servers for the inference_app tests.

`fake_server` runs the real app (auth, routes, streaming, metrics) under uvicorn with a
scriptable fake engine. `real_server` runs `python -m inference_app` from a copy of the
`inference_app` folder, on the demo model, exactly as a replica starts it.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from inference_app.app import create_app
from inference_app.settings import Settings
from scripts.make_demo_model import DemoModel
from tests.inference_app.fake_engine import FakeEngine
from tests.inference_app.servers import REPO_ROOT, serve_in_thread, serve_process

PRIMARY_KEY = "primary-test-key-0123456789"
SECONDARY_KEY = "secondary-test-key-9876543210"


@dataclass(frozen=True)
class FakeServer:
    url: str
    engine: FakeEngine


@dataclass(frozen=True)
class RealServer:
    url: str
    log_file: Path


def fake_settings(**overrides: Any) -> Settings:
    settings = Settings(
        model_path=Path("/nonexistent/fake-model"),
        api_keys=(PRIMARY_KEY, SECONDARY_KEY),
        release="test-release",
        ui_enabled=False,
        keepalive_seconds=0.2,
        default_max_tokens=8,
    )
    return replace(settings, **overrides)


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeServer]]:
    """Factory: `fake_server(engine=FakeEngine(...), **setting_overrides)`."""
    with contextlib.ExitStack() as stack:

        def start(engine: FakeEngine | None = None, **overrides: Any) -> FakeServer:
            engine = engine or FakeEngine()
            app = create_app(fake_settings(**overrides), engine)
            return FakeServer(stack.enter_context(serve_in_thread(app)), engine)

        yield start


def copy_app(destination: Path) -> Path:
    """The deploy ships only the `inference_app` folder; run the server from such a copy."""
    shutil.copytree(
        REPO_ROOT / "inference_app",
        destination / "inference_app",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return destination


def real_env(demo: DemoModel, **extra: str) -> dict[str, str]:
    return {
        "ACA_INFER_MOUNT_ROOT": str(demo.share_dir),
        "ACA_INFER_MODEL_PATH": str(demo.base_dir.relative_to(demo.share_dir)),
        "ACA_INFER_API_KEY_PRIMARY": PRIMARY_KEY,
        "ACA_INFER_API_KEY_SECONDARY": SECONDARY_KEY,
        "ACA_INFER_RELEASE": "test-release",
        **extra,
    }


@pytest.fixture(scope="session")
def real_server(
    demo_model: DemoModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealServer]:
    """The real server on the demo model, with the chat UI; shared by the session's tests."""
    workdir = tmp_path_factory.mktemp("real-server")
    log_file = workdir / "server.log"
    with serve_process(real_env(demo_model), log_file, cwd=copy_app(workdir / "app")) as url:
        yield RealServer(url, log_file)

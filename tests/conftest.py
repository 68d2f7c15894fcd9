"""Session-wide test setup: no traffic beyond loopback, and one tiny demo model per session."""

import os

# Set before anything imports huggingface_hub, transformers or gradio, which read them once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from pathlib import Path

import pytest

from scripts.make_demo_model import DemoModel, make_demo_model
from tests.azure_double.fixture import azure_double, azure_double_module

__all__ = ["azure_double", "azure_double_module"]


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> DemoModel:
    """The tiny Phi-3 model and its LoRA adapter, written once per session into a temp share.

    Shared by every test in the session: treat it as read-only, and copy the share
    (`shutil.copytree(demo_share, tmp_path / "share")`) before changing anything in it.
    """
    return make_demo_model(tmp_path_factory.mktemp("demo-share"))


@pytest.fixture(scope="session")
def demo_share(demo_model: DemoModel) -> Path:
    """The share directory that holds the demo model (AI Toolkit layout); read-only."""
    return demo_model.share_dir

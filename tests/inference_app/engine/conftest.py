"""A started engine on the demo model with two adapters, shared by this package's tests.

The second adapter is the demo adapter with its `lora_B` weights negated: a different adapter
with the same shapes, so mixed-adapter batches have two real adapters to tell apart.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from inference_app.engine import TransformersEngine
from scripts.make_demo_model import DemoModel
from tests.inference_app.engine.helpers import ADAPTER, OTHER_ADAPTER, started


@pytest.fixture(scope="session")
def adapters(demo_model: DemoModel, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    other = tmp_path_factory.mktemp("adapters") / OTHER_ADAPTER
    shutil.copytree(demo_model.adapter_dir, other)
    weights_file = other / "adapter_model.safetensors"
    weights = load_file(weights_file)
    save_file({k: -v if "lora_B" in k else v for k, v in weights.items()}, weights_file)
    return {ADAPTER: demo_model.adapter_dir, OTHER_ADAPTER: other}


@pytest.fixture(scope="module")
def engine(demo_model: DemoModel, adapters: dict[str, Path]) -> Iterator[TransformersEngine]:
    """Batch size 8 with a deep queue: most tests need batching, none a full queue."""
    eng = started(TransformersEngine(demo_model.base_dir, adapters, max_batch_size=8, max_queue=64))
    yield eng
    asyncio.run(eng.shutdown())

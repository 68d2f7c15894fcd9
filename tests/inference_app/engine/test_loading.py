"""Model loading: what is read, when the share is copied to local disk, progress for /ready."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path

import pytest
import torch

from inference_app.engine import TransformersEngine
from inference_app.engine.device import Hardware, plan_load
from inference_app.engine.loading import (
    checkpoint_files,
    filesystem_type,
    is_network_mount,
    load_model,
    stage_locally,
    ticking,
)
from scripts.make_demo_model import DemoModel
from tests.inference_app.engine.helpers import started

MOUNTS = """\
overlay / overlay rw,relatime 0 0
//acct.file.core.windows.net/share /mount cifs rw,vers=3.1.1 0 0
tmpfs /mount/tmp\\040dir tmpfs rw 0 0
/dev/sda1 /tmp ext4 rw 0 0
"""


def test_the_azure_files_mount_is_recognised_as_a_network_mount(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(MOUNTS)

    assert filesystem_type(Path("/mount/model-cache/org/name"), mounts) == "cifs"
    assert is_network_mount(Path("/mount/model-cache"), mounts)
    assert filesystem_type(Path("/mount/tmp dir/x"), mounts) == "tmpfs"
    assert not is_network_mount(Path("/tmp/aca-infer"), mounts)
    assert not is_network_mount(Path("/mountain"), mounts)  # a prefix is not a mount point


def make_checkpoint(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model-00001-of-00002.safetensors").write_bytes(os.urandom(300_001))
    (folder / "model-00002-of-00002.safetensors").write_bytes(os.urandom(1000))
    (folder / "pytorch_model.bin").write_bytes(b"legacy weights nobody should read")


def test_only_safetensors_weights_are_read_when_present(tmp_path: Path) -> None:
    make_checkpoint(tmp_path / "model")

    names = [p.name for p in checkpoint_files(tmp_path / "model")]

    assert "pytorch_model.bin" not in names
    assert len([n for n in names if n.endswith(".safetensors")]) == 2


def test_the_copy_is_exact_reported_and_reused_on_the_next_start(tmp_path: Path) -> None:
    source = tmp_path / "share/model"
    make_checkpoint(source)
    seen: list[str] = []

    local, copied = stage_locally(source, tmp_path / "cache", seen.append, chunk_bytes=65_536)

    assert local.parent == tmp_path / "cache"
    for name in ("config.json", "model-00001-of-00002.safetensors"):
        assert (local / name).read_bytes() == (source / name).read_bytes()
    assert not (local / "pytorch_model.bin").exists()
    assert copied == sum(p.stat().st_size for p in checkpoint_files(source))
    assert seen[0].startswith("copying 0.00 of 0.00 GiB from the share to local disk (")

    again, copied_again = stage_locally(source, tmp_path / "cache", seen.append)
    assert (again, copied_again) == (local, 0)


def test_a_changed_checkpoint_is_copied_again(tmp_path: Path) -> None:
    source = tmp_path / "share/model"
    make_checkpoint(source)
    first, _ = stage_locally(source, tmp_path / "cache", lambda _: None)
    (source / "model-00002-of-00002.safetensors").write_bytes(b"new weights")

    second, copied = stage_locally(source, tmp_path / "cache", lambda _: None)

    assert second != first
    assert (second / "model-00002-of-00002.safetensors").read_bytes() == b"new weights"
    assert copied > 0


def test_progress_is_reported_at_once_with_the_elapsed_time() -> None:
    seen: list[str] = []
    with ticking(seen.append, lambda: "reading weights onto cuda:0"):
        assert seen == ["reading weights onto cuda:0 (0 s)"]


def test_the_engine_logs_device_dtype_quantization_and_load_time(
    demo_model: DemoModel, caplog: pytest.LogCaptureFixture
) -> None:
    engine = TransformersEngine(demo_model.base_dir, hardware=Hardware(), max_batch_size=1)
    with caplog.at_level(logging.INFO, logger="inference_app.engine.transformers_engine"):
        started(engine)
    asyncio.run(engine.shutdown())

    loaded = [r.getMessage() for r in caplog.records if r.getMessage().startswith("model loaded")]
    assert len(loaded) == 1
    assert re.fullmatch(
        r"model loaded in \d+\.\d s on CPU \(no GPU visible\): dtype float32, "
        r"quantization none, on the CPU",
        loaded[0],
    )


def test_loading_reports_what_it_reads_onto_which_device(demo_model: DemoModel) -> None:
    seen: list[str] = []
    plan = plan_load(Hardware())

    model, report = load_model(demo_model.base_dir, plan, None, seen.append)

    assert seen[0] == "reading weights onto cpu (float32, quantization none) (0 s)"
    assert report.source == str(demo_model.base_dir) and report.copied_bytes == 0
    assert next(model.parameters()).dtype == torch.float32


def test_a_model_on_a_network_mount_is_loaded_from_a_local_copy(
    demo_model: DemoModel, tmp_path: Path
) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(f"//acct.file.core.windows.net/share {demo_model.share_dir} cifs rw 0 0\n")
    seen: list[str] = []

    _, report = load_model(
        demo_model.base_dir, plan_load(Hardware()), tmp_path / "cache", seen.append, mounts
    )

    assert Path(report.source).parent == tmp_path / "cache"
    assert report.copied_bytes == sum(
        p.stat().st_size for p in checkpoint_files(demo_model.base_dir)
    )
    assert seen[0].startswith("copying 0.00 of ")
    assert seen[-1].startswith("reading weights onto cpu")

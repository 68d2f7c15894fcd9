"""upload-model: the adapter must fit the base; the copy is chunked, verified and resumable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from provision.errors import InputError
from provision.local.share import LocalShare, LocalUpload
from provision.model_upload import UploadModelSettings, upload_model
from provision.share import UploadSource
from provision.target_state import TargetState
from provision.upload_record import UPLOADS, uploaded_folders
from tests.provision.fakes import FakeTarget

PHI3_WEIGHTS = [
    "model.embed_tokens.weight",
    "model.layers.0.self_attn.qkv_proj.weight",
    "model.layers.0.self_attn.o_proj.weight",
    "model.layers.0.mlp.gate_up_proj.weight",
    "model.layers.0.mlp.down_proj.weight",
]


def quiet(message: str) -> None:
    pass


def make_base(root: Path, name: str = "Phi-3-mini-4k-instruct") -> Path:
    base = root / name
    base.mkdir(parents=True)
    config = {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3"}
    (base / "config.json").write_text(json.dumps(config))
    save_file(
        {key: np.ones((4, 4), dtype=np.float32) for key in PHI3_WEIGHTS}, base / "model.safetensors"
    )
    (base / "tokenizer.json").write_bytes(bytes(range(256)) * 40)  # ~10 kB: several chunks
    return base


def make_adapter(root: Path, base_name: str, targets: object) -> Path:
    adapter = root / "adapter"
    adapter.mkdir(parents=True)
    config = {"base_model_name_or_path": base_name, "target_modules": targets, "r": 8}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    (adapter / "adapter_model.safetensors").write_bytes(b"adapter weights" * 100)
    return adapter


@pytest.fixture
def target(tmp_path: Path) -> FakeTarget:
    return FakeTarget(tmp_path / "share")


def settings(tmp_path: Path) -> UploadModelSettings:
    base = make_base(tmp_path / "src")
    adapter = make_adapter(
        tmp_path / "src", "microsoft/Phi-3-mini-4k-instruct", ["qkv_proj", "o_proj"]
    )
    return UploadModelSettings(base, adapter, chunk_bytes=1000)


def test_upload_copies_both_into_the_ai_toolkit_layout_and_keeps_the_paths(
    tmp_path: Path, target: FakeTarget
) -> None:
    given = settings(tmp_path)
    values = TargetState(tmp_path / "project", "fake")
    advanced: list[int] = []
    result = upload_model(target, values, given, quiet, advanced.append)
    model = "model-cache/microsoft/Phi-3-mini-4k-instruct"
    adapter = "models/qlora/qlora/gpu_model/adapter"
    assert (result.model_path, result.adapter_path) == (model, adapter)
    assert (result.uploaded, result.unchanged, result.verified) == (5, 0, 5)
    share = tmp_path / "share"
    for local in given.base_dir.iterdir():
        assert (share / model / local.name).read_bytes() == local.read_bytes()
    for local in given.adapter_dir.iterdir():
        assert (share / adapter / local.name).read_bytes() == local.read_bytes()
    assert sum(advanced) == result.bytes_uploaded
    assert values.load() == {"modelPath": model, "adapterPath": adapter}
    assert result.next_step == "aca-infer up --target fake"


def test_a_rerun_uploads_only_what_is_missing_or_different(
    tmp_path: Path, target: FakeTarget
) -> None:
    given = settings(tmp_path)
    values = TargetState(tmp_path / "project", "fake")
    upload_model(target, values, given, quiet, lambda n: None)
    again = upload_model(target, values, given, quiet, lambda n: None)
    assert (again.uploaded, again.unchanged, again.bytes_uploaded) == (0, 5, 0)
    # Same size, other content on the share: found by its hash and uploaded again.
    on_share = tmp_path / "share/model-cache/microsoft/Phi-3-mini-4k-instruct/tokenizer.json"
    on_share.write_bytes(bytes(reversed(on_share.read_bytes())))
    fixed = upload_model(target, values, given, quiet, lambda n: None)
    assert (fixed.uploaded, fixed.unchanged) == (1, 4)
    assert on_share.read_bytes() == (given.base_dir / "tokenizer.json").read_bytes()


class DroppingShare(LocalShare):
    """A share whose connection drops after `ranges_left` ranged writes."""

    def __init__(self, root: Path, ranges_left: int) -> None:
        super().__init__(root)
        self.ranges_left = ranges_left

    def open_upload(self, path: str, source: UploadSource) -> LocalUpload:
        upload = super().open_upload(path, source)
        real = upload.write_range

        def write_range(offset: int, data: bytes) -> None:
            self.ranges_left -= 1
            if self.ranges_left < 0:
                raise ConnectionResetError("connection dropped")
            real(offset, data)

        upload.write_range = write_range  # type: ignore[method-assign]
        return upload


def test_an_interrupted_upload_leaves_no_partial_file_and_resumes(
    tmp_path: Path, target: FakeTarget
) -> None:
    given = settings(tmp_path)
    values = TargetState(tmp_path / "project", "fake")
    dropping = FakeTarget(tmp_path / "share")
    dropping._share = DroppingShare(tmp_path / "share", ranges_left=4)
    with pytest.raises(ConnectionResetError):
        upload_model(dropping, values, given, quiet, lambda n: None)
    model = tmp_path / "share/model-cache/microsoft/Phi-3-mini-4k-instruct"
    shared = sorted(p.name for p in model.iterdir())
    assert not [name for name in shared if name.endswith(".part")]
    assert "tokenizer.json" not in shared  # the interrupted file never appeared under its name
    resumed = upload_model(target, values, given, quiet, lambda n: None)
    assert resumed.unchanged == len(shared) and resumed.uploaded == 5 - len(shared)
    assert (model / "tokenizer.json").read_bytes() == (
        given.base_dir / "tokenizer.json"
    ).read_bytes()


def test_a_rerun_removes_temporaries_whose_upload_is_gone_but_not_a_running_one(
    tmp_path: Path, target: FakeTarget
) -> None:
    given = settings(tmp_path)
    folder = tmp_path / "share/model-cache/microsoft/Phi-3-mini-4k-instruct"
    folder.mkdir(parents=True)
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    gone = folder / f".tokenizer.json.{int(finished.stdout)}-k1lled00.part"
    gone.write_bytes(b"half a file")
    running = folder / f".tokenizer.json.{os.getpid()}-runn1ng0.part"
    running.write_bytes(b"being written")
    result = upload_model(
        target, TargetState(tmp_path / "project", "fake"), given, quiet, lambda n: None
    )
    assert result.stale_uploads_removed == 1
    assert not gone.exists() and running.exists()


def test_an_adapter_for_another_base_is_refused_before_anything_is_copied(
    tmp_path: Path, target: FakeTarget
) -> None:
    base = make_base(tmp_path / "src")
    adapter = make_adapter(tmp_path / "src", "meta-llama/Llama-3.2-1B", ["qkv_proj"])
    with pytest.raises(InputError) as refused:
        upload_model(
            target, TargetState(tmp_path, "fake"), UploadModelSettings(base, adapter), quiet, print
        )
    message = str(refused.value)
    assert "names base model 'meta-llama/Llama-3.2-1B'" in message
    assert "is Phi-3-mini-4k-instruct (Phi3ForCausalLM)" in message
    assert not (tmp_path / "share").exists()


def test_target_modules_that_the_base_lacks_are_named(tmp_path: Path, target: FakeTarget) -> None:
    base = make_base(tmp_path / "src")
    adapter = make_adapter(
        tmp_path / "src", "microsoft/Phi-3-mini-4k-instruct", ["q_proj", "v_proj", "o_proj"]
    )
    with pytest.raises(InputError, match=r"target_modules \['q_proj', 'v_proj'\] are not modules"):
        upload_model(
            target, TargetState(tmp_path, "fake"), UploadModelSettings(base, adapter), quiet, print
        )


def test_a_regex_target_modules_must_match_a_module(tmp_path: Path, target: FakeTarget) -> None:
    base = make_base(tmp_path / "src")
    adapter = make_adapter(tmp_path / "src", "microsoft/Phi-3-mini-4k-instruct", r".*\.q_proj")
    with pytest.raises(InputError, match=r"matches no module"):
        upload_model(
            target, TargetState(tmp_path, "fake"), UploadModelSettings(base, adapter), quiet, print
        )


def test_folders_without_configs_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=f"--base {tmp_path}: no config.json there"):
        UploadModelSettings(tmp_path, tmp_path)


def test_the_share_records_what_was_uploaded_but_not_an_equal_file_already_there(
    tmp_path: Path, target: FakeTarget
) -> None:
    given = settings(tmp_path)
    values = TargetState(tmp_path / "project", "fake")
    model = "model-cache/microsoft/Phi-3-mini-4k-instruct"
    adapter = "models/qlora/qlora/gpu_model/adapter"
    # The fine-tuning run already put this very config on the share: upload-model leaves it.
    (tmp_path / "share" / model).mkdir(parents=True)
    shutil.copy(given.base_dir / "config.json", tmp_path / "share" / model / "config.json")
    upload_model(target, values, given, quiet, lambda n: None)
    recorded = uploaded_folders(target.share)
    assert recorded[model] == {
        name: (given.base_dir / name).stat().st_size
        for name in ("model.safetensors", "tokenizer.json")
    }
    assert set(recorded[adapter]) == {"adapter_config.json", "adapter_model.safetensors"}
    # A re-upload keeps what an earlier run wrote, even files now unchanged.
    upload_model(target, values, given, quiet, lambda n: None)
    assert uploaded_folders(target.share) == recorded


@pytest.mark.parametrize(
    "damage", [b"\xff\xfe not utf-8", b"[1, 2]", b'{"folders": {"m": {"a": "x"}}}']
)
def test_a_damaged_record_of_uploads_claims_nothing(tmp_path: Path, damage: bytes) -> None:
    share = LocalShare(tmp_path)
    share.write_bytes(UPLOADS, damage)
    assert uploaded_folders(share) == {}  # so `down --purge` deletes no model file

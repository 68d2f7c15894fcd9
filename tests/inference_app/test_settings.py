"""Settings: flags and their environment twins, adapter discovery, one-line errors."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from inference_app.settings import SettingsError, find_adapters, load_settings
from tests.inference_app.servers import REPO_ROOT


def make_model(root: Path, relative: str = "model-cache/org/base") -> Path:
    path = root / relative
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def make_adapter(root: Path, relative: str) -> Path:
    path = root / relative
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    return path


@pytest.fixture
def share(tmp_path: Path) -> Path:
    make_model(tmp_path, "model-cache/microsoft/Phi-3-mini-4k-instruct")
    make_adapter(tmp_path, "models/qlora/qlora/gpu_model/adapter")
    return tmp_path


def env_for(share: Path, **extra: str) -> dict[str, str]:
    return {"ACA_INFER_MOUNT_ROOT": str(share), "ACA_INFER_API_KEY_PRIMARY": "k", **extra}


def test_defaults_follow_the_ai_toolkit_layout(share: Path) -> None:
    settings = load_settings([], env_for(share))
    assert settings.model_path == share / "model-cache/microsoft/Phi-3-mini-4k-instruct"
    assert dict(settings.adapters) == {"qlora": share / "models/qlora/qlora/gpu_model/adapter"}
    assert (settings.host, settings.port, settings.release) == ("0.0.0.0", 7860, "unknown")


def test_a_flag_wins_over_its_environment_twin(share: Path) -> None:
    settings = load_settings(["--port", "9000"], env_for(share, ACA_INFER_PORT="8000"))
    assert settings.port == 9000
    assert load_settings([], env_for(share, ACA_INFER_PORT="8000")).port == 8000


def test_request_body_limit_has_a_flag_and_an_environment_twin(share: Path) -> None:
    assert load_settings([], env_for(share)).max_request_bytes == 4 * 2**20
    from_env = load_settings([], env_for(share, ACA_INFER_MAX_REQUEST_BYTES="65536"))
    assert from_env.max_request_bytes == 65536
    assert load_settings(["--max-request-bytes", "2048"], env_for(share)).max_request_bytes == 2048
    with pytest.raises(SettingsError, match="ACA_INFER_MAX_REQUEST_BYTES"):
        load_settings([], env_for(share, ACA_INFER_MAX_REQUEST_BYTES="lots"))


def test_keys_never_appear_in_repr(share: Path) -> None:
    settings = load_settings([], env_for(share, ACA_INFER_API_KEY_SECONDARY="s3cret-value"))
    assert settings.api_keys == ("k", "s3cret-value")
    assert "s3cret-value" not in repr(settings)


def test_no_key_refuses_unless_explicitly_insecure(share: Path) -> None:
    environ = {"ACA_INFER_MOUNT_ROOT": str(share)}
    with pytest.raises(SettingsError, match="ACA_INFER_API_KEY_PRIMARY"):
        load_settings([], environ)
    assert load_settings(["--allow-no-auth"], environ).api_keys == ()
    assert load_settings([], {**environ, "ACA_INFER_ALLOW_NO_AUTH": "1"}).allow_no_auth


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("ACA_INFER_PORT", "http", "ACA_INFER_PORT"),
        ("ACA_INFER_PORT", "70000", "ACA_INFER_PORT"),
        ("ACA_INFER_MAX_QUEUE", "-1", "ACA_INFER_MAX_QUEUE"),
        ("ACA_INFER_UI", "maybe", "ACA_INFER_UI"),
        ("ACA_INFER_LOG_LEVEL", "loud", "ACA_INFER_LOG_LEVEL"),
        ("ACA_INFER_QUANTIZATION", "3bit", "ACA_INFER_QUANTIZATION.*none, 8bit, 4bit"),
        ("ACA_INFER_MODEL_PATH", "model-cache/none", "ACA_INFER_MODEL_PATH"),
        ("ACA_INFER_ADAPTER_PATH", "models/missing", "ACA_INFER_ADAPTER_PATH"),
    ],
)
def test_bad_values_name_the_variable(share: Path, variable: str, value: str, named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings([], env_for(share, **{variable: value}))


def test_adapters_found_by_search_named_list_and_empty(share: Path) -> None:
    make_adapter(share, "models/dpo/run1/gpu_model/adapter")
    make_adapter(share, "elsewhere/custom")
    found = find_adapters(share, "models")
    assert set(found) == {"qlora", "dpo"}
    listed = find_adapters(share, "models/qlora/qlora/gpu_model/adapter, mine=elsewhere/custom")
    assert listed == {
        "qlora": share / "models/qlora/qlora/gpu_model/adapter",
        "mine": share / "elsewhere/custom",
    }
    assert find_adapters(share, str(share / "elsewhere/custom")) == {
        "custom": share / "elsewhere/custom"
    }
    assert find_adapters(share, "") == {}


def test_clashing_adapter_names_fall_back_to_their_paths(share: Path) -> None:
    make_adapter(share, "models/qlora/second/gpu_model/adapter")
    assert set(find_adapters(share, "models")) == {
        "qlora/qlora/gpu_model",
        "qlora/second/gpu_model",
    }


def run_module(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inference_app", *args],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_lists_every_environment_twin_without_loading_torch() -> None:
    result = run_module("--help", env={})
    assert result.returncode == 0
    for variable in ("ACA_INFER_MOUNT_ROOT", "ACA_INFER_MODEL_PATH", "ACA_INFER_API_KEY_PRIMARY"):
        assert variable in result.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, runpy; sys.argv=['x', '--help']\n"
            "try: runpy.run_module('inference_app', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print('torch' in sys.modules, 'gradio' in sys.modules)",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.stdout.strip().splitlines()[-1] == "False False"


def test_bad_settings_exit_non_zero_with_one_line_and_no_traceback(share: Path) -> None:
    result = run_module(env=env_for(share, ACA_INFER_PORT="not-a-port"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "ACA_INFER_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_quantization_without_a_gpu_stops_the_server_at_start(share: Path) -> None:
    environ = env_for(share, ACA_INFER_QUANTIZATION="4bit", CUDA_VISIBLE_DEVICES="")
    assert load_settings([], environ).quantization == "4bit"

    result = run_module(env=environ)
    assert result.returncode == 2
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("inference_app: ACA_INFER_QUANTIZATION: 4bit needs a GPU")
    assert "Traceback" not in result.stderr


def test_inference_app_never_imports_the_other_packages() -> None:
    forbidden = {"provision", "scripts", "tests", "bench"}
    for path in (REPO_ROOT / "inference_app").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path} imports {name}"

"""The local target: `.aca-infer/local/` holds the share folder, the secrets (0600), the config
and the replica's pid and log files."""

from __future__ import annotations

import shutil
import socket
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

from provision.errors import InputError, PrerequisiteError
from provision.fsutil import read_json, write_json_atomic
from provision.keys import PRIMARY, SECONDARY, generate_keys
from provision.local.replica import LocalReplica
from provision.local.share import LocalShare
from provision.parameters import resolve_parameters
from provision.targets import (
    ApiKeys,
    DownResult,
    Progress,
    ProvisionResult,
    ProvisionSettings,
)
from provision.wheelhouse import ImagePlatform

STATE_DIR = Path(".aca-infer/local")
PREFERRED_PORT = 7860
# The share holds the fine-tuned model beside the app area; `down` keeps it unless --purge.
MODEL_AREAS = ("model-cache", "models")

DEFAULTS: dict[str, Any] = {
    "modelPath": "model-cache/microsoft/Phi-3-mini-4k-instruct",
    "adapterPath": "models/qlora/qlora/gpu_model/adapter",
    "localPort": 0,  # 0: the preferred port when free, else any free port
}


def _share_relative(name: str, value: Any) -> str:
    path = PurePosixPath(str(value))
    if not str(value) or path.is_absolute() or ".." in path.parts:
        raise InputError(
            f"{name} {value!r}: give a path relative to the share, e.g. {DEFAULTS[name]}"
        )
    return path.as_posix()


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _choose_port(requested: Any) -> int:
    if not isinstance(requested, int) or not 0 <= requested <= 65535:
        raise InputError(f"localPort {requested!r}: give a port number 1-65535, or 0 for any")
    if requested:
        return requested
    if _port_is_free(PREFERRED_PORT):
        return PREFERRED_PORT
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalTarget:
    name = "local"

    def __init__(self, project_dir: Path) -> None:
        self.project_dir = project_dir.resolve()
        self.state_dir = self.project_dir / STATE_DIR
        self.share_dir = self.state_dir / "share"
        self.config_path = self.state_dir / "inference.config.json"
        self.secrets_path = self.state_dir / "secrets.json"

    # -- state written by provision ------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        if not self.config_path.is_file():
            raise PrerequisiteError(
                f"the local target is not provisioned ({self.config_path} is missing); "
                "run: aca-infer provision --target local"
            )
        config: dict[str, Any] = read_json(self.config_path)
        return config

    @property
    def share(self) -> LocalShare:
        return LocalShare(self.share_dir)

    @cached_property
    def replica(self) -> LocalReplica:
        config = self._config()
        keys = self.keys()
        environment = {
            "ACA_INFER_MOUNT_ROOT": str(self.share_dir),
            "ACA_INFER_MODEL_PATH": config["MODEL_PATH"],
            "ACA_INFER_ADAPTER_PATH": config["ADAPTER_PATH"],
            "ACA_INFER_API_KEY_PRIMARY": keys.primary,
            "ACA_INFER_API_KEY_SECONDARY": keys.secondary,
            "ACA_INFER_HOST": "127.0.0.1",
            "ACA_INFER_PORT": str(config["PORT"]),
            "ACA_INFER_RUNTIME_DIR": str(self.state_dir / "runtime"),
            "HF_HUB_OFFLINE": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
        }
        return LocalReplica(self.state_dir, self.share_dir, environment, self.endpoint() + "/ready")

    def image_platform(self) -> ImagePlatform | None:
        # The local replica runs in the project's virtual environment, which has the `serve`
        # extra: no wheels to download. The bootstrap still checks that it has them.
        return None

    def endpoint(self) -> str:
        return str(self._config()["ACA_APP_ENDPOINT"])

    def ui_url(self) -> str:
        return self.endpoint() + "/ui"

    def keys(self) -> ApiKeys:
        if not self.secrets_path.is_file():
            raise PrerequisiteError(
                f"no API keys at {self.secrets_path}; run: aca-infer provision --target local"
            )
        stored = read_json(self.secrets_path)
        return ApiKeys(primary=stored[PRIMARY], secondary=stored[SECONDARY])

    # -- operations ----------------------------------------------------------------------

    def provision(self, settings: ProvisionSettings, progress: Progress) -> ProvisionResult:
        parameters = resolve_parameters(
            self.project_dir, settings.set_flags, settings.environ, DEFAULTS
        )
        model_path = _share_relative("modelPath", parameters["modelPath"])
        adapter_path = _share_relative("adapterPath", parameters["adapterPath"])
        previous = read_json(self.config_path) if self.config_path.is_file() else None
        requested_port = parameters["localPort"]
        if previous and not requested_port:
            requested_port = int(previous["PORT"])  # keep the endpoint stable across runs
        port = _choose_port(requested_port)
        created = previous is None
        self.share_dir.mkdir(parents=True, exist_ok=True)
        if not self.secrets_path.is_file():
            keys = generate_keys()
            write_json_atomic(
                self.secrets_path, {PRIMARY: keys.primary, SECONDARY: keys.secondary}, mode=0o600
            )
            progress(f"generated API keys in {self.secrets_path}")
        endpoint = f"http://127.0.0.1:{port}"
        write_json_atomic(
            self.config_path,
            {
                "TARGET": "local",
                "ACA_APP_NAME": "local",
                "ACA_APP_ENDPOINT": endpoint,
                "FILE_SHARE_NAME": str(self.share_dir),
                "MODEL_PATH": model_path,
                "ADAPTER_PATH": adapter_path,
                "PORT": port,
            },
        )
        progress(f"wrote {self.config_path}")
        return ProvisionResult(
            target=self.name,
            endpoint=endpoint,
            ui_url=endpoint + "/ui",
            config_path=str(self.config_path),
            share=str(self.share_dir),
            parameters={"modelPath": model_path, "adapterPath": adapter_path, "localPort": port},
            created=created,
        )

    def check_deployable(self) -> None:
        config = self._config()
        model_config = self.share_dir / config["MODEL_PATH"] / "config.json"
        if not model_config.is_file():
            raise InputError(
                f"modelPath {config['MODEL_PATH']!r}: no model at {model_config.parent}; copy the "
                "base model there (or `make demo-model`), or provision with --set modelPath=..."
            )
        adapter_config = self.share_dir / config["ADAPTER_PATH"] / "adapter_config.json"
        if not adapter_config.is_file():
            raise InputError(
                f"adapterPath {config['ADAPTER_PATH']!r}: no LoRA adapter at "
                f"{adapter_config.parent}; provision with --set adapterPath=..."
            )

    def down(self, purge: bool, progress: Progress) -> DownResult:
        stopped = self.replica.stop() if self.config_path.is_file() else False
        if stopped:
            progress("stopped the replica")
        kept = [] if purge else [a for a in MODEL_AREAS if (self.share_dir / a).exists()]
        removed: list[str] = []
        if self.state_dir.exists():
            for entry in sorted(self.state_dir.iterdir()):
                if entry == self.share_dir and kept:
                    for item in sorted(entry.iterdir()):
                        if item.name not in kept:
                            _remove(item)
                            removed.append(str(item))
                    continue
                _remove(entry)
                removed.append(str(entry))
        return DownResult(
            target=self.name,
            stopped=stopped,
            removed=removed,
            kept=[str(self.share_dir / a) for a in kept],
        )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()

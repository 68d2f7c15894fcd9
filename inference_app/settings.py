"""Server settings: one command-line flag per setting, each with an `ACA_INFER_*` environment twin.

Precedence: a flag given on the command line → its environment variable → the default below.
Every value is checked here, once; a bad one raises `SettingsError` with a single line that names
the variable and says how to fix it.

Paths (`ACA_INFER_MODEL_PATH`, `ACA_INFER_ADAPTER_PATH`) are relative to `ACA_INFER_MOUNT_ROOT`
unless absolute.

Adapters: `ACA_INFER_ADAPTER_PATH` is a comma-separated list. Each entry is either

* an adapter folder (it holds `adapter_config.json`), or
* a folder searched recursively for every `adapter/` folder holding an `adapter_config.json`
  (so `models` finds all adapters the AI Toolkit wrote under the share's `models/`),

optionally prefixed with `name=` to choose the adapter's model id. Without a name, an adapter
under `<mount>/models/` is named after its first folder there
(`models/qlora/qlora/gpu_model/adapter` → `qlora`), one elsewhere after its folder (or the
folder above, when that is called `adapter`); clashing names fall back to the path below
`models/`. An empty value serves the base model only.
Every listed entry must exist: a wrong path is a configuration error, not a silent "no adapter".
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ADAPTER_CONFIG = "adapter_config.json"
# The values of the template's `quantization` parameter (infra/provision/inference.bicep).
QUANTIZATIONS = ("none", "8bit", "4bit")

T = TypeVar("T")

# Room for a long conversation at a large context window (128k tokens are about 0.5 MB of
# text), far below what would take the server seconds to parse.
DEFAULT_MAX_REQUEST_BYTES = 4 * 2**20


class SettingsError(Exception):
    """A setting is missing or wrong; the message is one line naming it and the fix."""


@dataclass(frozen=True)
class Settings:
    model_path: Path
    adapters: Mapping[str, Path] = field(default_factory=dict)
    api_keys: tuple[str, ...] = ()
    allow_no_auth: bool = False
    host: str = "0.0.0.0"
    port: int = 7860
    release: str = "unknown"
    instance_id: str = "unknown"
    max_batch_size: int = 16
    max_queue: int = 128
    default_max_tokens: int = 512
    max_tokens_limit: int = 0  # 0 = only the context window bounds max_tokens
    keepalive_seconds: float = 10.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    ui_enabled: bool = True
    forwarded_allow_ips: str = "*"
    log_level: str = "INFO"
    quantization: str = "none"
    runtime_dir: Path = Path("/tmp/aca-infer")

    def __post_init__(self) -> None:
        if not self.api_keys and not self.allow_no_auth:
            raise SettingsError(
                "no API key configured: set ACA_INFER_API_KEY_PRIMARY (and optionally "
                "ACA_INFER_API_KEY_SECONDARY), or ACA_INFER_ALLOW_NO_AUTH=1 to serve without one"
            )

    def __repr__(self) -> str:
        # Keys never reach logs or tracebacks.
        return (
            f"Settings(model_path={self.model_path}, adapters={dict(self.adapters)}, "
            f"api_keys=<{len(self.api_keys)} set>, host={self.host}, port={self.port}, "
            f"release={self.release})"
        )


@dataclass(frozen=True)
class _Option:
    flag: str
    env: str
    default: str
    help: str
    secret: bool = False
    is_switch: bool = False

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


OPTIONS: tuple[_Option, ...] = (
    _Option("--mount-root", "ACA_INFER_MOUNT_ROOT", "/mount", "root of the share"),
    _Option(
        "--model-path",
        "ACA_INFER_MODEL_PATH",
        "model-cache/microsoft/Phi-3-mini-4k-instruct",
        "base model folder (relative to the mount root, or absolute)",
    ),
    _Option(
        "--adapter-path",
        "ACA_INFER_ADAPTER_PATH",
        "models/qlora/qlora/gpu_model/adapter",
        "comma-separated adapter folders or folders to search ([name=]path); empty = none",
    ),
    _Option("--api-key-primary", "ACA_INFER_API_KEY_PRIMARY", "", "API key", secret=True),
    _Option("--api-key-secondary", "ACA_INFER_API_KEY_SECONDARY", "", "API key", secret=True),
    _Option(
        "--allow-no-auth",
        "ACA_INFER_ALLOW_NO_AUTH",
        "false",
        "serve without an API key (insecure; local experiments only)",
        is_switch=True,
    ),
    _Option("--host", "ACA_INFER_HOST", "0.0.0.0", "address to listen on"),
    _Option("--port", "ACA_INFER_PORT", "7860", "port to listen on"),
    _Option("--release", "ACA_INFER_RELEASE", "unknown", "release id reported by /health"),
    _Option(
        "--instance-id",
        "ACA_INFER_INSTANCE_ID",
        "unknown",
        "id of this start, set by the deploy and reported by /health (proves who answers)",
    ),
    _Option("--max-batch-size", "ACA_INFER_MAX_BATCH_SIZE", "16", "sequences per forward pass"),
    _Option("--max-queue", "ACA_INFER_MAX_QUEUE", "128", "waiting requests before 429"),
    _Option(
        "--default-max-tokens",
        "ACA_INFER_DEFAULT_MAX_TOKENS",
        "512",
        "max_tokens when a chat request gives none",
    ),
    _Option(
        "--max-tokens-limit",
        "ACA_INFER_MAX_TOKENS_LIMIT",
        "0",
        "upper bound on any request's max_tokens (0 = the context window)",
    ),
    _Option(
        "--keepalive-seconds",
        "ACA_INFER_KEEPALIVE_SECONDS",
        "10",
        "SSE keep-alive comment interval while no token arrives",
    ),
    _Option(
        "--max-request-bytes",
        "ACA_INFER_MAX_REQUEST_BYTES",
        str(DEFAULT_MAX_REQUEST_BYTES),
        "largest request body accepted; a larger one is refused with 413",
    ),
    _Option("--ui", "ACA_INFER_UI", "true", "mount the Gradio chat UI at /ui (true/false)"),
    _Option(
        "--forwarded-allow-ips",
        "ACA_INFER_FORWARDED_ALLOW_IPS",
        "*",
        "proxies trusted for X-Forwarded-* (the replica is reachable only through its ingress)",
    ),
    _Option("--log-level", "ACA_INFER_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR"),
    _Option(
        "--quantization",
        "ACA_INFER_QUANTIZATION",
        "none",
        "base model weights: none, 8bit or 4bit (bitsandbytes; GPU only)",
    ),
    _Option(
        "--runtime-dir",
        "ACA_INFER_RUNTIME_DIR",
        "/tmp/aca-infer",
        "local disk folder for the model copy of a network-mounted share",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference_app",
        description="OpenAI-compatible inference server for a base model plus LoRA adapters.",
        epilog="Every flag has the environment twin shown; a flag wins over its variable.",
    )
    for option in OPTIONS:
        shown_default = "(unset)" if option.secret else repr(option.default)
        help_text = f"{option.help} [env {option.env}; default {shown_default}]"
        if option.is_switch:
            parser.add_argument(
                option.flag, dest=option.dest, action="store_const", const="true", help=help_text
            )
        else:
            parser.add_argument(option.flag, dest=option.dest, metavar="VALUE", help=help_text)
    return parser


def load_settings(argv: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """Merge flags, environment and defaults into validated `Settings`."""
    args = vars(build_parser().parse_args(list(argv)))
    raw: dict[str, tuple[_Option, str]] = {}
    for option in OPTIONS:
        value = args.get(option.dest)
        if value is None:
            value = environ.get(option.env, option.default)
        raw[option.dest] = (option, value.strip())

    def get(name: str, parse: Callable[[_Option, str], T]) -> T:
        option, value = raw[name]
        return parse(option, value)

    mount_root = Path(get("mount_root", _text))
    model_path = _resolve(mount_root, get("model_path", _text))
    if not (model_path / "config.json").is_file():
        raise SettingsError(
            f"ACA_INFER_MODEL_PATH: no model at {model_path} (config.json missing); point it at "
            "the base model folder, relative to ACA_INFER_MOUNT_ROOT or absolute"
        )
    keys = tuple(k for k in (raw["api_key_primary"][1], raw["api_key_secondary"][1]) if k)
    return Settings(
        model_path=model_path,
        adapters=find_adapters(mount_root, raw["adapter_path"][1]),
        api_keys=keys,
        allow_no_auth=get("allow_no_auth", _bool),
        host=get("host", _text),
        port=get("port", _int_between(1, 65535)),
        release=raw["release"][1] or "unknown",
        instance_id=raw["instance_id"][1] or "unknown",
        max_batch_size=get("max_batch_size", _int_between(1, 4096)),
        max_queue=get("max_queue", _int_between(1, 1_000_000)),
        default_max_tokens=get("default_max_tokens", _int_between(1, 1_000_000)),
        max_tokens_limit=get("max_tokens_limit", _int_between(0, 1_000_000)),
        keepalive_seconds=get("keepalive_seconds", _float_between(0.1, 230.0)),
        max_request_bytes=get("max_request_bytes", _int_between(1024, 2**30)),
        ui_enabled=get("ui", _bool),
        forwarded_allow_ips=get("forwarded_allow_ips", _text),
        log_level=get("log_level", _log_level),
        quantization=get("quantization", _choice(QUANTIZATIONS)),
        runtime_dir=Path(get("runtime_dir", _text)),
    )


def find_adapters(mount_root: Path, spec: str) -> dict[str, Path]:
    """Resolve the `ACA_INFER_ADAPTER_PATH` list (see the module docstring) to name → folder."""
    named: list[tuple[str | None, Path]] = []
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue
        name, _, path_text = entry.rpartition("=") if "=" in entry else ("", "", entry)
        root = _resolve(mount_root, path_text.strip())
        if not root.is_dir():
            raise SettingsError(
                f"ACA_INFER_ADAPTER_PATH: {root} does not exist; list existing adapter folders "
                "(comma-separated) or set it empty to serve the base model only"
            )
        found = [root] if (root / ADAPTER_CONFIG).is_file() else _search_adapters(root)
        if not found:
            raise SettingsError(
                f"ACA_INFER_ADAPTER_PATH: no {ADAPTER_CONFIG} in or below {root}; point it at an "
                "adapter folder or set it empty to serve the base model only"
            )
        if name.strip() and len(found) > 1:
            raise SettingsError(
                f"ACA_INFER_ADAPTER_PATH: '{name.strip()}=' names one adapter but {root} holds "
                f"{len(found)}; name each adapter folder separately"
            )
        named.extend((name.strip() or None, path) for path in found)
    return _name_adapters(mount_root, named)


def _search_adapters(root: Path) -> list[Path]:
    return sorted(
        config.parent for config in root.rglob(ADAPTER_CONFIG) if config.parent.name == "adapter"
    )


def _name_adapters(mount_root: Path, named: list[tuple[str | None, Path]]) -> dict[str, Path]:
    models_dir = (mount_root / "models").resolve()
    short: list[tuple[str, str, Path]] = []
    for name, path in named:
        if name:
            short.append((name, name, path))
            continue
        resolved = path.resolve()
        if resolved.is_relative_to(models_dir) and resolved != models_dir:
            parts = resolved.relative_to(models_dir).parts
            short.append((parts[0], "/".join(parts[:-1] if len(parts) > 1 else parts), path))
        else:
            folder = resolved.parent if resolved.name == "adapter" else resolved
            short.append((folder.name, str(folder), path))
    counts: dict[str, int] = {}
    for brief, _, _ in short:
        counts[brief] = counts.get(brief, 0) + 1
    adapters: dict[str, Path] = {}
    for brief, long, path in short:
        adapter_name = brief if counts[brief] == 1 else long
        if adapter_name in adapters and adapters[adapter_name] != path:
            raise SettingsError(
                f"ACA_INFER_ADAPTER_PATH: two adapters are both named '{adapter_name}'; "
                "give them distinct names with name=path"
            )
        adapters[adapter_name] = path
    return adapters


def _resolve(mount_root: Path, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else mount_root / path


def _text(option: _Option, value: str) -> str:
    if not value:
        raise SettingsError(
            f"{option.env} ({option.flag}) is empty; set it (default: {option.default})"
        )
    return value


def _bool(option: _Option, value: str) -> bool:
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"{option.env} ({option.flag}): '{value}' is not true/false")


def _int_between(low: int, high: int) -> Callable[[_Option, str], int]:
    def parse(option: _Option, value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise SettingsError(
                f"{option.env} ({option.flag}): '{value}' is not a whole number "
                f"from {low} to {high}"
            )
        return number

    return parse


def _float_between(low: float, high: float) -> Callable[[_Option, str], float]:
    def parse(option: _Option, value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise SettingsError(
                f"{option.env} ({option.flag}): '{value}' is not a number from {low} to {high}"
            )
        return number

    return parse


def _choice(allowed: Sequence[str]) -> Callable[[_Option, str], str]:
    def parse(option: _Option, value: str) -> str:
        if value not in allowed:
            raise SettingsError(
                f"{option.env} ({option.flag}): '{value}' is not one of {', '.join(allowed)}"
            )
        return value

    return parse


def _log_level(option: _Option, value: str) -> str:
    level = value.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError(
            f"{option.env} ({option.flag}): '{value}' is not DEBUG/INFO/WARNING/ERROR"
        )
    return level


def describe(settings: Settings) -> dict[str, Any]:
    """The settings as a loggable dict: paths and sizes, never keys."""
    return {
        "model_path": str(settings.model_path),
        "adapters": {name: str(path) for name, path in settings.adapters.items()},
        "api_keys": len(settings.api_keys),
        "host": settings.host,
        "port": settings.port,
        "release": settings.release,
        "max_batch_size": settings.max_batch_size,
        "max_queue": settings.max_queue,
        "max_request_bytes": settings.max_request_bytes,
        "ui": settings.ui_enabled,
        "quantization": settings.quantization,
    }

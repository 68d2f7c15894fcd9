"""Load the base model with few, large reads, and say how far it got.

An SMB share (the Azure Files mount) is slow for the many small, scattered reads that mapping a
checkpoint into memory makes; it is fast for a few large sequential reads in parallel. So a model
folder on a network mount is first copied whole to local disk with large parallel reads (once per
content: a later start of the same replica reuses the copy), then loaded from there; a model on
local disk is loaded where it is. Only safetensors weights are read when the folder has them.

Every phase reports progress through a callback (the engine shows it in `/ready`'s 503 reason)
and the result carries the timings the server logs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inference_app.engine.device import LoadPlan, PlacementError

Progress = Callable[[str], None]

NETWORK_FILESYSTEMS = frozenset({"cifs", "smb3", "smbfs", "nfs", "nfs4", "9p", "fuse.blobfuse2"})
CHUNK_BYTES = 64 * 2**20
COPY_THREADS = 8
# Room left free on the local disk after a copy, so logs and the package cache still fit.
DISK_MARGIN_BYTES = 2 * 2**30
TICK_SECONDS = 1.0
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True)
class LoadReport:
    source: str  # where the weights were read from
    copied_bytes: int
    copy_seconds: float
    load_seconds: float

    @property
    def total_seconds(self) -> float:
        return self.copy_seconds + self.load_seconds


def checkpoint_files(model_dir: Path) -> list[Path]:
    """The files a load reads: safetensors weights when there are any (never both formats)."""
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and ".cache" not in p.parts)
    if any(p.suffix == ".safetensors" for p in files):
        return [p for p in files if p.suffix not in _WEIGHT_SUFFIXES or p.suffix == ".safetensors"]
    return files


def weights_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in checkpoint_files(model_dir) if _is_weights(p))


def _is_weights(path: Path) -> bool:
    return path.suffix in _WEIGHT_SUFFIXES


def filesystem_type(path: Path, mounts_file: Path = Path("/proc/mounts")) -> str:
    """The type of the filesystem holding `path` (the longest mount point above it)."""
    try:
        lines = mounts_file.read_text().splitlines()
    except OSError:
        return "unknown"
    resolved = str(path.resolve())
    best, fstype = "", "unknown"
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount_point = parts[1].replace("\\040", " ")
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, fstype = mount_point, parts[2]
    return fstype


def is_network_mount(path: Path, mounts_file: Path = Path("/proc/mounts")) -> bool:
    return filesystem_type(path, mounts_file) in NETWORK_FILESYSTEMS


def _content_key(model_dir: Path, files: list[Path]) -> str:
    digest = hashlib.sha256(str(model_dir.resolve()).encode())
    for file in files:
        stat = file.stat()
        digest.update(
            f"{file.relative_to(model_dir)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
        )
    return digest.hexdigest()[:16]


def _copy_file(
    source: Path, destination: Path, advance: Callable[[int], None], chunk_bytes: int
) -> None:
    """Copy one file with large reads at offsets, in parallel chunks."""
    size = source.stat().st_size
    with source.open("rb") as src, destination.open("wb") as dst:
        dst.truncate(size)
        offsets = range(0, size, chunk_bytes)

        def copy_chunk(offset: int) -> None:
            data = os.pread(src.fileno(), min(chunk_bytes, size - offset), offset)
            os.pwrite(dst.fileno(), data, offset)
            advance(len(data))

        with ThreadPoolExecutor(COPY_THREADS) as pool:
            list(pool.map(copy_chunk, offsets))


def stage_locally(
    model_dir: Path, cache_root: Path, progress: Progress, chunk_bytes: int = CHUNK_BYTES
) -> tuple[Path, int]:
    """Copy the checkpoint to `cache_root`/<content key> (reused when complete); returns the local
    folder and the bytes copied (0 on reuse). Falls back to `model_dir` when the disk is short."""
    files = checkpoint_files(model_dir)
    total = sum(p.stat().st_size for p in files)
    target = cache_root / _content_key(model_dir, files)
    if (target / ".complete").is_file():
        return target, 0
    cache_root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache_root).free
    if free < total + DISK_MARGIN_BYTES:
        progress(
            f"local disk has {free / 2**30:.1f} GiB free, too little for a "
            f"{total / 2**30:.1f} GiB copy; reading from the share"
        )
        return model_dir, 0
    staging = Path(tempfile.mkdtemp(dir=cache_root, prefix=f".{target.name}."))
    done = 0
    lock = threading.Lock()

    def advance(count: int) -> None:
        nonlocal done
        with lock:
            done += count

    def status() -> str:
        return f"copying {done / 2**30:.2f} of {total / 2**30:.2f} GiB from the share to local disk"

    with ticking(progress, status):
        for file in files:
            destination = staging / file.relative_to(model_dir)
            destination.parent.mkdir(parents=True, exist_ok=True)
            _copy_file(file, destination, advance, chunk_bytes)
    (staging / ".complete").write_text(str(model_dir))
    if target.exists():  # an interrupted copy of the same content
        shutil.rmtree(target)
    os.replace(staging, target)
    return target, total


@contextmanager
def ticking(progress: Progress, status: Callable[[], str]) -> Iterator[None]:
    """Report `status()` plus the elapsed time now and every second until the block ends."""
    started = time.monotonic()
    stop = threading.Event()

    def report() -> None:
        progress(f"{status()} ({time.monotonic() - started:.0f} s)")

    def tick() -> None:
        while not stop.wait(TICK_SECONDS):
            report()

    report()
    ticker = threading.Thread(target=tick, name="load-progress", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        stop.set()
        ticker.join()


def quantization_config(plan: LoadPlan) -> Any:
    if plan.quantization == "none":
        return None
    try:
        import bitsandbytes  # noqa: F401  # transformers needs it; fail here with a clear line
        from transformers import BitsAndBytesConfig
    except ImportError as err:
        raise PlacementError(
            f"ACA_INFER_QUANTIZATION: {plan.quantization} needs the bitsandbytes package, which "
            "this replica lacks; install the project's 'gpu' extra or set quantization to none"
        ) from err
    if plan.quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=plan.torch_dtype(),
        bnb_4bit_use_double_quant=True,
    )


def load_model(
    model_dir: Path,
    plan: LoadPlan,
    cache_root: Path | None,
    progress: Progress,
    mounts_file: Path = Path("/proc/mounts"),
) -> tuple[Any, LoadReport]:
    """The model in eval mode, placed as `plan` says. `cache_root` None: never copy."""
    from transformers import AutoModelForCausalLM

    quantization = quantization_config(plan)
    started = time.monotonic()
    source, copied = model_dir, 0
    if cache_root is not None and is_network_mount(model_dir, mounts_file):
        source, copied = stage_locally(model_dir, cache_root, progress)
    copy_seconds = time.monotonic() - started
    started = time.monotonic()
    target = plan.device if plan.device_map is None else "the GPUs"
    kwargs: dict[str, Any] = {"dtype": plan.torch_dtype(), "local_files_only": True}
    if any(p.suffix == ".safetensors" for p in source.iterdir()):
        kwargs["use_safetensors"] = True
    if plan.device_map is not None:
        kwargs["device_map"] = plan.device_map
    if quantization is not None:
        kwargs["quantization_config"] = quantization

    def status() -> str:
        detail = f"{plan.dtype}, quantization {plan.quantization}"
        return f"reading weights onto {target} ({detail})"

    with ticking(progress, status):
        model: Any = AutoModelForCausalLM.from_pretrained(source, **kwargs)
        if plan.device_map is None:
            model.to(plan.device)
    model.eval()
    report = LoadReport(str(source), copied, copy_seconds, time.monotonic() - started)
    return model, report

"""`upload-model` of a generated model with one large weight file: throughput and peak memory.

ours: `provision.model_upload.upload_model` to a local share (parallel ranged chunks, streamed
hashing, verification read-back). baseline: what `Share.write_bytes` would do with the same
files (read each whole, write it whole). Each runs in its own child process; peak memory is the
child's `ru_maxrss` from `wait4`. Results are appended to bench/RESULTS.md.

    .venv/bin/python -m bench.upload_model_bench --size-mb 2048
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")

OURS = """
import sys
from pathlib import Path
from typing import cast
from provision.local.share import LocalShare
from provision.model_upload import UploadModelSettings, upload_model
from provision.target_state import TargetState
from provision.targets import Target

class BenchTarget:
    name = "bench"
    def __init__(self, root): self.share = LocalShare(root)
    def endpoint(self): return "http://127.0.0.1:1"

src, share, project = (Path(a) for a in sys.argv[1:4])
settings = UploadModelSettings(src / "Phi-3-mini-4k-instruct", src / "adapter")
upload_model(cast(Target, BenchTarget(share)), TargetState(project, "bench"), settings,
             lambda m: None, lambda n: None)
"""

BASELINE = """
import sys
from pathlib import Path
from provision.local.share import LocalShare
src, share = Path(sys.argv[1]), LocalShare(Path(sys.argv[2]))
for folder, remote in (("Phi-3-mini-4k-instruct", "model-cache/m/base"), ("adapter", "models/a")):
    for file in sorted((src / folder).iterdir()):
        share.write_bytes(f"{remote}/{file.name}", file.read_bytes())
"""


def make_model(src: Path, size_mb: int) -> int:
    base = src / "Phi-3-mini-4k-instruct"
    adapter = src / "adapter"
    base.mkdir(parents=True)
    adapter.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps({"model_type": "phi3"}))
    block = os.urandom(8 << 20)
    with (base / "pytorch_model.bin").open("wb") as weights:
        for _ in range(size_mb // 8):
            weights.write(block)
    adapter_config = {
        "base_model_name_or_path": "microsoft/Phi-3-mini-4k-instruct",
        "target_modules": ["qkv_proj", "o_proj"],
    }
    (adapter / "adapter_config.json").write_text(json.dumps(adapter_config))
    (adapter / "adapter_model.safetensors").write_bytes(os.urandom(1 << 20))
    return sum(p.stat().st_size for p in src.rglob("*") if p.is_file())


def run_child(code: str, *args: Path) -> tuple[float, int]:
    """Wall seconds and peak resident memory (bytes) of `python -c code args`."""
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-c", code, *map(str, args)])
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"child failed with {process.returncode}")
    return time.monotonic() - started, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=2048)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="upload-bench-"))
    try:
        total = make_model(work / "src", options.size_mb)
        ours = run_child(OURS, work / "src", work / "share", work / "project")
        rerun = run_child(OURS, work / "src", work / "share", work / "project")
        baseline = run_child(BASELINE, work / "src", work / "baseline-share")
    finally:
        shutil.rmtree(work)
    mib = 1 << 20
    rows = [
        ("ours: upload-model (first)", ours),
        ("ours: re-run (nothing to upload)", rerun),
        ("baseline: whole-file read + write", baseline),
    ]
    table = [
        f"\n## upload-model: {total / mib:.0f} MiB model (one {options.size_mb} MiB weight file)\n",
        "Local share on the same disk; `bench/upload_model_bench.py`. Throughput is model bytes "
        "over wall time; ours also hashes the source and reads every file back to verify it.\n",
        "| run | wall | throughput | peak RSS |",
        "|---|---:|---:|---:|",
    ]
    for name, (seconds, peak) in rows:
        rate = total / mib / seconds
        table.append(f"| {name} | {seconds:.1f} s | {rate:.0f} MiB/s | {peak / mib:.0f} MiB |")
    text = "\n".join(table) + "\n"
    print(text)
    with RESULTS.open("a") as results:
        results.write(text)


if __name__ == "__main__":
    main()

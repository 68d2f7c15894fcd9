"""`upload-model` of a generated model with one large weight file: throughput, peak memory and,
on Azure, storage requests, against a baseline in the same run.

local: `provision.model_upload.upload_model` to a local share (ranged chunks, the source hashed
as it is read, verification read-back). baseline: what `Share.write_bytes` would do with the same
files (read each whole, write it whole).

azure: the CLI (`python -m provision upload-model --target azure`) against the Azure double (a
project provisioned through it; the real SDK over TLS): first run; re-run (nothing to upload,
decided from the hashes recorded in the files' metadata, no read-back); the weight file deleted
from the share and an upload killed with SIGKILL once half its ranges are stored, then re-run
(it resumes the stored ranges). baseline: the SDK's `upload_file` of the same files from an open
file (what `az storage file upload` does), 4 ranges in parallel, no checks.

Each run is its own child process; peak memory is the child's `ru_maxrss` from `wait4`. Storage
requests and bytes sent are counted by the double's request log (files listener). Results
replace this bench's section of bench/RESULTS.md.

    .venv/bin/python -m bench.upload_model_bench --size-mb 2048
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN, END = "<!-- upload_model_bench: begin -->", "<!-- upload_model_bench: end -->"
OLD_HEADING = "## upload-model:"  # the section before it had markers
BASE = "Phi-3-mini-4k-instruct"
MIB = 1 << 20
RSS_GOAL_MB = 300
RANGE_BYTES = 4 * MIB

OURS_LOCAL = """
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

BASELINE_LOCAL = """
import sys
from pathlib import Path
from provision.local.share import LocalShare
src, share = Path(sys.argv[1]), LocalShare(Path(sys.argv[2]))
for folder, remote in (("Phi-3-mini-4k-instruct", "model-cache/m/base"), ("adapter", "models/a")):
    for file in sorted((src / folder).iterdir()):
        share.write_bytes(f"{remote}/{file.name}", file.read_bytes())
"""

# `az storage file upload` for each file: the SDK's upload_file from an open file.
BASELINE_AZURE = """
import os, sys
from pathlib import Path
from azure.storage.fileshare import ShareClient
src, endpoint, account, name = Path(sys.argv[1]), *sys.argv[2:5]
key = {"account_name": account, "account_key": os.environ["BENCH_ACCOUNT_KEY"]}
share = ShareClient(endpoint, name, credential=key)
for folder in ("Phi-3-mini-4k-instruct", "adapter"):
    share.get_directory_client(f"baseline-{folder}").create_directory()
    for file in sorted((src / folder).iterdir()):
        with file.open("rb") as data:
            share.get_file_client(f"baseline-{folder}/{file.name}").upload_file(
                data, length=file.stat().st_size, max_concurrency=4
            )
"""


@dataclass(frozen=True)
class Run:
    name: str
    seconds: float
    peak: int  # bytes
    killed: bool = False
    sent: int | None = None  # bytes in stored ranges (azure)
    requests: int | None = None  # storage requests (azure)
    reads: int | None = None  # requests that read file content back (azure)


def make_model(src: Path, size_mb: int) -> int:
    base = src / BASE
    adapter = src / "adapter"
    base.mkdir(parents=True)
    adapter.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps({"model_type": "phi3"}))
    block = bytearray(os.urandom(8 * MIB))
    with (base / "pytorch_model.bin").open("wb") as weights:
        for index in range(max(1, size_mb * MIB // len(block))):
            block[:8] = index.to_bytes(8, "little")  # no two blocks alike
            weights.write(block[: min(len(block), size_mb * MIB)])
    adapter_config = {
        "base_model_name_or_path": "microsoft/Phi-3-mini-4k-instruct",
        "target_modules": ["qkv_proj", "o_proj"],
    }
    (adapter / "adapter_config.json").write_text(json.dumps(adapter_config))
    (adapter / "adapter_model.safetensors").write_bytes(os.urandom(MIB))
    return sum(p.stat().st_size for p in src.rglob("*") if p.is_file())


def run_child(
    argv: Sequence[str],
    env: dict[str, str] | None = None,
    kill_when: Callable[[], bool] | None = None,
) -> tuple[float, int, bool]:
    """Wall seconds, peak resident memory (bytes) of the child, and whether `kill_when` came
    true first (the child was then killed with SIGKILL)."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        killed, flags = False, 0 if kill_when is None else os.WNOHANG
        while True:
            done, status, usage = os.wait4(process.pid, flags)
            if done:
                break
            if kill_when is not None and kill_when():
                os.kill(process.pid, signal.SIGKILL)
                killed, flags = True, 0
            else:
                time.sleep(0.005)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0 and not killed:
            errors.seek(0)
            raise SystemExit(f"child failed ({process.returncode}): {errors.read().decode()}")
    return time.monotonic() - started, usage.ru_maxrss * 1024, killed


def local_runs(work: Path) -> list[Run]:
    python = [sys.executable, "-c"]
    args = [str(work / "src"), str(work / "share"), str(work / "project")]
    rows = []
    for name in ("ours: upload-model (first)", "ours: re-run (nothing to upload)"):
        seconds, peak, _ = run_child([*python, OURS_LOCAL, *args])
        rows.append(Run(name, seconds, peak))
    baseline = [*python, BASELINE_LOCAL, str(work / "src"), str(work / "baseline-share")]
    seconds, peak, _ = run_child(baseline)
    rows.append(Run("baseline: whole-file read + write", seconds, peak))
    return rows


def _reads_model_file(request: Any) -> bool:
    """A Get File of a model file's content (not a listing, not the share, not app/)."""
    return (
        request.method == "GET"
        and not {"comp", "restype"} & set(request.query)
        and "/app/" not in request.path
    )


class AzureBench:
    """A project provisioned against the double, and the upload-model runs measured on it."""

    def __init__(self, double: Any, root: Path, src: Path) -> None:
        from bench.deploy_bench import Bench  # provisions a project through the double

        self.double = double
        self.src = src
        project = Bench(double, root, files=2)
        self.account = project.names["storageAccountName"]
        self.share = project.names["fileShareName"]
        self.env = {**os.environ, **project.session.env()}
        self.argv = [
            *(sys.executable, "-m", "provision", "--project-dir", str(project.project)),
            *("--output", "json", "upload-model", "--target", "azure"),
            *("--base", str(src / BASE), "--adapter", str(src / "adapter")),
        ]

    def _requests(self, since: int) -> list[Any]:
        return [r for r in self.double.requests[since:] if r.listener == "files"]

    def _stored_ranges(self, since: int) -> list[Any]:
        return [
            r
            for r in self._requests(since)
            if r.method == "PUT" and r.query.get("comp") == "range" and r.status == 201
        ]

    def measure(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        kill_when: Callable[[int], bool] | None = None,
    ) -> Run:
        since = len(self.double.requests)
        until = None if kill_when is None else (lambda: kill_when(since))
        seconds, peak, killed = run_child(argv, env, until)
        requests = self._requests(since)
        return Run(
            name,
            seconds,
            peak,
            killed=killed,
            sent=sum(r.body_size for r in self._stored_ranges(since)),
            requests=len(requests),
            reads=sum(1 for r in requests if _reads_model_file(r)),
        )

    def runs(self, weights_bytes: int) -> list[Run]:
        rows = [
            self.measure("ours: upload-model (first)", self.argv, self.env),
            self.measure("ours: re-run (nothing to upload)", self.argv, self.env),
        ]
        share_root = self.double.share_root(self.account, self.share)
        (share_root / f"model-cache/microsoft/{BASE}/pytorch_model.bin").unlink()
        half = max(1, weights_bytes // RANGE_BYTES // 2)
        rows.append(
            self.measure(
                "ours: weights deleted, upload killed halfway",
                self.argv,
                self.env,
                kill_when=lambda since: (
                    sum(1 for r in self._stored_ranges(since) if r.body_size == RANGE_BYTES) >= half
                ),
            )
        )
        rows.append(self.measure("ours: re-run after the kill (resumes)", self.argv, self.env))
        key = self.double.storage_account_keys(self.account)[0]
        baseline = [
            *(sys.executable, "-c", BASELINE_AZURE, str(self.src)),
            *(self.double.files_endpoint(self.account), self.account, self.share),
        ]
        rows.append(
            self.measure(
                "baseline: SDK upload_file (az storage file upload)",
                baseline,
                {**self.env, "BENCH_ACCOUNT_KEY": key},
            )
        )
        return rows


def azure_runs(work: Path, weights_bytes: int) -> list[Run]:
    from tests.azure_double.server import AzureDouble

    double = AzureDouble(state_dir=work / "double").start()
    try:
        return AzureBench(double, work / "azure", work / "src").runs(weights_bytes)
    finally:
        double.stop()


def _rate(total: int, run: Run) -> str:
    sent = total if run.sent is None else run.sent
    return f"{sent / MIB / run.seconds:.0f} MiB/s" if sent else "—"


def report(total: int, size_mb: int, local: list[Run], azure: list[Run]) -> str:
    lines = [
        BEGIN,
        f"## upload-model: {total / MIB:.0f} MiB model (one {size_mb} MiB weight file)",
        "",
        f"`python -m bench.upload_model_bench --size-mb {size_mb}`; every run a child process, "
        "peak RSS its `ru_maxrss`.",
    ]
    if local:
        lines += [
            "",
            "### Local share (same disk)",
            "",
            "Throughput is model bytes over wall time; ours also hashes the source and reads "
            "every file back to verify it.",
            "",
            "| run | wall | throughput | peak RSS |",
            "|---|---:|---:|---:|",
            *(
                f"| {r.name} | {r.seconds:.1f} s | {_rate(total, r)} | {r.peak / MIB:.0f} MiB |"
                for r in local
            ),
        ]
    if azure:
        lines += [
            "",
            "### Azure Files share (through the Azure double, real SDK over TLS, on this machine)",
            "",
            "Ours is the CLI: each 4 MiB range sent with its Content-MD5, the source's SHA-256 "
            "recorded in the file's metadata, re-runs and verification decided from it (model "
            "reads: requests reading a model file's content back). Bytes sent are the ranges "
            "the double stored; throughput is bytes sent over wall time (CLI start-up "
            "included). The double serves from the same 2-core machine, so absolute rates are "
            "the machine's, not Azure's.",
            "",
            "| run | wall | bytes sent | throughput | peak RSS | storage requests | model reads |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *(
                f"| {r.name}{' (killed)' if r.killed else ''} | {r.seconds:.1f} s "
                f"| {(r.sent or 0) / MIB:.0f} MiB | {_rate(total, r)} | {r.peak / MIB:.0f} MiB "
                f"| {r.requests} | {r.reads} |"
                for r in azure
            ),
        ]
    ours = [r for r in [*local, *azure] if r.name.startswith("ours")]
    worst = max((r.peak for r in ours), default=0)
    verdict = "met" if worst < RSS_GOAL_MB * 1_000_000 else "NOT met"
    lines += [
        "",
        f"Goal: upload-model peaks under {RSS_GOAL_MB} MB RSS — highest of ours "
        f"{worst / 1_000_000:.0f} MB: {verdict}.",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(results: Path, section: str) -> None:
    """Replace this bench's section (or the older unmarked one) and keep every other."""
    text = results.read_text() if results.is_file() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section.strip() + rest.split(END, 1)[1]
    elif OLD_HEADING in text:
        head, rest = text.split(OLD_HEADING, 1)
        following = [i for i in (rest.find("\n<!--"), rest.find("\n#")) if i >= 0]
        tail = rest[min(following) :] if following else "\n"
        text = head + section.strip() + "\n" + tail
    else:
        text = text.rstrip() + "\n\n" + section.strip() + "\n"
    results.write_text(text)


def main(arguments: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=512, help="the weight file's size")
    parser.add_argument(
        "--targets", default="local,azure", help="comma-separated: local, azure [local,azure]"
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    options = parser.parse_args(arguments)
    targets = {t.strip() for t in options.targets.split(",")}
    work = Path(tempfile.mkdtemp(prefix="upload-bench-"))
    try:
        total = make_model(work / "src", options.size_mb)
        weights = (work / "src" / BASE / "pytorch_model.bin").stat().st_size
        local = local_runs(work) if "local" in targets else []
        azure = azure_runs(work, weights) if "azure" in targets else []
    finally:
        shutil.rmtree(work, ignore_errors=True)
    section = report(total, options.size_mb, local, azure)
    print(section)
    write_section(options.results, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())

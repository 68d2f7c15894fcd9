"""Cold start on the local target: replica start -> /ready and -> first token, ours against an
AI Toolkit-style start in the same run, and the bytes each fetches from a package index.

Both start from the same "image": a virtual environment with Python and this environment's torch
(and what torch needs), nothing else of the serving stack, as the public PyTorch CUDA image has.
The demo model (scripts/make_demo_model.py) is on the share; the server is `inference_app`.

* AI Toolkit-style: every start is a fresh container, so every start pip-installs the `serve`
  requirements (minus torch) from a package index, then runs the server. The index is a loopback
  index serving `--wheels` (bench/package_index.py), so this baseline is kinder than the real one,
  which downloads from the internet.
* ours: `deploy` once (the real one: `pip` resolves and downloads the wheels from the same index
  into the share's wheelhouse), then the replica runs the share's bootstrap: a new replica
  installs the wheels from the share (`pip --no-index`), a restart of it reuses that install.

The two take turns, `--restarts` times. Times are from starting the process to `/ready` answering
200, and to the first token of a streaming chat completion sent at once after that.

Usage: python bench/cold_start_bench.py --wheels DIR [--restarts 3] [--results bench/RESULTS.md]
       python bench/cold_start_bench.py --prepare-wheels DIR   # once: pip download, ~150 MB
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import secrets
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

# The imports below need the repo root on sys.path.
from bench.package_index import IndexStats, make_wheel, serve_index  # noqa: E402
from provision.deploy import DeploySettings, deploy  # noqa: E402
from provision.local.share import LocalShare  # noqa: E402
from provision.readiness import wait_until_ready  # noqa: E402
from provision.release_history import read_current  # noqa: E402
from provision.targets import (  # noqa: E402
    ApiKeys,
    DownResult,
    Progress,
    ProvisionResult,
    ProvisionSettings,
    ReadyState,
    ReplicaIdentity,
)
from provision.wheelhouse import ImagePlatform, PipDownloader, serve_requirements  # noqa: E402

SECTION_BEGIN = "<!-- cold-start-bench:begin -->"
SECTION_END = "<!-- cold-start-bench:end -->"
START_TIMEOUT = 600.0


def this_platform() -> ImagePlatform:
    glibc = os.confstr("CS_GNU_LIBC_VERSION") or "glibc 2.17"
    return ImagePlatform(f"{sys.version_info.major}.{sys.version_info.minor}", glibc.split()[1])


def quiet(message: str) -> None:
    pass


# -- the "image": Python plus torch only -------------------------------------------------------


def _closure(root: str) -> set[str]:
    """`root` and every distribution it needs here (markers evaluated for this interpreter)."""
    found: set[str] = set()
    pending = [root]
    while pending:
        name = canonicalize_name(pending.pop())
        if name in found:
            continue
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        found.add(name)
        for line in requires:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return found


def make_image(root: Path) -> Path:
    """A virtual environment (with pip, as the PyTorch image has) that sees this environment's
    torch and its dependencies through links, and nothing else. Returns its python."""
    venv.create(root / "env", with_pip=True, symlinks=True)
    python = root / "env/bin/python"
    # The venv's own old setuptools would hide the one torch needs; removed before the image's
    # packages become visible, so that pip can only touch the venv's copy.
    subprocess.run(
        [str(python), "-m", "pip", "uninstall", "--yes", "--quiet", "setuptools"], check=True
    )
    image_site = root / "image-site"
    image_site.mkdir()
    for name in _closure("torch"):
        distribution = importlib.metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in distribution.files or ()}
        for top in tops:
            source = Path(str(distribution.locate_file(top)))
            if source.exists() and not (image_site / top).exists() and top != "..":
                (image_site / top).symlink_to(source)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site) / "aca_infer_image.pth").write_text(f"{image_site}\n")
    return python


# -- a replica process and its timings ----------------------------------------------------------


@dataclass(frozen=True)
class StartTiming:
    ready_s: float
    first_token_s: float
    index_bytes: int


def _first_token(base_url: str, key: str) -> None:
    body = {
        "model": "aca-infer/tiny-phi3",
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 8,
        "stream": True,
    }
    headers = {"api-key": key}
    with httpx.stream(
        "POST", f"{base_url}/v1/chat/completions", json=body, headers=headers, timeout=120
    ) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            choices = json.loads(line[6:]).get("choices") or []
            if choices and choices[0].get("delta", {}).get("content"):
                return
    raise RuntimeError("the stream ended without a token")


class Process:
    """One replica process with its log, stopped with its process group."""

    def __init__(self, command: list[str], env: Mapping[str, str], cwd: Path, log: Path) -> None:
        self.log = log
        with log.open("ab") as handle:
            self.popen = subprocess.Popen(
                command,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def gone(self) -> str | None:
        if self.popen.poll() is None:
            return None
        return f"exited with {self.popen.returncode}: {self.log.read_text()[-2000:]}"

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, 15)
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, 9)
            self.popen.wait()


def time_start(
    start: Process, identity: ReplicaIdentity, key: str, stats: IndexStats, t0: float
) -> StartTiming:
    bytes_before = stats.bytes_sent
    state = wait_until_ready(identity, START_TIMEOUT, start.gone, quiet)
    if not state.ready:
        raise RuntimeError(f"the replica did not become ready: {state.reason}")
    ready = time.monotonic() - t0
    _first_token(identity.endpoint, key)
    first_token = time.monotonic() - t0
    return StartTiming(ready, first_token, stats.bytes_sent - bytes_before)


# -- ours: the share's bootstrap, deployed by the real deploy -----------------------------------


class BenchReplica:
    def __init__(self, python: Path, share: Path, env: Mapping[str, str], log: Path) -> None:
        self.python, self.share, self.env, self.log = python, share, env, log
        self.process: Process | None = None
        self.started: ReplicaIdentity | None = None
        self.started_at = 0.0

    def restart(self, release: str | None = None) -> None:
        self.stop()
        release = release or str(read_current(LocalShare(self.share)))
        self.started = ReplicaIdentity(self.env["URL"], release, secrets.token_hex(8))
        env = {
            **self.env,
            "ACA_INFER_INSTANCE_ID": self.started.instance_id,
            "ACA_INFER_RELEASE": release,
        }
        self.started_at = time.monotonic()
        command = [str(self.python), str(self.share / "app/bootstrap.py")]
        self.process = Process(command, env, self.share, self.log)

    def roll_out(self, release: str, timeout: float, progress: Progress) -> ReadyState:
        # Cold starts are what this measures: one replica at a time, started in place.
        self.restart(release)
        return self.wait_ready(timeout, progress)

    def identity(self) -> ReplicaIdentity | None:
        return self.started if self.process is not None else None

    def settings_changed(self) -> list[str]:
        return []

    def running(self) -> tuple[Process, ReplicaIdentity]:
        if self.process is None or self.started is None:
            raise RuntimeError("the replica is not running")
        return self.process, self.started

    def stop(self) -> bool:
        if self.process is None:
            return False
        self.process.stop()
        self.process = None
        return True

    def is_running(self) -> bool:
        return self.process is not None and self.process.gone() is None

    def wait_ready(self, timeout: float, progress: Progress) -> ReadyState:
        identity = self.identity()
        if self.process is None or identity is None:
            return ReadyState(False, "the replica is not running")
        return wait_until_ready(identity, timeout, self.process.gone, progress)

    def logs(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text().splitlines()[-lines:])


class BenchTarget:
    """The local target's share (a folder) with a replica started from the "image" python."""

    name = "bench"

    def __init__(self, share: Path, replica: BenchReplica) -> None:
        self._share = LocalShare(share)
        self._replica = replica

    def image_platform(self) -> ImagePlatform | None:
        return this_platform()

    @property
    def share(self) -> LocalShare:
        return self._share

    @property
    def replica(self) -> BenchReplica:
        return self._replica

    def endpoint(self) -> str:
        return self._replica.env["URL"]

    def ui_url(self) -> str:
        return self.endpoint() + "/ui"

    def keys(self) -> ApiKeys:
        key = self._replica.env["ACA_INFER_API_KEY_PRIMARY"]
        return ApiKeys(key, key)

    def provision(self, settings: ProvisionSettings, progress: Progress) -> ProvisionResult:
        raise RuntimeError("the benchmark's share needs no provisioning")

    def check_deployable(self) -> None:
        return None

    def down(self, purge: bool, progress: Progress) -> DownResult:
        raise RuntimeError("the benchmark stops its replica itself")


# -- the run -------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(share: Path, port: int, key: str, runtime: Path) -> dict[str, str]:
    from scripts.make_demo_model import BASE_MODEL_RELPATH

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACA_INFER_", "PIP_"))}
    env.update(
        {
            "ACA_INFER_MOUNT_ROOT": str(share),
            "ACA_INFER_MODEL_PATH": str(BASE_MODEL_RELPATH),
            "ACA_INFER_ADAPTER_PATH": "",
            "ACA_INFER_API_KEY_PRIMARY": key,
            "ACA_INFER_HOST": "127.0.0.1",
            "ACA_INFER_PORT": str(port),
            "ACA_INFER_RUNTIME_DIR": str(runtime),
            "HF_HUB_OFFLINE": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "PIP_CONFIG_FILE": os.devnull,
            "URL": f"http://127.0.0.1:{port}",
        }
    )
    return env


def run(wheels: Path, restarts: int, work: Path) -> dict[str, Any]:
    from scripts.make_demo_model import make_demo_model

    os.environ["PIP_CONFIG_FILE"] = os.devnull  # pip sees the loopback index only
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_INDEX_URL"):
        os.environ.pop(name, None)
    share = work / "share"
    make_demo_model(share)
    image_python = make_image(work / "image")
    key = secrets.token_urlsafe(24)
    requirements = serve_requirements()
    ours: list[tuple[str, StartTiming]] = []
    baseline: list[StartTiming] = []
    # PyPI has torch, whose metadata `deploy`'s resolution reads (peft needs torch) before it
    # leaves torch to the image; this index gets a metadata-only stand-in of the same version.
    torch_version = importlib.metadata.version("torch").split("+")[0]
    make_wheel(work / "resolution-only", "torch", torch_version)
    with serve_index(wheels, work / "resolution-only") as index:
        env = server_env(share, free_port(), key, work / "replica-disk")
        url = env["URL"]
        replica = BenchReplica(image_python, share, env, work / "ours.log")
        settings = DeploySettings(REPO_ROOT / "inference_app", downloader=PipDownloader(index.url))
        started = time.monotonic()
        deploy(BenchTarget(share, replica), settings, quiet)
        deploy_seconds = time.monotonic() - started
        deploy_bytes = index.stats.bytes_sent
        replica.stop()
        shutil.rmtree(work / "replica-disk")  # a new replica: nothing installed on its disk yet
        for round_ in range(restarts + 1):
            replica.restart()
            process, identity = replica.running()
            kind = "new replica" if round_ == 0 else "restart"
            timing = time_start(process, identity, key, index.stats, replica.started_at)
            ours.append((kind, timing))
            replica.stop()
            if round_ == 0:
                continue
            fresh = work / f"baseline-{round_}"
            identity = ReplicaIdentity(url, "unknown", secrets.token_hex(8))
            baseline_env = {
                **env,
                "PIP_INDEX_URL": index.url,
                "ACA_INFER_INSTANCE_ID": identity.instance_id,
            }
            started = time.monotonic()
            process = start_baseline(image_python, fresh, requirements, baseline_env)
            try:
                baseline.append(time_start(process, identity, key, index.stats, started))
            finally:
                process.stop()
            shutil.rmtree(fresh)
    return {
        "deploy_seconds": deploy_seconds,
        "deploy_bytes": deploy_bytes,
        "wheel_count": len(list(wheels.glob("*.whl"))),
        "wheel_bytes": sum(w.stat().st_size for w in wheels.glob("*.whl")),
        "ours": ours,
        "baseline": baseline,
    }


def _fresh_container(image_python: Path, root: Path) -> Path:
    """A copy of the image as a new container has it: the image's environment, nothing added."""
    shutil.copytree(image_python.parent.parent, root / "env", symlinks=True)
    return root / "env/bin/python"


def start_baseline(
    image_python: Path, fresh: Path, requirements: tuple[str, ...], env: Mapping[str, str]
) -> Process:
    """The AI Toolkit's start: `pip install -r requirements` from the index, then the server."""
    python = _fresh_container(image_python, fresh)
    requirements_file = fresh / "requirements.txt"
    requirements_file.write_text("\n".join(requirements) + "\n")
    install = [str(python), "-m", "pip", "install", "--quiet", "-r", str(requirements_file)]
    script = f"{shlex.join(install)} && exec {shlex.quote(str(python))} -m inference_app"
    return Process(["/bin/sh", "-c", script], env, REPO_ROOT, fresh.parent / "baseline.log")


def mib(count: int) -> str:
    return f"{count / 2**20:.1f} MiB"


def render(result: dict[str, Any], restarts: int, command: str) -> str:
    ours: list[tuple[str, StartTiming]] = result["ours"]
    baseline: list[StartTiming] = result["baseline"]
    restarts_ours = [t for kind, t in ours if kind == "restart"]
    new_replica = next(t for kind, t in ours if kind == "new replica")

    def median(values: list[float]) -> float:
        return statistics.median(values)

    rows = [
        ("AI Toolkit-style: pip install from the index, then start", baseline),
        ("ours, a restart: the install on the replica's disk is reused", restarts_ours),
        ("ours, a new replica: install from the share (`pip --no-index`)", [new_replica]),
    ]
    lines = [
        SECTION_BEGIN,
        "# Cold start (local target)",
        "",
        "Replica start to `/ready` and to the first token of a streaming chat completion, on the "
        'demo model, from an "image" with Python and torch only (a virtual environment that '
        "sees this environment's torch and nothing else of the serving stack). **AI "
        "Toolkit-style**: every start pip-installs the `serve` requirements (minus torch) from a "
        "package index, then starts the server; the index is a loopback one serving the same "
        f"{result['wheel_count']} wheels ({mib(result['wheel_bytes'])}), kinder than the "
        "internet the real one downloads from. **Ours**: `deploy` put those wheels on the share "
        "once; the replica's bootstrap installs them from the share with `pip --no-index` when "
        "the replica is new and reuses that install when it restarts. The two took turns, "
        f"{restarts} times; medians shown. Bytes are what the package index sent during the "
        "start.",
        "",
        "| start | runs | to /ready | to first token "
        "| bytes from a package index (most of any run) |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, timings in rows:
        lines.append(
            f"| {label} | {len(timings)} | {median([t.ready_s for t in timings]):.1f} s | "
            f"{median([t.first_token_s for t in timings]):.1f} s | "
            f"{max(t.index_bytes for t in timings):,} |"
        )
    ratio = median([t.ready_s for t in baseline]) / median([t.ready_s for t in restarts_ours])
    lines += [
        "",
        f"- A restart of ours reaches `/ready` {ratio:.1f}x sooner than the AI Toolkit-style "
        "start and fetches "
        f"{max(t.index_bytes for t in restarts_ours):,} bytes from a package index (goal: 0).",
        "- One-time cost, paid by `deploy` when the requirements change: resolving and "
        "downloading the wheels from the index, putting them on the share, then starting the "
        "replica (which installed them) and waiting for it to be ready took "
        f"{result['deploy_seconds']:.1f} s ({mib(result['deploy_bytes'])} from the index: this "
        "index serves no separate wheel metadata (PEP 658, which PyPI serves), so pip's "
        "resolution read whole wheels before the download fetched them again).",
        f"- Command: `{command}`",
        f"- Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical "
        f"CPUs (shared with other work); Python {platform.python_version()}; no GPU",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        SECTION_END,
    ]
    return "\n".join(lines) + "\n"


def write_section(
    results: Path, section: str, begin: str = SECTION_BEGIN, end: str = SECTION_END
) -> None:
    """Replace a benchmark's section (from `begin` to `end`) of the results file, or append it."""
    text = results.read_text() if results.is_file() else ""
    if begin in text and end in text:
        before, _, rest = text.partition(begin)
        _, _, after = rest.partition(end + "\n")
        text = before + section + after
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + section
    results.write_text(text)


def prepare_wheels(folder: Path) -> None:
    wheels = PipDownloader().download(serve_requirements(), this_platform(), folder)
    print(f"{len(wheels)} wheels in {folder} ({mib(sum(w.stat().st_size for w in wheels))})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--wheels", type=Path, help="folder of the serve requirements' wheels")
    parser.add_argument("--prepare-wheels", type=Path, help="download them into this folder")
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    if args.prepare_wheels:
        prepare_wheels(args.prepare_wheels)
        return 0
    if args.wheels is None or not any(args.wheels.glob("*.whl")):
        parser.error("--wheels DIR: a folder of wheels is needed (make one with --prepare-wheels)")
    with tempfile.TemporaryDirectory(prefix="cold-start-bench-") as work:
        result = run(args.wheels.resolve(), args.restarts, Path(work))
    command = "python bench/cold_start_bench.py " + " ".join(sys.argv[1:] if argv is None else argv)
    section = render(result, args.restarts, command.strip())
    write_section(args.results, section)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())

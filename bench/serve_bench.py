"""Streaming throughput, time to first token and memory: our server against the usual baseline.

Both servers run as real HTTP servers on 127.0.0.1 on the demo model with its LoRA adapter
loaded (a request's `model` picks the base model or the adapter):

* ours: `python -m inference_app` (continuous batching engine, full HTTP layer with auth);
* baseline: `bench/baseline_server.py`, one `generate` thread + `TextIteratorStreamer` per request.

Scenarios: the base model greedy at every `--clients` level, then base/adapter x greedy/sampled
(temperature 1.0) at 1 and 16 clients. At each level every client sends streaming chat requests
one after the other (`--rounds` each, at least 16 per level; fixed `max_tokens`). The two servers
take turns, `--repeats` times per level, so that drift in a shared machine's load hits both
alike, and the median run is reported. Tokens are counted from each stream's final `usage`.
Memory is the server process's resident set: idle (model loaded, one request served) against the
kernel's high-water mark while 64 clients stream (reset just before that level; only when 64 is
among `--clients`).

`--app-dir` runs ours from another copy of `inference_app` (e.g. an earlier commit exported with
`git archive`), to measure a change against the same baseline. The report is appended to
`--results`, so earlier runs stay for comparison.

Usage: python bench/serve_bench.py [--share-dir DIR] [--max-tokens 64] [--rounds 2]
       [--repeats 3] [--torch-threads 1] [--clients 1,4,16,64] [--no-in-process]
       [--app-dir DIR] [--label TEXT] [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from bench import engine_bench  # noqa: E402 - needs the repo root on sys.path
from scripts.make_demo_model import (  # noqa: E402
    ADAPTER_RELPATH,
    BASE_MODEL_ID,
    BASE_MODEL_RELPATH,
    make_demo_model,
)

CONCURRENCY = (1, 4, 16, 64)
# The adapter's model id on both servers (ours names an adapter under models/ after its folder).
ADAPTER_ID = "qlora"
SCENARIO_CLIENTS = (1, 16)
SAMPLED_TEMPERATURE = 1.0
# Few clients finish a level in a fraction of a second; more requests make that a measurement.
MIN_REQUESTS = 16
MEMORY_LEVEL = 64
READY_TIMEOUT_SECONDS = 180


@dataclass(frozen=True)
class Server:
    name: str
    url: str
    headers: dict[str, str]
    process: subprocess.Popen[bytes]

    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def reset_peak_rss(self) -> bool:
        # Writing 5 to clear_refs resets VmHWM (Linux); without it the peak would include the
        # model load.
        try:
            Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def peak_rss(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("VmHWM missing from /proc status")


@dataclass(frozen=True)
class Scenario:
    adapter: bool
    temperature: float

    @property
    def model(self) -> str:
        return ADAPTER_ID if self.adapter else BASE_MODEL_ID

    @property
    def label(self) -> str:
        decoding = "greedy" if self.temperature == 0 else f"sampled t={self.temperature:g}"
        return f"{'adapter' if self.adapter else 'base'}, {decoding}"


BASE_GREEDY = Scenario(adapter=False, temperature=0.0)
SCENARIOS = (
    BASE_GREEDY,
    Scenario(adapter=False, temperature=SAMPLED_TEMPERATURE),
    Scenario(adapter=True, temperature=0.0),
    Scenario(adapter=True, temperature=SAMPLED_TEMPERATURE),
)


@dataclass(frozen=True)
class Level:
    scenario: Scenario
    clients: int
    requests: int
    tokens: int
    seconds: float
    ttfts: tuple[float, ...]
    truncated: int  # requests that stopped before max_tokens (an end token)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds

    @property
    def ttft_p50(self) -> float:
        return statistics.median(self.ttfts)

    @property
    def ttft_p95(self) -> float:
        ordered = sorted(self.ttfts)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_server(
    name: str,
    command: Sequence[str],
    env: dict[str, str],
    port: int,
    log_dir: Path,
    key: str,
    cwd: Path = REPO_ROOT,
) -> Iterator[Server]:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command), cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        headers = {"Authorization": f"Bearer {key}"}
        server = Server(name, f"http://127.0.0.1:{port}", headers, process)
        try:
            _wait_ready(server, log_path)
            yield server
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(server: Server, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} server exited; see {log_path}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{server.url}/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{server.name} server not ready after {READY_TIMEOUT_SECONDS}s")


async def stream_one(
    client: httpx.AsyncClient, server: Server, scenario: Scenario, prompt: str, max_tokens: int
) -> tuple[float, int]:
    """Time to the first content chunk, and the completion tokens the server reports."""
    body = {
        "model": scenario.model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": scenario.temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    async with client.stream(
        "POST", f"{server.url}/v1/chat/completions", json=body, headers=server.headers
    ) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[len("data: ") :])
            if first is None and any(c["delta"].get("content") for c in event["choices"]):
                first = time.perf_counter() - started
            if event.get("usage"):
                tokens = int(event["usage"]["completion_tokens"])
    if first is None:
        raise RuntimeError(f"{server.name}: a stream ended without any text")
    return first, tokens


async def run_level(
    server: Server, scenario: Scenario, clients: int, rounds: int, max_tokens: int
) -> Level:
    results: list[tuple[float, int]] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def one_client(index: int) -> None:
            for round_ in range(rounds):
                prompt = f"Request {index}.{round_}: please explain how the deployment works."
                results.append(await stream_one(client, server, scenario, prompt, max_tokens))

        started = time.perf_counter()
        await asyncio.gather(*(one_client(i) for i in range(clients)))
        seconds = time.perf_counter() - started
    return Level(
        scenario=scenario,
        clients=clients,
        requests=len(results),
        tokens=sum(t for _, t in results),
        seconds=seconds,
        ttfts=tuple(f for f, _ in results),
        truncated=sum(1 for _, t in results if t < max_tokens),
    )


def rounds_for(clients: int, args: argparse.Namespace) -> int:
    return max(args.rounds, -(-MIN_REQUESTS // clients))


def median_run(runs: Sequence[Level]) -> Level:
    """The run with the median throughput (a shared machine's load varies between runs)."""
    return sorted(runs, key=lambda level: level.tokens_per_second)[len(runs) // 2]


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs (shared with other work), "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM; Python {platform.python_version()}, "
        f"torch {torch.__version__}, no GPU"
    )


def _ratio(ours: Level, base: Level) -> float:
    return ours.tokens_per_second / base.tokens_per_second


def report(
    levels: dict[str, list[Level]],
    memory: dict[str, tuple[int, int]],
    in_process: Sequence[engine_bench.EngineLevel],
    args: argparse.Namespace,
    command: str,
) -> str:
    ours, base = levels["ours"], levels["baseline"]
    rows = [
        "| model, decoding | clients | requests | tokens (ours / baseline) | ours tok/s "
        "| baseline tok/s | ratio | ours TTFT p50 / p95 | baseline TTFT p50 / p95 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for o, b in zip(ours, base, strict=True):
        rows.append(
            f"| {o.scenario.label} | {o.clients} | {o.requests} | {o.tokens} / {b.tokens} "
            f"| {o.tokens_per_second:.0f} | {b.tokens_per_second:.0f} "
            f"| **{_ratio(o, b):.2f}x** "
            f"| {o.ttft_p50 * 1000:.0f} / {o.ttft_p95 * 1000:.0f} ms "
            f"| {b.ttft_p50 * 1000:.0f} / {b.ttft_p95 * 1000:.0f} ms |"
        )
    truncated = sum(level.truncated for level in ours + base)
    goals = []
    for o, b in zip(ours, base, strict=True):
        if o.clients == 1:
            goals.append(
                f"- 1 client, {o.scenario.label}, no slower than the baseline: "
                f"{_ratio(o, b):.2f}x — {'met' if _ratio(o, b) >= 1 else 'NOT met'}"
            )
        elif o.clients == 16:
            goals.append(
                f"- 16 clients, {o.scenario.label}, at least 10x the baseline's aggregate "
                f"tokens/s: {_ratio(o, b):.1f}x — {'met' if _ratio(o, b) >= 10 else 'NOT met'}"
            )
    sections = [
        f"# Serving benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        + (f": {args.label}" if args.label else ""),
        "",
        "Streaming chat completions on the demo model (`scripts/make_demo_model.py`: a 2-layer "
        "Phi-3 with hidden size 64) with its LoRA adapter loaded in both servers; "
        f"`max_tokens={args.max_tokens}`; sampled = temperature {SAMPLED_TEMPERATURE:g}, "
        "top_p 1 (the baseline samples from the whole distribution too: `top_k=0`). Each client "
        f"sends its requests one after the other (at least {args.rounds} per client and "
        f"{MIN_REQUESTS} per level); each level runs {args.repeats} times per server (taking "
        "turns) and the run with the median throughput is shown. **ours** is the real server "
        f"(`python -m inference_app` from `{args.app_dir}`: continuous batching engine, auth, "
        f"OpenAI SSE, `ACA_INFER_MAX_BATCH_SIZE={max(CONCURRENCY)}`); "
        "**baseline** is `bench/baseline_server.py` (a `generate` thread with a "
        "`TextIteratorStreamer` per request). Both run with "
        f"`OMP_NUM_THREADS={args.torch_threads}`, in the same run. "
        "Tokens are the completion tokens each stream reports in its final `usage`; "
        f"{truncated} request(s) ended on an end token before `max_tokens`.",
        "",
        "## Throughput and time to first token",
        "",
        *rows,
        "",
    ]
    if memory:
        sections += [
            "## Memory (resident set of the server process)",
            "",
            f"Idle: model loaded, after one request. Peak: kernel high-water mark (VmHWM, reset "
            f"just before the level) while {MEMORY_LEVEL} clients stream.",
            "",
            "| server | idle | peak | peak / idle |",
            "|---|---:|---:|---:|",
            *(
                f"| {name} | {_mib(idle)} | {_mib(peak)} | **{peak / idle:.2f}x** |"
                for name, (idle, peak) in memory.items()
            ),
            "",
        ]
        goals.append(
            f"- peak memory at {MEMORY_LEVEL} clients within 1.5x idle: "
            f"{memory['ours'][1] / memory['ours'][0]:.2f}x — "
            f"{'met' if memory['ours'][1] <= 1.5 * memory['ours'][0] else 'NOT met'}"
        )
    if in_process:
        sections += [
            "## The same without HTTP (one process, one run per level; base model, greedy)",
            "",
            "Our engine serving N concurrent streams in-process, against N threads each running "
            "`generate` with a `TextIteratorStreamer` and a consumer thread "
            "(`bench/engine_bench.py`). The gap to the table above is what the HTTP layers "
            "and the client cost.",
            "",
            *engine_bench.table(in_process),
            "",
        ]
    return "\n".join(
        [
            *sections,
            "## Goals",
            "",
            *goals,
            "",
            "## How it was run",
            "",
            f"- Command: `{command}`",
            f"- Machine: {machine()}",
            f"- Load average (1 min) at the start and end of the run: {args.load_before:.1f} → "
            f"{os.getloadavg()[0]:.1f} (other processes on the machine compete with both "
            "servers and the client; the thread-per-request baseline suffers most from it)",
            "",
        ]
    )


def plan(clients: Sequence[int]) -> list[tuple[Scenario, int]]:
    """The base model greedy at every level, then every other scenario at 1 and 16 clients."""
    levels = [(BASE_GREEDY, n) for n in clients]
    for scenario in SCENARIOS:
        levels += [(scenario, n) for n in SCENARIO_CLIENTS if (scenario, n) not in levels]
    return levels


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--share-dir", type=Path, help="share with the demo model (default: temp)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--rounds", type=int, default=2, help="requests per client per level (at least)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per level; median kept")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument(
        "--clients",
        type=lambda text: [int(n) for n in text.split(",")],
        default=list(CONCURRENCY),
        help="concurrency levels for the base model, greedy (comma-separated)",
    )
    parser.add_argument(
        "--no-in-process", action="store_true", help="skip the in-process engine comparison"
    )
    parser.add_argument(
        "--app-dir",
        type=Path,
        default=REPO_ROOT,
        help="folder holding the inference_app package that runs as ours",
    )
    parser.add_argument("--label", default="", help="what this run measures (in the heading)")
    parser.add_argument("--results", type=Path, default=REPO_ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    args.load_before = os.getloadavg()[0]
    command = "python bench/serve_bench.py " + " ".join(argv if argv is not None else sys.argv[1:])

    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    try:
        share = args.share_dir or make_demo_model(work / "share").share_dir
        key = secrets.token_urlsafe(24)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ACA_INFER_")},
            "HF_HUB_OFFLINE": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
            "OMP_NUM_THREADS": str(args.torch_threads),
            "PYTHONPATH": str(REPO_ROOT),
        }
        ours_port, base_port = free_port(), free_port()
        ours_env = {
            **env,
            "PYTHONPATH": f"{args.app_dir.resolve()}{os.pathsep}{REPO_ROOT}",
            "ACA_INFER_MOUNT_ROOT": str(share),
            "ACA_INFER_MODEL_PATH": str(BASE_MODEL_RELPATH),
            "ACA_INFER_ADAPTER_PATH": f"{ADAPTER_ID}={ADAPTER_RELPATH}",
            "ACA_INFER_API_KEY_PRIMARY": key,
            "ACA_INFER_HOST": "127.0.0.1",
            "ACA_INFER_PORT": str(ours_port),
            "ACA_INFER_MAX_BATCH_SIZE": str(max(CONCURRENCY)),
            "ACA_INFER_MAX_QUEUE": "256",
            "ACA_INFER_UI": "false",
            "ACA_INFER_LOG_LEVEL": "WARNING",
        }
        base_cmd = [
            sys.executable,
            str(REPO_ROOT / "bench" / "baseline_server.py"),
            "--model-path",
            str(share / BASE_MODEL_RELPATH),
            "--adapter-path",
            str(share / ADAPTER_RELPATH),
            "--adapter-name",
            ADAPTER_ID,
            "--port",
            str(base_port),
        ]
        ours_cmd = [sys.executable, "-m", "inference_app"]
        with (
            running_server("ours", ours_cmd, ours_env, ours_port, work, key, args.app_dir) as ours,
            running_server("baseline", base_cmd, env, base_port, work, key) as base,
        ):
            servers = (base, ours)
            idle = {}
            for server in servers:
                for scenario in SCENARIOS:  # warm-up
                    asyncio.run(run_level(server, scenario, 1, 1, args.max_tokens))
                idle[server.name] = server.rss()
            levels: dict[str, list[Level]] = {s.name: [] for s in servers}
            peak: dict[str, int] = {}
            for scenario, clients in plan(args.clients):
                measure_memory = scenario == BASE_GREEDY and clients == MEMORY_LEVEL
                if measure_memory and not all(s.reset_peak_rss() for s in servers):
                    raise RuntimeError("cannot reset the peak RSS (/proc/PID/clear_refs)")
                runs: dict[str, list[Level]] = {s.name: [] for s in servers}
                for _ in range(args.repeats):
                    for server in servers:
                        level = asyncio.run(
                            run_level(
                                server,
                                scenario,
                                clients,
                                rounds_for(clients, args),
                                args.max_tokens,
                            )
                        )
                        runs[server.name].append(level)
                        print(
                            f"{server.name:8} {scenario.label:22} clients={clients:3} "
                            f"tokens={level.tokens:6} tok/s={level.tokens_per_second:8.0f} "
                            f"ttft_p50={level.ttft_p50 * 1000:6.0f} ms",
                            file=sys.stderr,
                        )
                for server in servers:
                    levels[server.name].append(median_run(runs[server.name]))
                    if measure_memory:
                        peak[server.name] = server.peak_rss()
        memory = {name: (idle[name], peak[name]) for name in peak}
        in_process: list[engine_bench.EngineLevel] = []
        if not args.no_in_process:
            torch.set_num_threads(args.torch_threads)
            in_process = engine_bench.run(
                share / BASE_MODEL_RELPATH,
                args.clients,
                lambda clients: rounds_for(clients, args),
                args.max_tokens,
            )
        text = report(levels, memory, in_process, args, command)
        with args.results.open("a") as results:
            results.write("\n" + text)
        print(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Streaming throughput, time to first token and memory: our server against the usual baseline.

Both servers run as real HTTP servers on 127.0.0.1 on the demo model (base model, no adapter):

* ours: `python -m inference_app` (continuous batching engine, full HTTP layer with auth);
* baseline: `bench/baseline_server.py`, one `generate` thread + `TextIteratorStreamer` per request.

At each concurrency level every client sends streaming chat requests one after the other
(`--rounds` each, at least 16 per level; greedy, fixed `max_tokens`). The two servers take turns,
`--repeats` times per level, so that drift in a shared machine's load hits both alike, and the
median run is reported. Tokens are counted from each stream's final `usage`.
Memory is the server process's resident set: idle (model loaded, one request served) against the
kernel's high-water mark while 64 clients stream (reset just before that level).

Usage: python bench/serve_bench.py [--share-dir DIR] [--max-tokens 64] [--rounds 2]
       [--repeats 3] [--torch-threads 1] [--results bench/RESULTS.md]
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
    BASE_MODEL_ID,
    BASE_MODEL_RELPATH,
    make_demo_model,
)

CONCURRENCY = (1, 4, 16, 64)
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
class Level:
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
    name: str, command: Sequence[str], env: dict[str, str], port: int, log_dir: Path, key: str
) -> Iterator[Server]:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(command), cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
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
    client: httpx.AsyncClient, server: Server, prompt: str, max_tokens: int
) -> tuple[float, int]:
    """Time to the first content chunk, and the completion tokens the server reports."""
    body = {
        "model": BASE_MODEL_ID,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
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


async def run_level(server: Server, clients: int, rounds: int, max_tokens: int) -> Level:
    results: list[tuple[float, int]] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:

        async def one_client(index: int) -> None:
            for round_ in range(rounds):
                prompt = f"Request {index}.{round_}: please explain how the deployment works."
                results.append(await stream_one(client, server, prompt, max_tokens))

        started = time.perf_counter()
        await asyncio.gather(*(one_client(i) for i in range(clients)))
        seconds = time.perf_counter() - started
    return Level(
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


def report(
    levels: dict[str, list[Level]],
    memory: dict[str, tuple[int, int]],
    in_process: Sequence[engine_bench.EngineLevel],
    args: argparse.Namespace,
    command: str,
) -> str:
    ours, base = levels["ours"], levels["baseline"]
    rows = [
        "| clients | requests | tokens (ours / baseline) | ours tok/s | baseline tok/s | ratio "
        "| ours TTFT p50 / p95 | baseline TTFT p50 / p95 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for o, b in zip(ours, base, strict=True):
        rows.append(
            f"| {o.clients} | {o.requests} | {o.tokens} / {b.tokens} "
            f"| {o.tokens_per_second:.0f} | {b.tokens_per_second:.0f} "
            f"| **{o.tokens_per_second / b.tokens_per_second:.1f}x** "
            f"| {o.ttft_p50 * 1000:.0f} / {o.ttft_p95 * 1000:.0f} ms "
            f"| {b.ttft_p50 * 1000:.0f} / {b.ttft_p95 * 1000:.0f} ms |"
        )
    mem_rows = [
        f"| {name} | {_mib(idle)} | {_mib(peak)} | **{peak / idle:.2f}x** |"
        for name, (idle, peak) in memory.items()
    ]
    by_clients = {
        o.clients: o.tokens_per_second / b.tokens_per_second
        for o, b in zip(ours, base, strict=True)
    }
    truncated = sum(level.truncated for level in ours + base)
    goals = [
        f"- 16 clients, at least 10x the baseline's aggregate tokens/s: "
        f"{by_clients[16]:.1f}x — {'met' if by_clients[16] >= 10 else 'NOT met'}",
        f"- 1 client, no slower than the baseline: {by_clients[1]:.2f}x — "
        f"{'met' if by_clients[1] >= 1 else 'NOT met'}",
        f"- peak memory at {MEMORY_LEVEL} clients within 1.5x idle: "
        f"{memory['ours'][1] / memory['ours'][0]:.2f}x — "
        f"{'met' if memory['ours'][1] <= 1.5 * memory['ours'][0] else 'NOT met'}",
    ]
    return "\n".join(
        [
            "# Serving benchmark",
            "",
            "Streaming chat completions on the demo model (`scripts/make_demo_model.py`: a 2-layer "
            "Phi-3 with hidden size 64), greedy, "
            f"`max_tokens={args.max_tokens}`; each client sends its requests one after the other "
            f"(at least {args.rounds} per client and {MIN_REQUESTS} per level); each level runs "
            f"{args.repeats} times per server (taking turns) and the run "
            "with the median throughput is shown. **ours** is the real server "
            "(`python -m inference_app`: continuous batching engine, auth, OpenAI SSE; "
            "base model only, `ACA_INFER_MAX_BATCH_SIZE=64`); "
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
            "## Memory (resident set of the server process)",
            "",
            f"Idle: model loaded, after one request. Peak: kernel high-water mark (VmHWM, reset "
            f"just before the level) while {MEMORY_LEVEL} clients stream.",
            "",
            "| server | idle | peak | peak / idle |",
            "|---|---:|---:|---:|",
            *mem_rows,
            "",
            "## The same without HTTP (one process, one run per level)",
            "",
            "Our engine serving N concurrent streams in-process, against N threads each running "
            "`generate` with a `TextIteratorStreamer` and a consumer thread "
            "(`bench/engine_bench.py`). The gap to the table above is what the HTTP layers "
            "and the client cost.",
            "",
            *engine_bench.table(in_process),
            "",
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
            f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--share-dir", type=Path, help="share with the demo model (default: temp)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--rounds", type=int, default=2, help="requests per client per level (at least)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per level; median kept")
    parser.add_argument("--torch-threads", type=int, default=1)
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
            "ACA_INFER_MOUNT_ROOT": str(share),
            "ACA_INFER_MODEL_PATH": str(BASE_MODEL_RELPATH),
            "ACA_INFER_ADAPTER_PATH": "",
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
            "--port",
            str(base_port),
        ]
        with (
            running_server(
                "ours", [sys.executable, "-m", "inference_app"], ours_env, ours_port, work, key
            ) as ours,
            running_server("baseline", base_cmd, env, base_port, work, key) as base,
        ):
            servers = (base, ours)
            idle = {}
            for server in servers:
                asyncio.run(run_level(server, 1, 1, args.max_tokens))  # warm-up
                idle[server.name] = server.rss()
            levels: dict[str, list[Level]] = {s.name: [] for s in servers}
            peak: dict[str, int] = {}
            for clients in CONCURRENCY:
                if clients == MEMORY_LEVEL and not all(s.reset_peak_rss() for s in servers):
                    raise RuntimeError("cannot reset the peak RSS (/proc/PID/clear_refs)")
                runs: dict[str, list[Level]] = {s.name: [] for s in servers}
                for _ in range(args.repeats):
                    for server in servers:
                        level = asyncio.run(
                            run_level(server, clients, rounds_for(clients, args), args.max_tokens)
                        )
                        runs[server.name].append(level)
                        print(
                            f"{server.name:8} clients={clients:3} tokens={level.tokens:6} "
                            f"tok/s={level.tokens_per_second:8.0f} "
                            f"ttft_p50={level.ttft_p50 * 1000:6.0f} ms",
                            file=sys.stderr,
                        )
                for server in servers:
                    levels[server.name].append(median_run(runs[server.name]))
                    if clients == MEMORY_LEVEL:
                        peak[server.name] = server.peak_rss()
        memory = {name: (idle[name], peak[name]) for name in ("ours", "baseline")}
        torch.set_num_threads(args.torch_threads)
        in_process = engine_bench.run(
            share / BASE_MODEL_RELPATH,
            CONCURRENCY,
            lambda clients: rounds_for(clients, args),
            args.max_tokens,
        )
        text = report(levels, memory, in_process, args, command)
        args.results.write_text(text)
        print(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

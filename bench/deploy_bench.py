"""`aca-infer deploy --target azure` against the Azure double: files, bytes, storage requests and
wall time for a generated app tree, against a copy-everything baseline in the same run.

ours: the CLI's deploy (content-addressed release on the share, only missing bodies uploaded, a
new revision rolled out and awaited). baseline: what the AI Toolkit's flow does with
`az storage file upload-batch`: every file of the tree uploaded again on every deploy (the same
SDK, the same 8 parallel uploads), without the roll-out. Storage requests are counted by the
double's request log (its files listener). Results replace this bench's section of
bench/RESULTS.md.

Usage: .venv/bin/python -m bench.deploy_bench [--files 500]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from provision.azure.naming import ai_toolkit_names, resource_group_id
from provision.azure.uniquestring import unique_string
from provision.cli import cli
from provision.release import KEEP_RELEASES
from tests.azure_double.server import AzureDouble
from tests.provision.azure.double_project import Session
from tests.provision.azure.projects import copy_templates
from tests.provision.standin_app import write_model_files, write_standin_app

RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN, END = "<!-- deploy_bench: begin -->", "<!-- deploy_bench: end -->"
GROUP, LOCATION = "rg-bench", "westus3"
WORKERS = 8
HEADER = (
    "| phase | files uploaded (ours / baseline) | bytes (ours / baseline) "
    "| storage requests (ours / baseline) | wall (ours / baseline) |"
)
PRUNING = f"one file changed, {KEEP_RELEASES} releases kept: the oldest pruned"
GOALS = {"no-op redeploy": 10, "one file changed": 20, PRUNING: 20}


@dataclass(frozen=True)
class Phase:
    name: str
    files: int
    bytes: int
    requests: int
    seconds: float


def _generate(app_dir: Path, files: int) -> None:
    """`files` modules of 1-4 kB in nested packages, plus the stand-in server."""
    for index in range(files - 2):  # the stand-in brings __init__.py and __main__.py
        folder = app_dir / f"pkg_{index % 20}" / f"sub_{index % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"module_{index}.py").write_text(
            f"VALUE = {index}\n" + "# filler\n" * (100 + index % 300)
        )


def _storage_requests(double: AzureDouble) -> int:
    return sum(1 for r in double.requests if r.listener == "files")


def _measured(double: AzureDouble, run: Callable[[], tuple[int, int]], name: str) -> Phase:
    before = _storage_requests(double)
    start = time.perf_counter()
    files, sent = run()
    return Phase(name, files, sent, _storage_requests(double) - before, time.perf_counter() - start)


class Bench:
    def __init__(self, double: AzureDouble, root: Path, files: int) -> None:
        self.double = double
        self.project = root / "project"
        copy_templates(self.project)
        write_standin_app(self.project)
        self.app_dir = self.project / "inference_app"
        _generate(self.app_dir, files)
        self.session = Session(double, self.project)
        suffix = unique_string(resource_group_id(double.subscription_id, GROUP))[:5]
        self.names = ai_toolkit_names(suffix)
        self.session.seed_app(self.names["storageAccountName"], self.names["fileShareName"])
        # An image that brings the server's packages: the bench measures the app tree only.
        provisioned = self.session.provision(
            "-g", GROUP, "-l", LOCATION, "--set", "containerImage=ghcr.io/example/serve:1"
        )
        if provisioned.exit_code != 0:
            raise SystemExit(f"provision failed: {provisioned.stderr}")
        account, share = self.names["storageAccountName"], self.names["fileShareName"]
        write_model_files(double.share_root(account, share))

    def deploy(self) -> tuple[int, int]:
        result = CliRunner().invoke(
            cli,
            [
                *("--project-dir", str(self.project), "--output", "json", "deploy"),
                "--target",
                "azure",
                "--ready-timeout",
                "120",
            ],
            env=self.session.env(),
            catch_exceptions=False,
        )
        if result.exit_code != 0:
            raise SystemExit(f"deploy failed: {result.stderr}")
        value: dict[str, Any] = json.loads(result.stdout)
        return int(value["uploaded"]), int(value["bytes_uploaded"])

    def copy_everything(self) -> tuple[int, int]:
        from azure.storage.fileshare import ShareClient

        account = self.names["storageAccountName"]
        share = ShareClient(
            self.double.files_endpoint(account),
            self.names["fileShareName"],
            credential={
                "account_name": account,
                "account_key": self.double.storage_account_keys(account)[0],
            },
        )
        files = sorted(p for p in self.app_dir.rglob("*") if p.is_file())
        folders = sorted({p.parent.relative_to(self.project).as_posix() for p in files})
        created: set[str] = set()
        for folder in folders:  # parents first, as upload-batch creates them
            parts = ["baseline", *folder.split("/")]
            for depth in range(1, len(parts) + 1):
                name = "/".join(parts[:depth])
                if name not in created:
                    directory = share.get_directory_client(name)
                    if not directory.exists():
                        directory.create_directory()
                    created.add(name)

        def upload(path: Path) -> int:
            data = path.read_bytes()
            remote = "baseline/" + path.relative_to(self.project).as_posix()
            share.get_file_client(remote).upload_file(data)
            return len(data)

        with ThreadPoolExecutor(WORKERS) as pool:
            sent = sum(pool.map(upload, files))
        return len(files), sent

    def change_one_file(self) -> None:
        main = self.app_dir / "__main__.py"
        main.write_text(main.read_text() + f"\n# changed at {time.time()}\n")


def run(files: int) -> tuple[list[Phase], list[Phase]]:
    with tempfile.TemporaryDirectory(prefix="deploy-bench-") as temporary:
        root = Path(temporary)
        double = AzureDouble(state_dir=root / "double").start()
        try:
            double.config.extra["probe_time_scale"] = 0.02
            os.environ.update(double.env)  # the baseline's SDK trusts the double's CA
            bench = Bench(double, root, files)
            ours: list[Phase] = []
            baseline: list[Phase] = []
            for name, change in (
                ("first deploy", None),
                ("no-op redeploy", None),
                ("one file changed", bench.change_one_file),
                (PRUNING, bench.change_one_file),
            ):
                if name == PRUNING:  # fill the share up to KEEP_RELEASES releases first
                    for _ in range(KEEP_RELEASES - 2):
                        bench.change_one_file()
                        bench.deploy()
                if change is not None:
                    change()
                ours.append(_measured(double, bench.deploy, name))
                baseline.append(_measured(double, bench.copy_everything, name))
            return ours, baseline
        finally:
            double.stop()


def report(files: int, ours: list[Phase], baseline: list[Phase]) -> str:
    rows = "\n".join(
        f"| {o.name} | {o.files} / {b.files} | {o.bytes:,} / {b.bytes:,} "
        f"| **{o.requests}** / {b.requests} | {o.seconds:.1f} / {b.seconds:.1f} s |"
        for o, b in zip(ours, baseline, strict=True)
    )
    goals = "\n".join(
        f"- {name}: at most {limit} storage requests: "
        f"{next(p.requests for p in ours if p.name == name)} — "
        f"{'met' if next(p.requests for p in ours if p.name == name) <= limit else 'NOT met'}"
        for name, limit in GOALS.items()
    )
    one = [p for p in ours if p.name in ("one file changed", PRUNING)]
    return f"""{BEGIN}
# Deploy benchmark (azure target, through the Azure double)

A generated app tree of {files} files (1-4 kB modules in nested packages, plus the stand-in
server) deployed with `aca-infer deploy --target azure` against the Azure double: first deploy,
no-op redeploy, one file changed, and (after {KEEP_RELEASES - 2} more one-file deploys,
unmeasured) one file changed when the share already keeps {KEEP_RELEASES} releases, so that the
deploy also prunes the oldest release and its bodies. **ours** is the CLI (content-addressed
bodies, only what the share lacks uploaded, 8 in parallel; its wall time includes rolling out
the new revision and waiting for /ready); **baseline** is copy-everything (what `az storage file
upload-batch` in the AI Toolkit's flow does: every file uploaded again, same SDK, 8 in parallel;
uploads only). Storage requests are the double's files-listener request log. Same run, same
machine (`python -m bench.deploy_bench --files {files}`).

{HEADER}
|---|---:|---:|---:|---:|
{rows}

## Goals

{goals}
- one file changed uploads one body: {", ".join(str(p.files) for p in one)} — {
        "met" if all(p.files == 1 for p in one) else "NOT met"
    }
{END}
"""


def _write(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.is_file() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section.strip() + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section.strip() + "\n"
    RESULTS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    files = parser.parse_args().files
    ours, baseline = run(files)
    section = report(files, ours, baseline)
    print(section)
    _write(section)


if __name__ == "__main__":
    main()

"""The whole path as a user runs it: the real `aca-infer` command, the real server started from
the share by the bootstrap, the demo model with its adapter."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from provision.local.replica import pid_alive
from scripts.make_demo_model import DemoModel
from tests.inference_app.servers import free_port

REPO = Path(__file__).resolve().parents[2]
ACA_INFER = [sys.executable, "-m", "provision"]
DEMO_MODEL_PATH = "model-cache/aca-infer/tiny-phi3"

pytestmark = pytest.mark.e2e


class Cli:
    def __init__(self, project: Path) -> None:
        self.project = project

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [*ACA_INFER, "--project-dir", str(self.project), *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACA_INFER_")}
        env["ACA_INFER_TARGET"] = "local"  # the default target is azure
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)

    def json(self, *args: str) -> dict:
        done = self.run("--output", "json", *args)
        assert done.returncode == 0, done.stderr
        value: dict = json.loads(done.stdout)
        return value


@pytest.fixture
def cli(tmp_path: Path, demo_model: DemoModel) -> Iterator[Cli]:
    shutil.copytree(REPO / "inference_app", tmp_path / "inference_app")
    shutil.copytree(demo_model.share_dir, tmp_path / ".aca-infer/local/share")
    cli = Cli(tmp_path)
    yield cli
    cli.run("down", "--purge", "--yes")


def test_provision_deploy_request_redeploy_down(cli: Cli) -> None:
    # A port of its own: the test never relies on 7860 being free.
    provisioned = cli.json(
        "provision", "--set", f"modelPath={DEMO_MODEL_PATH}", "--set", f"localPort={free_port()}"
    )
    endpoint = provisioned["endpoint"]

    deployed = cli.json("deploy")
    assert deployed["ready"] and deployed["uploaded"] > 0 and deployed["endpoint"] == endpoint

    keys = cli.json("keys", "show")
    status = cli.json("status")
    assert httpx.get(f"{endpoint}/health").json() == {
        "status": "ok",
        "release": deployed["release"],
        "instance_id": status["instance_id"],
    }
    unauthorised = httpx.get(f"{endpoint}/v1/models")
    assert unauthorised.status_code == 401
    assert set(unauthorised.json()["error"]) >= {"message", "type", "param", "code"}
    for key in (keys["primary"], keys["secondary"]):
        models = httpx.get(f"{endpoint}/v1/models", headers={"api-key": key})
        assert models.status_code == 200
    model_ids = [m["id"] for m in models.json()["data"]]
    assert len(model_ids) == 2  # the base model and the demo adapter

    greedy = ("-m", "Hello! Who are you?", "--max-tokens", "16", "--temperature", "0")
    answer = cli.run("invoke", *greedy)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip()
    assert "model qlora," in answer.stderr  # the fine-tuned adapter answers by default
    base = cli.json("invoke", *greedy, "--model", model_ids[0])
    assert base["model"] == model_ids[0] and base["answers"] != [answer.stdout.strip()]
    # An Azure ML body holding a list of conversations: one answer each, from the real /score.
    conversations = [
        [{"role": "user", "content": "Hello!"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who are you?"}],
    ]
    score_body = {
        "input_data": {"input_string": conversations, "parameters": {"max_new_tokens": 4}}
    }
    request_file = cli.project / "score-request.json"
    request_file.write_text(json.dumps(score_body))
    scored = cli.json("invoke", "--request-file", str(request_file))
    assert scored["route"] == "/score" and len(scored["answers"]) == 2
    posted = httpx.post(f"{endpoint}/score", json=score_body, headers={"api-key": keys["primary"]})
    assert posted.status_code == 200 and len(posted.json()) == 2
    # The server's refusals are bad input (2), with its message.
    for bad in (("--model", "no-such-model"), ("--temperature", "-1")):
        refused = cli.run("invoke", "-m", "hi", *bad)
        assert refused.returncode == 2, refused.stderr
        assert "answered 4" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1

    again = cli.json("deploy")
    assert (again["uploaded"], again["release"]) == (0, deployed["release"])

    record = json.loads((cli.project / ".aca-infer/local/replica.json").read_text())
    pid = int(record["pid"])
    assert cli.run("down", "--yes").returncode == 0
    assert not pid_alive(pid)
    assert not (cli.project / ".aca-infer/local/secrets.json").exists()
    assert (cli.project / ".aca-infer/local/share" / DEMO_MODEL_PATH / "config.json").is_file()

"""The CLI against the local target, with a real replica process running a stand-in app."""

from __future__ import annotations

import getpass
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from provision.cli import cli
from provision.local.replica import pid_alive
from provision.local.share import LocalShare
from provision.release_history import read_current
from tests.inference_app.servers import free_port, wait_until
from tests.provision.foreign_server import foreign_server
from tests.provision.standin_app import write_model_files, write_standin_app


class Project:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.runner = CliRunner()

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        env = {"ACA_INFER_TARGET": "local", **(env or {})}  # the default target is azure
        return self.runner.invoke(
            cli, ["--project-dir", str(self.root), *args], env=env, catch_exceptions=False
        )

    def json(self, *args: str, env: dict[str, str] | None = None) -> dict:
        result = self.run("--output", "json", *args, env=env)
        assert result.exit_code == 0, result.output + result.stderr
        value: dict = json.loads(result.stdout)
        return value

    @property
    def state(self) -> Path:
        return self.root / ".aca-infer/local"

    def replica_pid(self) -> int:
        return int(json.loads((self.state / "replica.json").read_text())["pid"])

    def kept_values(self) -> dict:
        path = self.state / "parameters.json"
        return json.loads(path.read_text()) if path.is_file() else {}


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    write_standin_app(tmp_path)
    project = Project(tmp_path)
    yield project
    project.run("down", "--purge", "--yes")


def provisioned(project: Project, port: int | None = None) -> dict:
    # A free port of its own: the test never relies on 7860 being free.
    result = project.json("provision", "--set", f"localPort={port or free_port()}")
    write_model_files(project.state / "share")
    return result


def one_line_error(result: Result, exit_code: int) -> str:
    assert result.exit_code == exit_code, result.output + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_provision_creates_share_keys_0600_and_config_without_secrets(project: Project) -> None:
    result = provisioned(project)
    assert result["endpoint"].startswith("http://127.0.0.1:")
    secrets_file = project.state / "secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    keys = project.json("keys", "show")
    config_text = (project.state / "inference.config.json").read_text()
    assert keys["primary"] not in config_text and keys["secondary"] not in config_text
    assert keys["primary"] != keys["secondary"] and len(keys["primary"]) >= 32


def test_reprovision_keeps_keys_and_port(project: Project) -> None:
    first = provisioned(project)
    keys = project.json("keys", "show")
    second = project.json("provision")
    assert second["endpoint"] == first["endpoint"] and not second["created"]
    assert project.json("keys", "show") == keys


def test_deploy_invoke_status_redeploy_down(project: Project) -> None:
    provisioned(project)
    first = project.json("deploy", "--ready-timeout", "60")
    # The stand-in app's two files, the release's requirements record and the bootstrap.
    assert first["ready"] and first["uploaded"] == 4 and first["previous_release"] is None
    health = httpx.get(first["endpoint"] + "/health").json()
    assert health["release"] == first["release"]  # the replica runs the code from the share

    answer = project.run("invoke", "--message", "hi there")
    assert answer.exit_code == 0 and answer.stdout.strip() == "echo: hi there"

    second = project.json("deploy")
    assert (second["uploaded"], second["release"], second["restarted"]) == (
        0,
        first["release"],
        False,
    )

    logs = project.run("logs", "--lines", "5")
    assert logs.exit_code == 0 and f"starting release {first['release']}" in logs.stdout

    status = project.json("status")
    assert status["running"] and status["ready"] and status["release"] == first["release"]

    pid = project.replica_pid()
    down = project.run("down", "--yes")
    assert down.exit_code == 0 and "Stopped the replica" in down.stdout
    assert not pid_alive(pid)
    assert not (project.state / "secrets.json").exists()
    assert (project.state / "share/model-cache").is_dir()  # model files kept without --purge


class ClientLoop:
    """A client sending requests to the endpoint without pause, in a thread, until stopped:
    what a user of the endpoint sees during a deploy."""

    def __init__(self, endpoint: str, key: str) -> None:
        self.endpoint, self.key = endpoint, key
        self.failures: list[str] = []
        self.releases_seen: list[str] = []
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        body = {"messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    health = client.get(f"{self.endpoint}/health")
                    chat = client.post(
                        f"{self.endpoint}/v1/chat/completions", json=body, headers=headers
                    )
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                    continue
                self.requests += 2
                for response in (health, chat):
                    if response.status_code != 200:
                        self.failures.append(f"{response.status_code} {response.text[:100]}")
                if health.status_code == 200:
                    self.releases_seen.append(health.json()["release"])

    def __enter__(self) -> ClientLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_client_loop_sees_no_failure_during_a_deploy(project: Project) -> None:
    provisioned(project)
    first = project.json("deploy", "--ready-timeout", "60")
    (project.root / "inference_app/extra.py").write_text("# a change\n")
    with ClientLoop(first["endpoint"], project.json("keys", "show")["primary"]) as loop:
        second = project.json("deploy", "--ready-timeout", "60")
        while second["release"] not in loop.releases_seen:  # the loop sees the new release
            time.sleep(0.01)
    assert loop.failures == []
    assert loop.requests > 10
    assert {first["release"], second["release"]} == set(loop.releases_seen)
    assert httpx.get(first["endpoint"] + "/health").json()["release"] == second["release"]


def test_a_request_in_flight_during_a_take_over_finishes_on_the_old_replica(
    project: Project,
) -> None:
    provisioned(project)
    first = project.json("deploy", "--ready-timeout", "60")
    old_pid = project.replica_pid()
    gate = project.root / "gate"
    slow: list[httpx.Response] = []
    request = threading.Thread(
        target=lambda: slow.append(httpx.get(f"{first['endpoint']}/slow?gate={gate}", timeout=60))
    )
    request.start()
    wait_until(lambda: Path(f"{gate}.started").exists(), 30, "the old replica to get it")
    (project.root / "inference_app/extra.py").write_text("# a change\n")
    deployed: list[dict] = []
    deploying = threading.Thread(
        target=lambda: deployed.append(project.json("deploy", "--ready-timeout", "60"))
    )
    deploying.start()
    second = _release_id_after_change(project)

    def new_release_answers() -> bool:
        return httpx.get(first["endpoint"] + "/health").json()["release"] == second

    wait_until(new_release_answers, 60, "the take-over")
    assert pid_alive(old_pid) and deploying.is_alive()  # the old one drains, not killed
    gate.write_text("")
    request.join()
    deploying.join()
    assert slow[0].status_code == 200 and slow[0].json()["release"] == first["release"]
    assert deployed[0]["release"] == second
    assert not pid_alive(old_pid)


def test_release_that_crashes_at_import_exits_5_while_the_old_one_keeps_serving(
    project: Project,
) -> None:
    provisioned(project)
    good = project.json("deploy", "--ready-timeout", "60")
    (project.root / "inference_app/extra.py").write_text("# a change\n")
    bad_release = _release_id_after_change(project)
    with ClientLoop(good["endpoint"], project.json("keys", "show")["primary"]) as loop:
        result = project.run(
            "deploy", "--ready-timeout", "60", env={"STANDIN_CRASH_RELEASE": bad_release}
        )
    assert result.exit_code == 5
    assert f"release {bad_release} did not become ready" in result.stderr
    assert "stand-in: this release is configured to crash" in result.stderr  # its last log lines
    assert f"release {good['release']} kept serving throughout" in result.stderr
    assert "Traceback" not in result.stderr
    assert loop.failures == [] and loop.requests > 0
    assert set(loop.releases_seen) == {good["release"]}
    assert project.json("status")["release"] == good["release"]


def test_a_deploy_killed_halfway_is_healed_by_the_next_deploy(project: Project) -> None:
    provisioned(project)
    first = project.json("deploy", "--ready-timeout", "60")
    (project.root / "inference_app/extra.py").write_text("# a change\n")
    second = _release_id_after_change(project)
    command = [sys.executable, "-m", "provision", "--project-dir", str(project.root), "deploy"]
    killed = subprocess.Popen(
        command,
        env={**os.environ, "STANDIN_HANG_RELEASE": second},
        stderr=subprocess.PIPE,
        text=True,
    )
    assert killed.stderr is not None
    for line in killed.stderr:  # halfway: uploaded, its replica starting, the lock held
        if "waiting for" in line:
            break
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    killed.stderr.close()
    assert (project.state / "share/app/deploy.lock").exists()
    leftover = int(json.loads((project.state / "candidate.json").read_text())["pid"])
    assert httpx.get(first["endpoint"] + "/health").json()["release"] == first["release"]

    healed = project.run("--output", "json", "deploy", "--ready-timeout", "60")
    assert healed.exit_code == 0, healed.stderr
    said = " ".join(healed.stderr.split())  # progress lines wrap at the terminal width
    assert f"took over the deploy lock of {getpass.getuser()}@" in said
    assert f"(pid {killed.pid})" in said and f"pid {killed.pid} no longer runs" in said
    assert json.loads(healed.stdout)["release"] == second
    assert httpx.get(first["endpoint"] + "/health").json()["release"] == second
    assert not pid_alive(leftover)  # the replica the killed deploy started was stopped
    assert not (project.state / "share/app/deploy.lock").exists()


def test_rollback_and_releases_through_the_cli(project: Project) -> None:
    provisioned(project)
    first = project.json("deploy", "--ready-timeout", "60")
    (project.root / "inference_app/extra.py").write_text("# a change\n")
    second = project.json("deploy", "--ready-timeout", "60")
    listed = project.json("releases")["releases"]
    assert [(r["release"], r["live"]) for r in listed] == [
        (second["release"], True),
        (first["release"], False),
    ]
    rolled = project.json("rollback", "--ready-timeout", "60")
    assert (rolled["release"], rolled["previous_release"]) == (first["release"], second["release"])
    assert httpx.get(first["endpoint"] + "/health").json()["release"] == first["release"]
    text = project.run("releases")
    assert text.exit_code == 0 and f"{first['release']}" in text.stdout
    unknown = project.run("rollback", "--to", "r-000000000000")
    assert one_line_error(unknown, 2) == (
        "error: --to r-000000000000: no such release on the share; `aca-infer releases` lists them"
    )


def _release_id_after_change(project: Project) -> str:
    from provision.deploy import build_release
    from provision.wheelhouse import RuntimeSpec, serve_requirements

    manifest, _ = build_release(
        project.root / "inference_app", RuntimeSpec(serve_requirements(), None)
    )
    return manifest.release_id


def test_deploy_before_provision_says_what_to_run(project: Project) -> None:
    result = project.run("deploy")
    assert result.exit_code == 3
    assert "run: aca-infer provision --target local" in result.stderr


def test_deploy_without_model_names_the_parameter(project: Project) -> None:
    project.json("provision")
    result = project.run("deploy")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: modelPath 'model-cache/microsoft/")
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_parameter_value_is_one_line_exit_2_and_changes_nothing(project: Project) -> None:
    result = project.run("provision", "--set", "modelPath=../outside")
    assert result.exit_code == 2
    assert "modelPath '../outside'" in result.stderr
    assert not project.state.exists()


def test_json_errors_are_json_on_stdout(project: Project) -> None:
    result = project.run("--output", "json", "status")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["error"]["exit_code"] == 3


def test_help_imports_neither_torch_nor_azure() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from provision.cli import cli\n"
        "r = CliRunner().invoke(cli, ['--help'])\n"
        "assert r.exit_code == 0 and 'provision' in r.output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'azure')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- the replica proves who it is (issue: readiness trusted any server on the port) ---------


def test_provision_refuses_a_port_another_server_holds(project: Project) -> None:
    with foreign_server() as other:
        result = project.run("provision", "--set", f"localPort={other.port}")
        line = one_line_error(result, 2)
    assert line == (
        f"error: localPort {other.port}: port {other.port} is in use by another process; "
        "choose a free port, or --set localPort=0 for any free one"
    )
    assert not project.state.exists()


def test_deploy_refuses_a_port_taken_since_provision_and_sends_it_nothing(
    project: Project,
) -> None:
    port = free_port()
    provisioned(project, port)
    with foreign_server(port) as other:
        deployed = project.run("deploy", "--restart", "--ready-timeout", "30")
        line = one_line_error(deployed, 2)
        assert f"localPort {port}: port {port} is in use by another process" in line
        assert read_current(LocalShare(project.state / "share")) is None  # nothing switched

        invoked = project.run("invoke", "--message", "hi")
        assert "replica is not running" in one_line_error(invoked, 4)
        assert not project.json("status")["running"]
    assert not other.saw_a_key()


def test_a_server_that_is_not_the_replica_is_never_trusted_nor_sent_a_key(
    project: Project,
) -> None:
    provisioned(project)
    project.json("deploy", "--ready-timeout", "60")
    record_file = project.state / "replica.json"
    record = json.loads(record_file.read_text())
    try:
        with foreign_server() as other:
            # The replica process still runs, but another server answers where it is recorded.
            record_file.write_text(json.dumps({**record, "endpoint": other.url}))
            status = project.json("status")
            assert status["running"] and not status["ready"]
            assert status["reason"].startswith(f"another server answers on {other.url}")

            invoked = project.run("invoke", "--message", "hi")
            line = one_line_error(invoked, 4)
            assert f"another server answers on {other.url}" in line
            assert line.endswith("the API key was not sent (check `aca-infer status`)")
        assert not other.saw_a_key()
    finally:
        record_file.write_text(json.dumps(record))  # so that `down` stops the replica


def test_health_names_the_release_and_the_instance_of_this_start(project: Project) -> None:
    provisioned(project)
    first = project.json("deploy", "--ready-timeout", "60")
    status = project.json("status")
    health = httpx.get(first["endpoint"] + "/health").json()
    assert health == {
        "status": "ok",
        "release": first["release"],
        "instance_id": status["instance_id"],
    }
    project.json("deploy", "--restart", "--ready-timeout", "60")
    restarted = httpx.get(first["endpoint"] + "/health").json()
    assert restarted["instance_id"] == project.json("status")["instance_id"]
    assert restarted["instance_id"] != health["instance_id"]


# -- values given once are kept; nothing is written until every value validates ------------


def test_values_given_once_are_kept_for_the_target_until_changed(project: Project) -> None:
    port = free_port()
    project.json("provision", "--set", f"localPort={port}", "--set", "modelPath=my/model")
    again = project.json("provision")
    assert again["parameters"] == {
        "modelPath": "my/model",
        "adapterPath": "models/qlora/qlora/gpu_model/adapter",
        "localPort": port,
    }
    assert project.kept_values() == {"modelPath": "my/model", "localPort": port}
    # Kept in the target's state, not in the project's own files.
    assert sorted(p.name for p in project.root.iterdir()) == [".aca-infer", "inference_app"]

    reset = project.json("provision", "--set", "modelPath=null")
    assert reset["parameters"]["modelPath"] == "model-cache/microsoft/Phi-3-mini-4k-instruct"
    assert project.kept_values() == {"localPort": port}


def test_kept_values_outlive_down_and_bring_the_replica_back_with_up(project: Project) -> None:
    port = free_port()
    provisioned(project, port)
    project.json("deploy", "--ready-timeout", "60")
    down = project.run("down", "--yes")
    assert down.exit_code == 0 and "parameters.json\n" in down.stdout.split("Kept ", 1)[1]
    assert "parameters.json  (values given with --set (--purge deletes them))" in down.output
    back = project.json("up", "--ready-timeout", "60")
    assert back["deploy"]["endpoint"] == f"http://127.0.0.1:{port}"
    assert project.run("invoke", "--message", "again").stdout.strip() == "echo: again"


def test_nothing_is_written_unless_every_value_validates(project: Project) -> None:
    provisioned(project)
    kept, config = project.kept_values(), (project.state / "inference.config.json").read_bytes()
    result = project.run(
        "provision", "--set", "modelPath=other/model", "--set", "maximumInstanceCount=-3"
    )
    assert "maximumInstanceCount -3 (from --set): must be at least 1" in one_line_error(result, 2)
    assert project.kept_values() == kept
    assert (project.state / "inference.config.json").read_bytes() == config


def test_up_refuses_a_missing_model_before_rewriting_the_config(project: Project) -> None:
    provisioned(project)
    kept, config = project.kept_values(), (project.state / "inference.config.json").read_bytes()
    result = project.run("up", "--set", "modelPath=missing/model")
    assert one_line_error(result, 2).startswith("error: modelPath 'missing/model': no model at")
    assert project.kept_values() == kept
    assert (project.state / "inference.config.json").read_bytes() == config


def test_a_changed_runtime_setting_of_a_live_replica_applies_at_the_next_deploy(
    project: Project,
) -> None:
    provisioned(project)
    first = project.json("deploy", "--ready-timeout", "60")
    new_port = free_port()
    changed = project.run("provision", "--set", f"localPort={new_port}")
    assert changed.exit_code == 0, changed.stderr
    assert "still uses the previous localPort: the change takes effect at the next" in (
        changed.stdout
    )
    status = project.json("status")
    assert status["endpoint"] == first["endpoint"] and status["ready"]
    assert status["restart_pending"] == ["localPort"]

    again = project.json("deploy", "--ready-timeout", "60")
    assert again["restarted"] and again["endpoint"] == f"http://127.0.0.1:{new_port}"
    assert httpx.get(again["endpoint"] + "/health").json()["release"] == first["release"]
    assert project.json("status")["restart_pending"] == []


# -- every value is checked against the template's declarations ----------------------------


@pytest.mark.parametrize(
    ("flag", "problem"),
    [
        ("maximumInstanceCount=-3", "maximumInstanceCount -3 (from --set): must be at least 1"),
        (
            "concurrentRequests=lots",
            "concurrentRequests 'lots' (from --set): must be a whole number (param type int)",
        ),
        ("gpuProfileType=H100", "gpuProfileType 'H100' (from --set): must be one of"),
        ("localPort=70000", "localPort 70000 (from --set): must be at most 65535"),
    ],
)
def test_invalid_values_are_refused_by_the_template_rules(
    project: Project, flag: str, problem: str
) -> None:
    assert problem in one_line_error(project.run("provision", "--set", flag), 2)
    assert not project.state.exists()


def test_environment_values_are_checked_too(project: Project) -> None:
    result = project.run("provision", env={"ACA_INFER_CONCURRENT_REQUESTS": "0"})
    line = one_line_error(result, 2)
    assert "concurrentRequests 0 (from ACA_INFER_CONCURRENT_REQUESTS): must be at least 1" in line


# -- exit codes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"parameters": {"maximumInstanceCount": {"value": {{ 1/0 }}}}}', "ZeroDivisionError"),
        (b'{"parameters": {"modelPath": {"value": "caf\xe9"}}}', "not UTF-8 text"),
    ],
)
def test_a_broken_parameters_file_is_bad_input(
    project: Project, content: bytes, problem: str
) -> None:
    parameters = project.root / "infra/provision/inference.parameters.json"
    parameters.parent.mkdir(parents=True)
    parameters.write_bytes(content)
    line = one_line_error(project.run("provision"), 2)
    assert "inference.parameters.json" in line and problem in line


def test_invoke_exit_codes_follow_the_server_answer(project: Project) -> None:
    provisioned(project)
    project.json("deploy", "--ready-timeout", "60")
    bad_model = project.run("invoke", "-m", "hi", "--model", "nope")
    assert "answered 404: The model 'nope' does not exist" in one_line_error(bad_model, 2)
    bad_temperature = project.run("invoke", "-m", "hi", "--temperature", "-1")
    assert "answered 400: temperature:" in one_line_error(bad_temperature, 2)

    project.json("deploy", "--restart", env={"STANDIN_FAIL_STATUS": "503"})
    assert "answered 503: boom" in one_line_error(project.run("invoke", "-m", "hi"), 4)

    os.kill(project.replica_pid(), signal.SIGKILL)
    unreachable = project.run("invoke", "-m", "hi")
    assert "replica is not running" in one_line_error(unreachable, 4)


def test_logs_as_json_is_one_object(project: Project) -> None:
    provisioned(project)
    release = project.json("deploy", "--ready-timeout", "60")["release"]
    logs = project.json("logs", "--lines", "5")
    assert logs["target"] == "local"
    assert any(f"starting release {release}" in line for line in logs["lines"])


def test_a_damaged_store_of_kept_values_is_named(project: Project) -> None:
    project.state.mkdir(parents=True)
    (project.state / "parameters.json").write_text("[1, 2")
    line = one_line_error(project.run("provision"), 2)
    assert "parameters.json: not a JSON object of parameter values" in line
    assert "delete it to forget the stored values" in line


# -- upload-model ---------------------------------------------------------------------------


def test_upload_model_copies_to_the_share_and_up_makes_it_live(project: Project) -> None:
    from tests.provision.test_model_upload import make_adapter, make_base

    provisioned(project)
    base = make_base(project.root / "weights")
    adapter = make_adapter(
        project.root / "weights", "microsoft/Phi-3-mini-4k-instruct", ["qkv_proj"]
    )
    result = project.run(
        "--output",
        "json",
        "upload-model",
        "--base",
        str(base),
        "--adapter",
        str(adapter),
        "--name",
        "my-finetune",
    )
    assert result.exit_code == 0, result.stderr
    uploaded = json.loads(result.stdout)
    assert uploaded["adapter_path"] == "models/my-finetune/adapter"
    assert uploaded["next_step"] == "aca-infer up --target local"
    shared = project.state / "share" / uploaded["model_path"] / "model.safetensors"
    assert shared.read_bytes() == (base / "model.safetensors").read_bytes()
    assert project.kept_values()["adapterPath"] == "models/my-finetune/adapter"
    up = project.json("up", "--ready-timeout", "60")
    assert up["provision"]["parameters"]["adapterPath"] == "models/my-finetune/adapter"


def test_upload_model_of_a_mismatched_adapter_is_one_line_exit_2(project: Project) -> None:
    from tests.provision.test_model_upload import make_adapter, make_base

    provisioned(project)
    base = make_base(project.root / "weights")
    adapter = make_adapter(project.root / "weights", "microsoft/Phi-3-mini-4k-instruct", ["fc9"])
    result = project.run("upload-model", "--base", str(base), "--adapter", str(adapter))
    assert "target_modules ['fc9'] are not modules" in one_line_error(result, 2)
    model = project.state / "share/model-cache/microsoft/Phi-3-mini-4k-instruct"
    assert sorted(p.name for p in model.iterdir()) == ["config.json"]  # nothing copied

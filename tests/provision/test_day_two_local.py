"""Day-two commands against the local target with a real replica process (the stand-in app):
invoke with request files, streaming and a cold start; status; logs; stop/start."""

from __future__ import annotations

import json
import os
import pty
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from provision.local.replica import pid_alive
from provision.local.share import LocalShare
from provision.local.target import LocalTarget
from provision.release_history import read_current
from provision.targets import LogQuery
from tests.azure_double.sdk import resources_client, use_double_env
from tests.azure_double.server import AzureDouble
from tests.provision.test_cli_local import Project, one_line_error, provisioned

CONVERSATIONS = [
    [{"role": "user", "content": "first question"}],
    [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "second question"},
    ],
]


@pytest.fixture
def deployed(project: Project) -> Project:
    provisioned(project)
    project.json("deploy", "--ready-timeout", "60")
    return project


def _request_file(project: Project, body: object) -> str:
    path = project.root / "request.json"
    path.write_text(json.dumps(body))
    return str(path)


# -- invoke ---------------------------------------------------------------------------------


def test_azure_ml_list_of_conversations_gets_one_answer_each(deployed: Project) -> None:
    body = {"input_data": {"input_string": CONVERSATIONS, "parameters": {"max_new_tokens": 8}}}
    result = deployed.run("invoke", "--request-file", _request_file(deployed, body))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == ["[1] echo: first question", "[2] echo: second question"]
    as_json = deployed.json("invoke", "--request-file", _request_file(deployed, body))
    assert as_json["route"] == "/score"
    assert as_json["answers"] == ["echo: first question", "echo: second question"]


@pytest.mark.parametrize(
    ("body", "answer"),
    [
        ({"text": "plain"}, "echo: plain"),
        ({"input_data": {"input_string": CONVERSATIONS[1]}}, "echo: second question"),
        ({"messages": [{"role": "user", "content": "openai"}]}, "echo: openai"),
    ],
)
def test_each_body_shape_goes_to_its_route(deployed: Project, body: dict, answer: str) -> None:
    result = deployed.run("invoke", "--request-file", _request_file(deployed, body))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == answer


def test_stream_prints_the_tokens_as_they_arrive(deployed: Project) -> None:
    result = deployed.run("invoke", "--message", "tell me more", "--stream")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "echo: tell me more"
    streamed = deployed.json("invoke", "--message", "more", "--stream")
    assert streamed["streamed"] and streamed["answers"] == ["echo: more "]
    assert streamed["finish_reason"] == "stop"


def test_model_picks_the_model_of_an_openai_body(deployed: Project) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    result = deployed.run("invoke", "--request-file", _request_file(deployed, body), "--model", "x")
    assert "answered 404: The model 'x' does not exist" in one_line_error(result, 2)


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["--model", "adapter"], "--model: "),
        (["--stream"], "--stream: "),
    ],
)
def test_azure_ml_bodies_refuse_model_and_stream(
    deployed: Project, args: list[str], problem: str
) -> None:
    path = _request_file(deployed, {"text": "hi"})
    line = one_line_error(deployed.run("invoke", "--request-file", path, *args), 2)
    assert line.startswith(f"error: {problem}{path} is an Azure ML body")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not JSON"),
        ("[1]", "expected a JSON object"),
        ('{"prompt": "x"}', "expected an OpenAI chat body with 'messages'"),
        ('{"input_data": {"input_string": []}}', "input_data.input_string must be"),
    ],
)
def test_a_bad_request_file_is_one_line_exit_2(
    deployed: Project, content: str, problem: str
) -> None:
    path = deployed.root / "request.json"
    path.write_text(content)
    assert problem in one_line_error(deployed.run("invoke", "--request-file", str(path)), 2)


def test_message_or_request_file_not_both(deployed: Project) -> None:
    result = deployed.run("invoke", "-m", "x", "--request-file", "y.json")
    assert result.exit_code == 2 and "give either --message or --request-file" in result.stderr


def test_a_cold_start_is_waited_through_with_a_progress_line(deployed: Project) -> None:
    cold = deployed.root / "cold"
    deployed.json("deploy", "--restart", env={"STANDIN_COLD_FILE": str(cold)})
    cold.write_text("3")  # the next three requests answer 503, as a starting replica does
    result = deployed.run("invoke", "-m", "wake up")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "echo: wake up"
    assert "waiting for a replica to start (cold start): 503: loading the model" in result.stderr
    assert not cold.exists()


def test_a_cold_start_that_outlasts_the_wait_is_exit_4(deployed: Project) -> None:
    cold = deployed.root / "cold"
    deployed.json("deploy", "--restart", env={"STANDIN_COLD_FILE": str(cold)})
    cold.write_text("100000")
    result = deployed.run("invoke", "-m", "hi", "--wait-timeout", "1")
    assert result.exit_code == 4
    assert "is not ready after 1s of waiting for a replica (last: 503: loading the model)" in (
        result.stderr
    )


# -- status ---------------------------------------------------------------------------------


def test_status_reports_the_running_replica_and_the_last_deploy(deployed: Project) -> None:
    status = deployed.json("status")
    record = json.loads((deployed.state / "replica.json").read_text())
    assert status["app"]["app_state"] == "running" and status["app"]["replica_count"] == 1
    assert (status["app"]["pid"], status["app"]["port"]) == (record["pid"], record["port"])
    assert status["instance_id"] == record["instance_id"]
    assert status["ready"] and status["last_deploy"]["action"] == "deploy"
    assert status["last_deploy"]["release"] == status["release"]
    text = deployed.run("status").stdout
    assert f"pid {record['pid']}, port {record['port']}" in text
    assert f"Deployed: deploy of {status['release']} at " in text


def test_status_of_a_stopped_replica_says_so(deployed: Project) -> None:
    pid = deployed.replica_pid()
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)  # the replica is this test process's child: wait until it is gone
    status = deployed.json("status")
    assert status["app"] == {
        **status["app"],
        "app_state": "stopped",
        "replica_count": 0,
        "pid": None,
    }
    assert not status["ready"] and status["reason"] == "the replica is not running"


# -- logs -----------------------------------------------------------------------------------


def test_logs_tail_and_system_events(deployed: Project) -> None:
    status = deployed.json("status")
    tail = deployed.run("logs", "--tail", "1")
    assert tail.exit_code == 0 and len(tail.stdout.splitlines()) == 1
    events = deployed.json("logs", "--system")["lines"]
    assert events[-1].endswith(
        f"replica started: pid {status['app']['pid']}, release {status['release']}, "
        f"port {status['app']['port']}, instance {status['instance_id']}"
    )
    deployed.json("deploy", "--restart")
    events = deployed.json("logs", "--system", "--tail", "2")["lines"]
    assert "replica stopped: pid" in events[0] and "replica started: pid" in events[1]


def test_logs_since_keeps_only_recent_lines(deployed: Project) -> None:
    events = deployed.state / "events.log"
    events.write_text("2001-01-01T00:00:00 replica started: long ago\n" + events.read_text())
    recent = deployed.json("logs", "--system", "--since", "1h")["lines"]
    assert recent and not any("long ago" in line for line in recent)
    everything = deployed.json("logs", "--system", "--tail", "100")["lines"]
    assert "long ago" in everything[0]


def test_logs_since_needs_a_duration(deployed: Project) -> None:
    line = one_line_error(deployed.run("logs", "--since", "yesterday"), 2)
    assert line == "error: --since 'yesterday': give a duration such as 90s, 15m, 2h or 1d"


def test_follow_yields_lines_as_they_are_written(deployed: Project) -> None:
    target = LocalTarget(deployed.root)
    lines = target.log_lines(LogQuery(tail=1, follow=True))
    try:
        next(lines)  # the last line written so far
        log_path = target.replica.log_path()
        assert log_path is not None
        with log_path.open("a") as log:
            log.write("a new line\n")
        assert next(lines) == "a new line"
    finally:
        lines.close()


def test_follow_moves_to_the_new_replica_after_a_take_over(deployed: Project) -> None:
    target = LocalTarget(deployed.root)
    before = target.replica.log_path()
    lines = target.log_lines(LogQuery(tail=1, follow=True))
    try:
        next(lines)  # the last line written so far
        assert deployed.run("keys", "rotate", "--primary", "--ready-timeout", "60").exit_code == 0
        after = LocalTarget(deployed.root).replica.log_path()
        assert after is not None and after != before  # the take-over started a new replica
        with after.open("a") as log:
            log.write("written by the new replica\n")
        # The new replica's start-up lines come first; following the old log would block here.
        while next(lines) != "written by the new replica":
            pass
    finally:
        lines.close()


def test_logs_before_provision_say_what_to_run(project: Project) -> None:
    assert "run: aca-infer provision --target local" in one_line_error(project.run("logs"), 3)


# -- stop / start ---------------------------------------------------------------------------


def test_stop_scales_to_zero_keeping_everything_and_start_brings_it_back(
    deployed: Project,
) -> None:
    pid = deployed.replica_pid()
    release = deployed.json("status")["release"]
    stopped = deployed.run("stop")
    assert stopped.exit_code == 0
    assert stopped.stdout.startswith("Scaled to zero: no replica runs (nothing is billed)")
    assert not pid_alive(pid)
    assert (deployed.state / "secrets.json").is_file() and (deployed.state / "share").is_dir()
    assert "already scaled to zero" in deployed.run("stop").stdout

    invoked = deployed.run("invoke", "-m", "hi")
    assert "start it: aca-infer start --target local" in one_line_error(invoked, 4)

    started = deployed.json("start", "--ready-timeout", "60")
    assert started["changed"] and started["ready"]
    assert deployed.json("status")["release"] == release
    assert deployed.run("invoke", "-m", "back").stdout.strip() == "echo: back"
    assert "already runs" in deployed.run("start").stdout


def test_start_before_any_deploy_says_what_to_run(project: Project) -> None:
    provisioned(project)
    line = one_line_error(project.run("start"), 3)
    assert line.endswith("run: aca-infer deploy --target local")


# -- down asks first ------------------------------------------------------------------------


def test_down_without_a_terminal_needs_yes_and_changes_nothing(deployed: Project) -> None:
    pid = deployed.replica_pid()
    line = one_line_error(deployed.run("down"), 2)
    assert line == (
        "error: down: no terminal to confirm on; rerun with --yes to delete what "
        "`aca-infer down` lists"
    )
    assert pid_alive(pid) and (deployed.state / "secrets.json").is_file()


def down_on_a_terminal(project: Project, answer: str) -> subprocess.CompletedProcess[str]:
    """`aca-infer down` as a person runs it: its standard input is a terminal that answers."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "provision", "--project-dir", str(project.root), "down"],
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "ACA_INFER_TARGET": "local", "NO_COLOR": "1"},
            text=True,
        )
        os.write(controller, f"{answer}\n".encode())
        stdout, stderr = process.communicate(timeout=120)
    finally:
        os.close(terminal)
        os.close(controller)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_down_on_a_terminal_asks_and_no_deletes_nothing(deployed: Project) -> None:
    pid = deployed.replica_pid()
    declined = down_on_a_terminal(deployed, "n")
    assert declined.returncode == 0
    assert "Delete these? [y/N]" in declined.stderr
    assert "Nothing was deleted." in declined.stderr
    assert pid_alive(pid) and (deployed.state / "secrets.json").is_file()
    accepted = down_on_a_terminal(deployed, "y")
    assert accepted.returncode == 0, accepted.stderr
    assert "Stopped the replica." in accepted.stdout
    assert not pid_alive(pid) and not (deployed.state / "secrets.json").exists()


def test_down_yes_says_what_it_deletes_and_keeps_and_why(deployed: Project) -> None:
    pid = deployed.replica_pid()
    result = deployed.run("down", "--yes")
    assert result.exit_code == 0
    assert f"the replica process (pid {pid})  (it runs)" in result.stderr
    assert f"{deployed.state / 'secrets.json'}  (the API keys provision generated)" in (
        result.stderr
    )
    assert f"{deployed.state / 'share/models'}  (model files on the share (--purge deletes" in (
        result.stderr
    )
    assert "Stopped the replica." in result.stdout
    assert not pid_alive(pid)


# -- keys rotate ----------------------------------------------------------------------------


def _status_with(endpoint: str, key: str) -> int:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(f"{endpoint}/v1/chat/completions", json=body, headers=headers).status_code


def test_rotating_the_primary_key_refuses_the_old_one_and_keeps_the_other(
    deployed: Project,
) -> None:
    before = deployed.json("keys", "show")
    endpoint = deployed.json("status")["endpoint"]
    rotated = deployed.run("keys", "rotate", "--primary", "--ready-timeout", "60")
    assert rotated.exit_code == 0, rotated.stderr
    assert rotated.stdout.startswith(
        "Rotated the primary key (a replica with the new key took over without dropping requests)"
    )
    after = deployed.json("keys", "show")
    assert after["secondary"] == before["secondary"] and after["primary"] != before["primary"]
    for key in (*before.values(), after["primary"]):  # only `keys show` prints keys
        assert key not in rotated.stdout + rotated.stderr
    secrets_file = deployed.state / "secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    assert _status_with(endpoint, before["primary"]) == 401
    assert _status_with(endpoint, after["primary"]) == 200
    assert _status_with(endpoint, after["secondary"]) == 200


def test_rotation_under_a_request_loop_with_the_other_key_fails_nothing(
    deployed: Project,
) -> None:
    keys = deployed.json("keys", "show")
    endpoint = deployed.json("status")["endpoint"]
    statuses: list[int] = []
    rotated = threading.Event()

    def loop() -> None:
        while not rotated.is_set():
            statuses.append(_status_with(endpoint, keys["secondary"]))

    sender = threading.Thread(target=loop)
    sender.start()
    try:
        result = deployed.run("keys", "rotate", "--primary", "--ready-timeout", "60")
    finally:
        rotated.set()
        sender.join()
    assert result.exit_code == 0, result.stderr
    assert statuses and set(statuses) == {200}
    assert _status_with(endpoint, keys["primary"]) == 401


def test_rotate_needs_to_know_which_key(deployed: Project) -> None:
    result = deployed.run("keys", "rotate")
    assert result.exit_code == 2 and "--primary or --secondary" in result.stderr


def test_rotate_before_provision_says_what_to_run(project: Project) -> None:
    line = one_line_error(project.run("keys", "rotate", "--secondary"), 3)
    assert line.endswith("run: aca-infer provision --target local")


# -- doctor ---------------------------------------------------------------------------------


def test_doctor_passes_on_a_running_replica(deployed: Project) -> None:
    result = deployed.run("doctor")
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "✓ Python",
        "✓ Packages",
        "✓ Config",
        "✓ Share",
        "✓ Ready",
        "✓ Keyed request",
    ]
    checks = deployed.json("doctor")["checks"]
    assert all(check["ok"] for check in checks)


def test_doctor_names_each_failure_with_its_fix_and_exit_3(project: Project) -> None:
    provisioned(project)  # model files, but nothing deployed
    (project.state / "share/models/qlora/qlora/gpu_model/adapter/adapter_config.json").unlink()
    result = project.run("doctor")
    assert result.exit_code == 3 and result.stderr.strip() == "3 check(s) failed"
    assert "✗ Share: adapterPath 'models/qlora/qlora/gpu_model/adapter': no LoRA adapter" in (
        result.stdout
    )
    assert "✗ Ready: no replica runs\n    fix: aca-infer start --target local" in result.stdout
    as_json = project.run("--output", "json", "doctor")
    assert as_json.exit_code == 3
    assert not json.loads(as_json.stdout)["ok"]


def test_doctor_before_provision_says_what_to_run(project: Project) -> None:
    result = project.run("doctor")
    assert result.exit_code == 3
    assert "✗ Config: the local target is not provisioned" in result.stdout
    assert "fix: run: aca-infer provision --target local" in result.stdout


def test_doctor_checks_azure_through_the_real_credential_chain(
    deployed: Project, azure_double: AzureDouble
) -> None:
    result = deployed.run("doctor", "--azure", env=azure_double.env)
    assert result.exit_code == 0, result.stdout
    assert "✓ Bicep CLI: Bicep CLI version" in result.stdout
    assert "✓ Azure sign-in: a token for Azure Resource Manager" in result.stdout
    assert f"✓ Subscription: {azure_double.subscription_id}" in result.stdout
    assert "✓ Provider Microsoft.App: Registered" in result.stdout


def test_doctor_says_how_to_register_a_missing_provider(
    deployed: Project, azure_double: AzureDouble
) -> None:
    with use_double_env(azure_double):
        resources_client(azure_double).providers.unregister("Microsoft.App")
    result = deployed.run("doctor", "--azure", env=azure_double.env)
    assert result.exit_code == 3
    assert "✗ Provider Microsoft.App: " in result.stdout
    assert "fix: az provider register --namespace Microsoft.App" in result.stdout


def test_doctor_without_an_azure_sign_in_says_az_login(
    deployed: Project, azure_double: AzureDouble, tmp_path: Path
) -> None:
    signed_out = {**azure_double.env, "PATH": os.environ["PATH"], "AZURE_CONFIG_DIR": str(tmp_path)}
    result = deployed.run("doctor", "--azure", env=signed_out)
    assert result.exit_code == 3
    assert "fix: sign in: az login" in result.stdout


# -- down --purge ---------------------------------------------------------------------------


def test_down_purge_deletes_what_upload_model_uploaded_and_keeps_the_rest(
    project: Project,
) -> None:
    from tests.provision.test_model_upload import make_adapter, make_base

    provisioned(project)  # the fine-tuning run's own files: a base and an adapter on the share
    share = project.state / "share"
    finetuned = share / "models/qlora/qlora/gpu_model/adapter"
    (finetuned / "adapter_model.safetensors").write_bytes(b"the run's own weights")
    base = make_base(project.root / "weights", "tiny-base")
    adapter = make_adapter(project.root / "weights", "acme/tiny-base", ["qkv_proj"])
    uploaded = project.json(
        "upload-model", "--base", str(base), "--adapter", str(adapter), "--name", "mine"
    )
    ours = [share / uploaded["model_path"], share / uploaded["adapter_path"]]
    assert all(folder.is_dir() for folder in ours)

    # A plain down keeps the model files and the record of which are ours.
    plain = project.run("down", "--yes")
    assert plain.exit_code == 0, plain.stderr
    assert all(folder.is_dir() for folder in ours) and read_current(LocalShare(share)) is None

    down = project.run("down", "--purge", "--yes")
    assert down.exit_code == 0, down.stderr
    for folder in ours:
        assert f"{folder}  (uploaded by aca-infer upload-model)" in down.stderr
    assert f"{finetuned}  (not uploaded by aca-infer" in down.stderr
    assert not any(folder.exists() for folder in ours)
    assert not (share / "model-cache/acme").exists()  # the folders they left empty went too
    assert not (share / "app").exists()
    assert (finetuned / "adapter_model.safetensors").read_bytes() == b"the run's own weights"
    assert (share / "model-cache/microsoft/Phi-3-mini-4k-instruct/config.json").is_file()

"""Day-two commands on the azure target through the Azure double: `status`, `stop|start`,
`keys rotate`, `logs` and `down`, with the real SDK clients, as the user runs them."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import Result

from provision.azure.target import AzureTarget
from provision.local.share import LocalShare
from provision.release_history import read_current
from provision.targets import LogQuery
from tests.azure_double.faults import Fault
from tests.provision.azure import test_deploy_double
from tests.provision.azure.test_deploy_double import TIMEOUT, DeploySession
from tests.provision.test_model_upload import make_adapter, make_base

# A provisioned project on the double with the stand-in app, ready to deploy.
session = test_deploy_double.session

ARM_APP = "Microsoft.App/containerApps"


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _run(session: DeploySession, *arguments: str) -> Result:
    return session.aca(*arguments, "--target", "azure")


def _status(session: DeploySession) -> dict[str, Any]:
    value: dict[str, Any] = _json(session.aca("--output", "json", "status", "--target", "azure"))
    return value


def _untag(session: DeploySession, provider: str, name: str) -> str:
    """Make a resource look referenced rather than created (the fine-tuning run's own)."""
    resource_id = f"{session.group_id('rg-deploy')}/providers/{provider}/{name}"
    stored = session.resource(resource_id)
    assert stored is not None
    session.double.store.put(resource_id.lower(), {**stored, "tags": {}})
    return resource_id


def _chat(session: DeploySession, key: str) -> int:
    endpoint = session.config()["ACA_APP_ENDPOINT"]
    body = {"messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(verify=session.tls(), timeout=30) as client:
        response = client.post(f"{endpoint}/v1/chat/completions", json=body, headers=headers)
    return response.status_code


# -- status ---------------------------------------------------------------------------------


def test_status_reports_the_live_revision_its_replica_and_the_last_deploy(
    session: DeploySession,
) -> None:
    deployed = session.deployed()
    status = _status(session)
    assert status["running"] and status["ready"] and status["release"] == deployed["release"]
    app = status["app"]
    assert app["app_state"] == "Running"
    assert app["replica_count"] >= 1 and app["replica_state"] == "Running"
    assert app["revision"].startswith(session.config()["ACA_APP_NAME"] + "--")
    assert app["workload_profile"] and app["workload_profile_type"]
    assert app["max_replicas"] >= 1 and app["min_replicas"] is not None
    assert status["last_deploy"]["release"] == deployed["release"]


# -- stop / start ---------------------------------------------------------------------------


def test_stop_scales_to_zero_keeping_everything_and_start_brings_it_back(
    session: DeploySession,
) -> None:
    deployed = session.deployed()
    stopped = _run(session, "stop")
    assert stopped.exit_code == 0, stopped.stderr
    assert "stopping container app" in stopped.stderr
    status = _status(session)
    assert not status["running"] and status["app"]["app_state"] == "Stopped"
    assert status["app"]["replica_count"] == 0
    again = _run(session, "stop")
    assert again.exit_code == 0 and "stopping" not in again.stderr

    started = _run(session, "start", "--ready-timeout", TIMEOUT)
    assert started.exit_code == 0, started.stderr
    status = _status(session)
    assert status["ready"] and status["release"] == deployed["release"]
    assert status["app"]["app_state"] == "Running"


def test_start_of_an_app_nothing_was_deployed_to_exits_3_and_starts_nothing(
    session: DeploySession,
) -> None:
    assert _run(session, "stop").exit_code == 0  # provisioned, never deployed
    started = _run(session, "start", "--ready-timeout", TIMEOUT)
    assert started.exit_code == 3, started.stderr
    assert "nothing is deployed on the azure target yet" in started.stderr
    assert _status(session)["app"]["app_state"] == "Stopped"


# -- keys rotate ----------------------------------------------------------------------------


def test_rotation_under_a_loop_with_the_other_key_fails_nothing_and_refuses_the_old_one(
    session: DeploySession,
) -> None:
    session.deployed()
    before = _json(session.aca("--output", "json", "keys", "show", "--target", "azure"))
    statuses: list[int] = []
    rotated = threading.Event()

    def loop() -> None:
        while not rotated.is_set():
            statuses.append(_chat(session, before["secondary"]))

    sender = threading.Thread(target=loop)
    sender.start()
    try:
        result = _run(session, "keys", "rotate", "--primary", "--ready-timeout", TIMEOUT)
    finally:
        rotated.set()
        sender.join()
    assert result.exit_code == 0, result.stderr
    assert "a new revision with the new key took over once ready" in result.stdout
    after = _json(session.aca("--output", "json", "keys", "show", "--target", "azure"))
    assert after["secondary"] == before["secondary"] and after["primary"] != before["primary"]
    for key in (*before.values(), after["primary"]):  # only `keys show` prints keys
        assert key not in result.stdout + result.stderr
    assert statuses and set(statuses) == {200}
    assert _chat(session, before["primary"]) == 401
    assert _chat(session, after["primary"]) == 200


# -- logs -----------------------------------------------------------------------------------


def test_logs_tail_the_live_replica_console(session: DeploySession) -> None:
    deployed = session.deployed()
    console = _json(session.aca("--output", "json", "logs", "--target", "azure", "-n", "50"))
    assert any(f"starting release {deployed['release']}" in line for line in console["lines"])
    last = _json(session.aca("--output", "json", "logs", "--target", "azure", "-n", "1"))
    assert last["lines"] == console["lines"][-1:]


def test_logs_system_show_the_platform_events_of_a_failed_revision(
    session: DeploySession,
) -> None:
    session.deployed()
    main = session.app_dir / "__main__.py"
    main.write_text('raise RuntimeError("broken at import")\n' + main.read_text())
    failed = session.deploy("--ready-timeout", TIMEOUT)
    assert failed.exit_code == 5, failed.stderr
    events = _run(session, "logs", "--system")
    assert events.exit_code == 0, events.stderr
    assert "exited" in events.stdout


def test_logs_follow_keeps_yielding_new_console_lines(
    session: DeploySession, monkeypatch: pytest.MonkeyPatch
) -> None:
    session.deployed()
    for name, value in session.env().items():  # the CLI's environment: az, the CA, ARM
        monkeypatch.setenv(name, value)
    target = AzureTarget(session.project, session.env())
    lines = target.log_lines(LogQuery(tail=1, follow=True))
    try:
        assert "bootstrap: starting release" in next(lines)
        more: list[str] = []
        reader = threading.Thread(target=lambda: more.extend(lines))
        reader.start()
        reader.join(timeout=1.0)
        assert reader.is_alive(), "--follow ended while the replica still runs"
        assert _run(session, "stop").exit_code == 0  # the stream ends with the replica
        reader.join()
    finally:
        lines.close()  # type: ignore[attr-defined]


def test_logs_of_a_stopped_app_say_what_to_run(session: DeploySession) -> None:
    session.deployed()
    assert _run(session, "stop").exit_code == 0
    result = _run(session, "logs")
    assert result.exit_code == 3
    assert "has no replica to read the console of (stopped or scaled to zero)" in result.stderr


def test_logs_since_prints_the_replica_console_from_log_analytics(
    session: DeploySession,
) -> None:
    deployed = session.deployed()
    result = _run(session, "logs", "--since", "1h")
    assert result.exit_code == 0, result.stderr
    assert f"starting release {deployed['release']}" in result.stdout
    assert "[double]" not in result.stdout  # platform events are in the system table


def test_logs_since_system_prints_the_platform_events(session: DeploySession) -> None:
    session.deployed()
    main = session.app_dir / "__main__.py"
    main.write_text('raise RuntimeError("broken at import")\n' + main.read_text())
    assert session.deploy("--ready-timeout", TIMEOUT).exit_code == 5
    events = _run(session, "logs", "--since", "1h", "--system")
    assert events.exit_code == 0, events.stderr
    assert "exited" in events.stdout
    assert "starting release" not in events.stdout


def test_logs_since_query_failure_is_one_line_exit_4(session: DeploySession) -> None:
    session.deployed()
    workspace = session.config()["LOG_ANALYTICS_NAME"]
    session.double.faults.add(
        Fault(path=r"/v1/workspaces/.*/query", status=400, code="SemanticError")
    )
    result = _run(session, "logs", "--since", "1h")
    assert result.exit_code == 4
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: querying Log Analytics workspace {workspace}: ")


def test_logs_since_partial_results_print_the_lines_then_the_error(
    session: DeploySession,
) -> None:
    deployed = session.deployed()
    session.double.config.update({"extra": {"logs_partial_error": "Query exceeded limits"}})
    try:
        result = _run(session, "logs", "--since", "1h")
    finally:
        session.double.config.update({"extra": {}})
    assert result.exit_code == 4
    assert f"starting release {deployed['release']}" in result.stdout
    assert re.fullmatch(
        r"error: querying Log Analytics workspace \S+: partial results only \(\d+ lines above\): "
        r"PartialError: Query exceeded limits",
        result.stderr.strip(),
    )


# -- down -----------------------------------------------------------------------------------


def test_down_without_a_terminal_needs_yes_and_deletes_nothing(session: DeploySession) -> None:
    session.deployed()
    before = session.writes()
    result = _run(session, "down")
    assert result.exit_code == 2
    assert "rerun with --yes" in result.stderr
    assert session.writes() == before


def test_down_deletes_only_what_provision_created_and_says_what_it_kept(
    session: DeploySession,
) -> None:
    session.deployed()
    config = session.config()
    group = session.group_id("rg-deploy")
    environment = _untag(
        session, "Microsoft.App/managedEnvironments", config["ACA_ENVIRONMENT_NAME"]
    )
    account = (
        f"{group}/providers/Microsoft.Storage/storageAccounts/{config['STORAGE_ACCOUNT_NAME']}"
    )
    workspace = (
        f"{group}/providers/Microsoft.OperationalInsights/workspaces/{config['LOG_ANALYTICS_NAME']}"
    )
    app = f"{group}/providers/{ARM_APP}/{config['ACA_APP_NAME']}"

    result = session.aca("--output", "json", "down", "--target", "azure", "--yes")
    assert result.exit_code == 0, result.stderr
    assert f"container app {app}  (created by provision" in result.stderr
    assert f"Container Apps environment {environment}  (not created by aca-infer" in result.stderr
    assert f"storage account {account}  (created by provision" in result.stderr
    assert "(--purge deletes it)" in result.stderr
    assert "resource group rg-deploy  (it may hold resources" in result.stderr
    down = json.loads(result.stdout)
    assert down["removed"][:2] == [
        f"container app {app}",
        f"Log Analytics workspace {workspace}",
    ]
    assert f"Container Apps environment {environment}" in down["kept"]
    assert session.resource(app) is None and session.resource(workspace) is None
    assert session.resource(environment) is not None and session.resource(account) is not None
    assert read_current(LocalShare(session.share_root)) is not None
    config_file = session.project / "infra/inference.config.json"
    assert f"{config_file}  (what provision wrote about the deleted app)" in result.stderr
    assert str(config_file) in down["removed"] and not config_file.exists()


def test_down_purge_on_a_reused_account_deletes_only_the_app_area(
    session: DeploySession,
) -> None:
    session.deployed()
    config = session.config()
    account = _untag(session, "Microsoft.Storage/storageAccounts", config["STORAGE_ACCOUNT_NAME"])
    files = session.share_root.rglob("*")
    models = sorted(p for p in files if p.is_file() and "app" not in p.parts)
    result = _run(session, "down", "--yes", "--purge")
    assert result.exit_code == 0, result.stderr
    assert f"storage account {account}  (not created by aca-infer" in result.stderr
    assert "app/ on share" in result.stderr
    assert session.resource(account) is not None
    assert not [p for p in (session.share_root / "app").rglob("*") if p.is_file()]
    assert models and all(p.is_file() for p in models)


def test_down_purge_on_a_reused_account_deletes_the_uploaded_model_and_keeps_the_runs_own(
    session: DeploySession, tmp_path: Path
) -> None:
    session.deployed()
    config = session.config()
    _untag(session, "Microsoft.Storage/storageAccounts", config["STORAGE_ACCOUNT_NAME"])
    base = make_base(tmp_path / "weights", "tiny-base")
    adapter = make_adapter(tmp_path / "weights", "acme/tiny-base", ["qkv_proj"])
    uploaded = _json(
        _run(session, "--output", "json", "upload-model", "--base", str(base),
             "--adapter", str(adapter), "--name", "mine")
    )  # fmt: skip
    ours = [uploaded["model_path"], uploaded["adapter_path"]]
    assert all((session.share_root / folder).is_dir() for folder in ours)
    # The fine-tuning run's own model, put on the share by hand (not by upload-model).
    finetuned = session.share_root / "models/qlora/qlora/gpu_model/adapter"
    (finetuned / "adapter_model.safetensors").write_bytes(b"the run's own weights")

    result = _run(session, "down", "--yes", "--purge")
    assert result.exit_code == 0, result.stderr
    share = f"{config['STORAGE_ACCOUNT_NAME']}/{config['FILE_SHARE_NAME']}"
    for folder in ours:
        assert f"{folder}/ on share {share}  (uploaded by aca-infer upload-model)" in result.stderr
    assert (
        f"models/qlora/qlora/gpu_model/adapter/ on share {share}  (not uploaded by aca-infer"
        in result.stderr
    )
    assert not (session.share_root / "model-cache/acme").exists()  # files and emptied folders
    assert not (session.share_root / "models/mine").exists()
    assert (finetuned / "adapter_model.safetensors").read_bytes() == b"the run's own weights"
    assert (session.share_root / "model-cache/microsoft/Phi-3-mini-4k-instruct").is_dir()
    assert not [p for p in (session.share_root / "app").rglob("*") if p.is_file()]

"""The local target: `.aca-infer/local/` holds the share folder, the secrets (0600), the config,
the replica's record and log, and the values given for the target (`parameters.json`: `down`
keeps it, `down --purge` removes it). `down --purge` deletes the model files upload-model put
on the share and keeps every other one."""

from __future__ import annotations

import shutil
from collections.abc import Generator, Mapping
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

from provision.errors import InputError, NotReadyError, PrerequisiteError
from provision.fsutil import read_json, write_json_atomic
from provision.keys import KEY_NAMES, PRIMARY, SECONDARY, generate_key, generate_keys
from provision.local.events import EVENTS_FILE
from provision.local.replica import (
    LocalReplica,
    ReplicaLaunch,
    ReplicaRecord,
    any_free_port,
    port_is_free,
    read_front,
    read_record,
)
from provision.local.share import LocalShare
from provision.log_filter import follow, read_lines, select
from provision.parameters import resolve_parameters, template_declarations
from provision.release import APP_DIR
from provision.release_history import read_current
from provision.target_state import TargetState, state_dir
from provision.targets import (
    ApiKeys,
    DownPlan,
    DownResult,
    LogQuery,
    PlannedItem,
    Progress,
    ProvisionResult,
    ProvisionSettings,
    RotateResult,
    ScaleResult,
    TargetDescription,
    read_provisioned_config,
)
from provision.template_params import ParamDeclaration
from provision.upload_record import (
    NOT_UPLOADED_REASON,
    UPLOADED_REASON,
    UPLOADS,
    PurgeSplit,
    purge_split,
)
from provision.wheelhouse import ImagePlatform

TARGET = "local"
PREFERRED_PORT = 7860
# The share holds the fine-tuned model beside the app area; `down` keeps it unless --purge.
MODEL_AREAS = ("model-cache", "models")

# Parameters of the local target only; every other one is the template's (one source of truth).
LOCAL_PARAMETERS = {
    "localPort": ParamDeclaration(
        name="localPort",
        type="int",
        has_default=True,
        default=0,
        min_value=0,
        max_value=65535,
        description="Port of the local replica; 0 picks 7860 when free, else any free port.",
    ),
}


def _share_relative(name: str, value: Any, default: Any) -> str:
    path = PurePosixPath(str(value))
    if not str(value) or path.is_absolute() or ".." in path.parts:
        raise InputError(f"{name} {value!r}: give a path relative to the share, e.g. {default}")
    return path.as_posix()


def _owned(port: int, running: ReplicaRecord | None) -> bool:
    return running is not None and running.port == port


def _choose_port(requested: int, previous: int | None, running: ReplicaRecord | None) -> int:
    """The port asked for, which must be free or this project's replica's; with 0, the port
    used before (a stable endpoint), else the preferred one, else any free one."""
    if requested:
        if not port_is_free(requested) and not _owned(requested, running):
            raise InputError(
                f"localPort {requested}: port {requested} is in use by another process; "
                "choose a free port, or --set localPort=0 for any free one"
            )
        return requested
    for candidate in (previous, PREFERRED_PORT):
        if candidate and (port_is_free(candidate) or _owned(candidate, running)):
            return candidate
    return any_free_port()


class LocalTarget:
    name = TARGET

    def __init__(self, project_dir: Path) -> None:
        self.project_dir = project_dir.resolve()
        self.state_dir = state_dir(self.project_dir, TARGET)
        self.share_dir = self.state_dir / "share"
        self.config_path = self.state_dir / "inference.config.json"
        self.secrets_path = self.state_dir / "secrets.json"
        self.values = TargetState(self.project_dir, TARGET)

    # -- state written by provision ------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        return read_provisioned_config(self.config_path, self.name)

    @property
    def share(self) -> LocalShare:
        return LocalShare(self.share_dir)

    @cached_property
    def replica(self) -> LocalReplica:
        config = self._config()
        keys = self.keys()
        environment = {
            "ACA_INFER_MOUNT_ROOT": str(self.share_dir),
            "ACA_INFER_MODEL_PATH": config["MODEL_PATH"],
            "ACA_INFER_ADAPTER_PATH": config["ADAPTER_PATH"],
            "ACA_INFER_API_KEY_PRIMARY": keys.primary,
            "ACA_INFER_API_KEY_SECONDARY": keys.secondary,
            "ACA_INFER_HOST": "127.0.0.1",
            "ACA_INFER_PORT": str(config["PORT"]),
            "ACA_INFER_RUNTIME_DIR": str(self.state_dir / "runtime"),
            "HF_HUB_OFFLINE": "1",
            "GRADIO_ANALYTICS_ENABLED": "False",
        }
        launch = ReplicaLaunch(environment, int(config["PORT"]), _runtime_settings(config))
        return LocalReplica(self.state_dir, self.share_dir, launch)

    def image_platform(self) -> ImagePlatform | None:
        # The local replica runs in the project's virtual environment, which has the `serve`
        # extra: no wheels to download. The bootstrap still checks that it has them.
        return None

    def endpoint(self) -> str:
        return str(self._config()["ACA_APP_ENDPOINT"])

    def ui_url(self) -> str:
        return self.endpoint() + "/ui"

    def keys(self) -> ApiKeys:
        if not self.secrets_path.is_file():
            raise PrerequisiteError(
                f"no API keys at {self.secrets_path}; run: aca-infer provision --target local"
            )
        stored = read_json(self.secrets_path)
        return ApiKeys(primary=stored[PRIMARY], secondary=stored[SECONDARY])

    # -- operations ----------------------------------------------------------------------

    def provision(self, settings: ProvisionSettings, progress: Progress) -> ProvisionResult:
        # Resolve and check everything first: nothing is written unless every value is valid.
        declarations = {**template_declarations(self.project_dir), **LOCAL_PARAMETERS}
        resolved = resolve_parameters(
            self.project_dir,
            settings.set_flags,
            settings.environ,
            declarations,
            self.values.load(),
            str(self.values.path.relative_to(self.project_dir)),
        )
        model_path, adapter_path = (
            _share_relative(name, resolved.values[name], declarations[name].default)
            for name in ("modelPath", "adapterPath")
        )
        previous = read_json(self.config_path) if self.config_path.is_file() else None
        running = read_record(self.state_dir)
        port = _choose_port(
            int(resolved.values["localPort"]), previous and int(previous["PORT"]), running
        )
        if settings.deploy_follows:
            self._check_model_files(model_path, adapter_path)

        self.values.save(resolved.stored)
        self.share_dir.mkdir(parents=True, exist_ok=True)
        if not self.secrets_path.is_file():
            keys = generate_keys()
            write_json_atomic(
                self.secrets_path, {PRIMARY: keys.primary, SECONDARY: keys.secondary}, mode=0o600
            )
            progress(f"generated API keys in {self.secrets_path}")
        endpoint = f"http://127.0.0.1:{port}"
        config = {
            "TARGET": TARGET,
            "ACA_APP_NAME": TARGET,
            "ACA_APP_ENDPOINT": endpoint,
            "FILE_SHARE_NAME": str(self.share_dir),
            "MODEL_PATH": model_path,
            "ADAPTER_PATH": adapter_path,
            "PORT": port,
        }
        write_json_atomic(self.config_path, config)
        progress(f"wrote {self.config_path}")
        runtime = _runtime_settings(config)
        pending = []
        if running is not None and not settings.deploy_follows:
            pending = [name for name in runtime if running.settings.get(name) != runtime[name]]
        return ProvisionResult(
            target=self.name,
            endpoint=endpoint,
            ui_url=endpoint + "/ui",
            config_path=str(self.config_path),
            share=str(self.share_dir),
            parameters=runtime,
            created=previous is None,
            restart_pending=pending,
        )

    def _check_model_files(self, model_path: str, adapter_path: str) -> None:
        model_config = self.share_dir / model_path / "config.json"
        if not model_config.is_file():
            raise InputError(
                f"modelPath {model_path!r}: no model at {model_config.parent}; copy the "
                "base model there (or `make demo-model`), or provision with --set modelPath=..."
            )
        adapter_config = self.share_dir / adapter_path / "adapter_config.json"
        if not adapter_config.is_file():
            raise InputError(
                f"adapterPath {adapter_path!r}: no LoRA adapter at "
                f"{adapter_config.parent}; provision with --set adapterPath=..."
            )

    def check_deployable(self) -> None:
        config = self._config()
        self._check_model_files(config["MODEL_PATH"], config["ADAPTER_PATH"])
        port = int(config["PORT"])
        front = read_front(self.state_dir)
        ours = _owned(port, read_record(self.state_dir)) or (
            front is not None and front.port == port
        )
        if not port_is_free(port) and not ours:
            raise InputError(
                f"localPort {port}: port {port} is in use by another process, so the replica "
                "cannot listen there; stop that process, or choose another port: "
                "aca-infer provision --target local --set localPort=0"
            )

    def rotate_key(self, which: str, ready_timeout: float, progress: Progress) -> RotateResult:
        self.keys()  # not provisioned: says what to run
        stored = read_json(self.secrets_path)
        live = self.replica.record()
        if live is not None:
            self.check_deployable()  # the take-over must be able to work before the key changes
        write_json_atomic(
            self.secrets_path, {**stored, KEY_NAMES[which]: generate_key()}, mode=0o600
        )
        progress(f"wrote a new {which} key to {self.secrets_path}")
        if live is None:
            return RotateResult(
                self.name, which, False, False, "no replica runs: the next start uses it"
            )
        # A replica reads its keys from its environment: start one with the new key beside the
        # running one; the front proxy routes to it once ready, so no request fails.
        self.__dict__.pop("replica", None)
        state = self.replica.roll_out(live.release or "", ready_timeout, progress)
        if not state.ready:
            raise NotReadyError(
                f"a replica with the new {which} key did not become ready ({state.reason}); the "
                "running replica keeps serving with the old key, and the new key is stored: "
                f"retry with aca-infer keys rotate --{which}"
            )
        return RotateResult(
            self.name,
            which,
            True,
            True,
            "a replica with the new key took over without dropping requests",
        )

    def _down_items(self, purge: bool) -> tuple[list[Path], list[Path], PurgeSplit | None]:
        """(to delete, to keep, the share split by who put the files there): everything under
        the state dir but the model files and the values given for the target. --purge deletes
        the values and the folders upload-model filled, and keeps every other model file."""
        split = purge_split(self.share) if purge and self.share_dir.is_dir() else None
        if split is not None:
            kept = [self.share_dir / folder for folder in split.others]
            itemized = [self.share_dir / APP_DIR, *(self.share_dir / f for f in split.uploaded)]
        else:
            areas = [] if purge else [a for a in MODEL_AREAS if (self.share_dir / a).exists()]
            kept = [self.share_dir / area for area in areas]
            itemized = [item for item in self._share_entries() if item not in kept]
            record = self.share_dir / UPLOADS
            if not purge and record.is_file():  # so that a later --purge knows what is ours
                kept.append(record)
                itemized.remove(record.parent)
                itemized += [item for item in sorted(record.parent.iterdir()) if item != record]
        if not purge and self.values.path.is_file():
            kept.append(self.values.path)  # values given for the target outlive `down`, as in azd
        delete: list[Path] = []
        if self.state_dir.exists():
            for entry in sorted(self.state_dir.iterdir()):
                if entry in kept:
                    continue
                if entry == self.share_dir and (kept or (split and split.uploaded)):
                    delete += [item for item in itemized if item.exists()]
                    continue
                delete.append(entry)
        return delete, kept, split

    def _share_entries(self) -> list[Path]:
        return sorted(self.share_dir.iterdir()) if self.share_dir.is_dir() else []

    def plan_down(self, purge: bool) -> DownPlan:
        delete, kept, split = self._down_items(purge)
        record = read_record(self.state_dir)
        uploaded = self._uploaded_paths(split)
        planned = [
            PlannedItem(
                str(path), UPLOADED_REASON if path in uploaded else _why_deleted(path, self)
            )
            for path in delete
        ]
        if record is not None:
            planned.insert(0, PlannedItem(f"the replica process (pid {record.pid})", "it runs"))
        keep = [PlannedItem(str(path), self._why_kept(path, purge)) for path in kept]
        return DownPlan(self.name, planned, keep)

    def _uploaded_paths(self, split: PurgeSplit | None) -> set[Path]:
        return {self.share_dir / folder for folder in split.uploaded} if split else set()

    def _why_kept(self, path: Path, purge: bool) -> str:
        if path == self.values.path:
            return "values given with --set (--purge deletes them)"
        if path == self.share_dir / UPLOADS:
            return "what upload-model uploaded (--purge deletes those files)"
        if purge:
            return NOT_UPLOADED_REASON
        return "model files on the share (--purge deletes those aca-infer upload-model uploaded)"

    def down(self, purge: bool, progress: Progress) -> DownResult:
        stopped = self.replica.stop() if self.config_path.is_file() else False
        if stopped:
            progress("stopped the replica")
        delete, kept, split = self._down_items(purge)
        uploaded = self._uploaded_paths(split)
        for path in delete:
            if path in uploaded and split is not None:
                self._remove_uploaded(path, split)
            else:
                _remove(path)
        if self.share_dir.is_dir() and not any(self.share_dir.iterdir()):
            self.share_dir.rmdir()
        return DownResult(
            target=self.name,
            stopped=stopped,
            removed=[str(p) for p in delete],
            kept=[str(p) for p in kept],
        )

    def _remove_uploaded(self, folder: Path, split: PurgeSplit) -> None:
        """Only the files upload-model wrote, then the folders they leave empty."""
        prefix = folder.relative_to(self.share_dir).as_posix() + "/"
        for name in split.uploaded_files:
            if name.startswith(prefix):
                (self.share_dir / name).unlink(missing_ok=True)
        for directory in sorted(folder.rglob("*"), reverse=True):
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()
        while folder != self.share_dir and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent

    # -- day-two operations ---------------------------------------------------------------

    def describe(self) -> TargetDescription:
        record = read_record(self.state_dir)
        if record is None:
            return TargetDescription(app_state="stopped", replica_count=0)
        return TargetDescription(
            app_state="running", replica_count=1, pid=record.pid, port=record.port
        )

    def log_lines(self, query: LogQuery) -> Generator[str, None, None]:
        self._config()  # not provisioned: say what to run rather than print nothing
        events = self.state_dir / EVENTS_FILE
        locate = (lambda: events) if query.system else self.replica.log_path
        path = locate()
        if path is None:
            return
        lines, offset = read_lines(path)
        yield from select(lines, query.tail, query.since)
        if query.follow:
            yield from follow(locate, path, offset)

    def scale(self, running: bool, ready_timeout: float, progress: Progress) -> ScaleResult:
        replica = self.replica
        endpoint = self.endpoint()
        if not running:
            stopped = replica.stop()
            return ScaleResult(self.name, "stopped", stopped, endpoint)
        record = replica.record()
        if record is not None:
            return ScaleResult(self.name, "started", False, record.endpoint, ready=True)
        if read_current(self.share) is None:
            raise PrerequisiteError(
                "nothing is deployed on the local target yet; run: aca-infer deploy --target local"
            )
        self.check_deployable()
        replica.restart()
        progress("started the replica; waiting until it is ready")
        state = replica.wait_ready(ready_timeout, progress)
        if not state.ready:
            raise NotReadyError(f"the replica did not become ready: {state.reason}")
        return ScaleResult(self.name, "started", True, replica.launch.endpoint, ready=True)


def _why_deleted(path: Path, target: LocalTarget) -> str:
    if path == target.secrets_path:
        return "the API keys provision generated"
    if path == target.config_path:
        return "the config provision wrote"
    if path == target.share_dir or target.share_dir in path.parents:
        return "the share's app area and releases deploy wrote"
    return "state of the local target (replica record, logs, runtime)"


def _runtime_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "modelPath": config["MODEL_PATH"],
        "adapterPath": config["ADAPTER_PATH"],
        "localPort": int(config["PORT"]),
    }


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()

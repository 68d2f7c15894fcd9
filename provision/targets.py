"""What a target provides (DESIGN.md "Targets"): provision, a share, a replica and an endpoint."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from provision.share import Share

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ApiKeys:
    primary: str
    secondary: str

    def __repr__(self) -> str:  # keys must never reach a log through a stray repr
        return "ApiKeys(primary=***, secondary=***)"


@dataclass(frozen=True)
class ReadyState:
    ready: bool
    reason: str = ""


@dataclass(frozen=True)
class ProvisionSettings:
    target: str
    set_flags: tuple[str, ...] = ()
    environ: Mapping[str, str] = field(default_factory=dict)
    # Where (azure): flags win over AZURE_SUBSCRIPTION_ID / AZURE_RESOURCE_GROUP / AZURE_LOCATION.
    subscription: str | None = None
    resource_group: str | None = None
    location: str | None = None
    arm_endpoint: str | None = None
    dry_run: bool = False  # print the resolved request; no network call
    what_if: bool = False  # print ARM's what-if; deploy nothing
    force: bool = False  # deploy even when nothing changed since the last success
    ask: Callable[[str], str] | None = None  # prompts for a missing value (a terminal only)


@dataclass(frozen=True)
class ProvisionResult:
    target: str
    endpoint: str
    ui_url: str
    config_path: str
    share: str
    parameters: Mapping[str, Any]
    created: bool
    skipped: bool = False  # nothing changed since the last successful deployment
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProvisionPlan:
    """What `provision --dry-run` or `--what-if` shows instead of provisioning."""

    target: str
    request: Mapping[str, Any]
    changes: tuple[Mapping[str, Any], ...] | None = None  # ARM's what-if; None for --dry-run


@dataclass(frozen=True)
class DownResult:
    target: str
    stopped: bool
    removed: list[str]
    kept: list[str]


class Replica(Protocol):
    def restart(self) -> None:
        """Start the replica on the share's current release, stopping a running one first."""

    def stop(self) -> bool:
        """Stop the replica; False when none was running."""

    def is_running(self) -> bool: ...

    def wait_ready(self, timeout: float, progress: Progress) -> ReadyState: ...

    def logs(self, lines: int = 40) -> str: ...


class Target(Protocol):
    name: str

    @property
    def share(self) -> Share: ...

    @property
    def replica(self) -> Replica: ...

    def endpoint(self) -> str: ...

    def ui_url(self) -> str: ...

    def keys(self) -> ApiKeys: ...

    def provision(
        self, settings: ProvisionSettings, progress: Progress
    ) -> ProvisionResult | ProvisionPlan: ...

    def check_deployable(self) -> None:
        """Raise an AcaInferError when a deploy cannot work (not provisioned, model missing)."""

    def down(self, purge: bool, progress: Progress) -> DownResult: ...


TARGET_NAMES = ("local", "azure")


def get_target(name: str, project_dir: Path) -> Target:
    # Imported here so that `aca-infer --help` never loads a target's dependencies.
    if name == "local":
        from provision.local.target import LocalTarget

        return LocalTarget(project_dir)
    if name == "azure":
        from provision.azure.target import AzureTarget

        return AzureTarget(project_dir)
    raise ValueError(f"unknown target {name!r}")

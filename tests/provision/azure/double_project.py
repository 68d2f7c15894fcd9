"""Driving `aca-infer provision --target azure` against the Azure double with CliRunner."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from provision.cli import cli
from tests.azure_double.apps_testing import SERVER
from tests.azure_double.server import AzureDouble

WRITES = {"PUT", "POST", "PATCH", "DELETE"}
# POSTs that read or predict and change nothing.
READ_ACTIONS = ("/checknameavailability", "/listsecrets", "/listkeys", "/whatif")


@dataclass
class Session:
    double: AzureDouble
    project: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {**self.double.env, "HOME": str(self.project / "home"), **extra}

    def aca(self, *arguments: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(
            cli,
            ["--project-dir", str(self.project), *arguments],
            env=env or self.env(),
            catch_exceptions=False,
        )

    def provision(self, *arguments: str, env: dict[str, str] | None = None) -> Result:
        return self.aca("provision", "--target", "azure", *arguments, env=env)

    def config(self) -> dict[str, Any]:
        return dict(json.loads((self.project / "infra/inference.config.json").read_text()))

    def seed_app(self, account: str, share: str) -> None:
        """A stand-in server where the bootstrap goes, so the new app's replica gets ready."""
        app = self.double.share_root(account, share) / "app"
        app.mkdir(parents=True, exist_ok=True)
        (app / "bootstrap.py").write_text(SERVER)

    def writes(self) -> list[str]:
        return [
            f"{r.method} {r.path}"
            for r in self.double.requests
            if r.listener == "arm"
            and r.method in WRITES
            and not r.path.startswith("/_double")
            and not r.path.lower().endswith(READ_ACTIONS)
        ]

    def resource(self, resource_id: str) -> dict[str, Any] | None:
        return self.double.store.get(resource_id.lower())

    def env_without_az(self) -> dict[str, str]:
        """The double's environment whose stand-in `bicep` remains but `az` is gone: no way to
        sign in, while the template still compiles."""
        env = self.env()
        stand_ins, _, rest = env["PATH"].partition(os.pathsep)
        bicep_only = self.project / "bicep-only"
        bicep_only.mkdir(exist_ok=True)
        (bicep_only / "bicep").symlink_to(Path(stand_ins) / "bicep")
        return {**env, "PATH": f"{bicep_only}{os.pathsep}{rest}"}

    def group_id(self, group: str) -> str:
        return f"/subscriptions/{self.double.subscription_id}/resourceGroups/{group}"

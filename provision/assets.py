"""Where the Bicep templates, the inference server package and the share bootstrap come from.

The one place that decides it; everything else asks here. A project's own copy wins: Bicep
templates ejected into `infra/provision/` (`aca-infer init --eject`), an `inference_app/`
package at the project root (or `--app-dir`). Otherwise the copies that ship with aca-infer:
under `provision/bundled/` in an installed wheel (pyproject.toml copies them there at build
time), or in the checkout an editable install points at.

An AI Toolkit project holds its own `infra/provision/inference.bicep`, which serves without API
keys and probes its UI page: that one is recognised and passed over, with a note saying so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

TEMPLATES_DIR = Path("infra/provision")
MAIN_TEMPLATE = "inference.bicep"
APP_PACKAGE = "inference_app"

_PACKAGE_DIR = Path(__file__).resolve().parent
_BUNDLED_DIR = _PACKAGE_DIR / "bundled"  # present in an installed wheel only
_CHECKOUT_DIR = _PACKAGE_DIR.parent  # an editable install: the repository checkout

# The AI Toolkit's template defines the container app itself, takes no API keys and probes only
# its UI page; ours takes the two keys as parameters and probes /ready and /health.
_CONTAINER_APP = re.compile(r"'Microsoft\.App/containerApps@")
_API_KEY_PARAM = re.compile(r"^\s*param\s+apiKeyPrimary\b", re.MULTILINE)
_OUR_PROBE = re.compile(r"path:\s*'/(?:ready|health)'")


@dataclass(frozen=True)
class Templates:
    """The Bicep templates a provision deploys: `directory` holds inference.bicep and modules/."""

    directory: Path
    source: str  # "project" (the project's own, ejected copy) or "packaged"
    note: str | None = None  # one line when the project's template was passed over, and why

    @property
    def main(self) -> Path:
        return self.directory / MAIN_TEMPLATE


def _packaged_root() -> Path:
    if _BUNDLED_DIR.is_dir():
        return _BUNDLED_DIR
    return _CHECKOUT_DIR


def packaged_templates_dir() -> Path:
    return _packaged_root() / TEMPLATES_DIR


def packaged_app_dir() -> Path:
    return _packaged_root() / APP_PACKAGE


def packaged_template_files() -> list[Path]:
    """The Bicep files that ship (main template and modules), relative to their directory."""
    root = packaged_templates_dir()
    return sorted(path.relative_to(root) for path in root.rglob("*.bicep"))


def bootstrap_source() -> bytes:
    """The script the replica starts from the share (`app/bootstrap.py`)."""
    return resources.files("provision").joinpath("share_files/bootstrap.py").read_bytes()


def is_ai_toolkit_template(path: Path) -> bool:
    """True for the AI Toolkit's own inference.bicep: a container app without API keys or
    probes on /ready and /health. Any other template (an ejected copy of ours, changed or not)
    is the project's own."""
    text = path.read_text(encoding="utf-8", errors="replace")
    return bool(
        _CONTAINER_APP.search(text)
        and not _API_KEY_PARAM.search(text)
        and not _OUR_PROBE.search(text)
    )


def ai_toolkit_template_note(path: Path) -> str:
    return (
        f"{path} is the AI Toolkit's template (no API keys, probes on its UI page): not used, "
        "aca-infer deploys its own; to change ours, move that file aside and run "
        "`aca-infer init --eject`"
    )


def templates(project_dir: Path) -> Templates:
    """The templates for this project: its own ejected copy, else the packaged one."""
    own = project_dir / TEMPLATES_DIR / MAIN_TEMPLATE
    if own.is_file():
        if not is_ai_toolkit_template(own):
            return Templates(own.parent, "project")
        return Templates(packaged_templates_dir(), "packaged", ai_toolkit_template_note(own))
    return Templates(packaged_templates_dir(), "packaged")


def app_dir(project_dir: Path, override: Path | None = None) -> Path:
    """The server package a deploy ships: `--app-dir`, else the project's, else the packaged.

    DeploySettings checks that the chosen folder holds a package."""
    if override is not None:
        return override.resolve()
    own = project_dir / APP_PACKAGE
    if (own / "__main__.py").is_file():
        return own.resolve()
    return packaged_app_dir()

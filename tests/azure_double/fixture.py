"""pytest fixtures: a started Azure double per test (`azure_double`) or per module
(`azure_double_module`), stopped afterwards with everything it started."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.azure_double.server import AzureDouble


def _started(state_dir: Path) -> AzureDouble:
    return AzureDouble(state_dir=state_dir).start()


@pytest.fixture
def azure_double(tmp_path: Path) -> Iterator[AzureDouble]:
    double = _started(tmp_path / "azure-double")
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture(scope="module")
def azure_double_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureDouble]:
    double = _started(tmp_path_factory.mktemp("azure-double"))
    try:
        yield double
    finally:
        double.stop()

"""Fixtures of the Microsoft.App tests (test_apps*.py): the double with the SDK environment set,
the real ContainerAppsAPIClient over a prepared double, and an environment with the share's
storage. A test module that needs another `double` defines its own, which takes precedence."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.azure_double.apps_testing import apps_client, create_environment, prepare
from tests.azure_double.sdk import use_double_env
from tests.azure_double.server import AzureDouble


@pytest.fixture
def double(azure_double: AzureDouble) -> Iterator[AzureDouble]:
    with use_double_env(azure_double):
        yield azure_double


@pytest.fixture
def client(double: AzureDouble) -> Any:
    prepare(double)
    return apps_client(double)


@pytest.fixture
def environment_id(double: AzureDouble, client: Any) -> str:
    return create_environment(double, client)

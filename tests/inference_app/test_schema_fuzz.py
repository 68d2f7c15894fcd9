"""Schemathesis generates requests from the server's own /openapi.json (valid and invalid ones)
and sends them to the real server: no request may produce a 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok

from scripts.make_demo_model import DemoModel
from tests.inference_app.conftest import PRIMARY_KEY, copy_app, real_env
from tests.inference_app.servers import serve_process

AUTH = {"api-key": PRIMARY_KEY}


@pytest.fixture(scope="module")
def fuzz_server(demo_model: DemoModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # A cap on max_tokens keeps hundreds of generated requests quick on the CPU demo model.
    workdir = tmp_path_factory.mktemp("fuzz-server")
    env = real_env(demo_model, ACA_INFER_UI="false", ACA_INFER_MAX_TOKENS_LIMIT="4")
    with serve_process(env, workdir / "server.log", cwd=copy_app(workdir / "app")) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(fuzz_server: str) -> schemathesis.BaseSchema:
    # The schema itself sits behind the API key, like every route but /health and /ready.
    return schemathesis.openapi.from_url(fuzz_server + "/openapi.json", headers=AUTH)


def test_no_request_the_schema_allows_or_forbids_causes_a_5xx(
    api_schema: schemathesis.BaseSchema,
) -> None:
    results = list(api_schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "the server's OpenAPI schema has invalid operations"
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/completions", "/score"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=30,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def no_server_error(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=AUTH, checks=[not_a_server_error])

        no_server_error()

"""Schemathesis against the served OpenAPI document: no server errors, responses conform."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from serving.app import create_app
from serving.config import ScoreParams
from tests.api.conftest import API_KEY, Trained, api_settings, serve, wait_ready


@pytest.fixture(scope="module")
def base(trained: Trained, score_params: ScoreParams) -> Iterator[str]:
    with serve(create_app(api_settings(trained), score_params)) as url:
        wait_ready(url)
        yield url


def test_api_conforms_to_its_openapi_document(base: str) -> None:
    """Every operation, up to 30 generated cases each, with a valid (non-admin) key.

    Driven through schemathesis' operation strategies rather than its lazy pytest fixture, whose
    node-id handling does not work with pytest 9.
    """
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=base, headers={"X-API-Key": API_KEY})

        check()

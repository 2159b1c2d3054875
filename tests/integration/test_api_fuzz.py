"""Property-based fuzzing of every operation of the served OpenAPI document (schemathesis).

Valid and invalid requests (bodies, query strings, path and header parameters) are
generated from ``/api/v1/openapi.json`` itself and sent to the real app on real servers.
Every answer must: not be a 5xx, have a documented status, content type, headers and
schema, and, for a 4xx, have the error shape. Derandomized (a fixed seed) and bounded.
"""

from __future__ import annotations

import asyncio

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.api.auth import HEADER
from tests.integration.test_api_errors import assert_shape
from tests.integration.test_api_support import Api

#: examples per operation and generation mode: (9 + 6 operations) x 50, ~15 s here
EXAMPLES = 50
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def fuzz_operation(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    base_url: str,
    headers: dict[str, str],
    campaign_uuid: str,
) -> int:
    """Run the examples of one operation (blocking: schemathesis sends with requests)."""
    sent = 0

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), real=st.booleans())
    def run(case: schemathesis.Case, real: bool) -> None:
        nonlocal sent
        if real and case.path_parameters and "campaign_uuid" in case.path_parameters:
            case.path_parameters["campaign_uuid"] = campaign_uuid  # reach past the 404
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        sent += 1
        case.validate_response(response, checks=CHECKS)
        if 400 <= response.status_code < 500:
            assert_shape(response.json())

    run()
    return sent


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
async def test_every_operation_survives_generated_requests(api: Api, mode: GenerationMode) -> None:
    status, spec = await api.call("GET", "/api/v1/openapi.json", key=None)
    assert status == 200
    schema = schemathesis.openapi.from_dict(spec)
    campaign = await api.create(3, allow_dynamic_call_appending=True)
    base_url = str(api.client.make_url("")).rstrip("/")
    headers = {HEADER: api.keys["a"]}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 9
    if mode is GenerationMode.NEGATIVE:  # only what has parameters or a body to break
        operations = [op for op in operations if op.path.startswith("/api/v1/call-campaign")]
        assert len(operations) == 6

    def fuzz_all() -> dict[str, int]:
        return {
            op.label: fuzz_operation(op, mode, base_url, headers, campaign["uuid"])
            for op in operations
        }

    sent = await asyncio.to_thread(fuzz_all)
    assert all(count > 0 for count in sent.values()), sent
    # the app is still whole afterwards
    assert (await api.call("GET", "/health", key=None))[0] == 200


async def test_datetimes_before_year_1000_are_answered_in_iso_8601(api: Api) -> None:
    body = {
        "call_campaign_name": "old",
        "start_at": "0999-01-01T00:00:00Z",
        "end_at": "2000-01-01T00:00:00Z",
        "call_records": [],
    }
    status, created = await api.call("POST", "/api/v1/call-campaign", json_body=body)
    assert status == 201
    assert created["start_at"] == "0999-01-01T00:00:00.000Z"

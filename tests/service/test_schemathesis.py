"""Property-based tests of the OpenAPI schema against a real server (schemathesis):
generated requests for every operation, with an admin token, must never get a 5xx and
every response must match the schema (status documented, body and headers valid).

Bounded: ``MAX_EXAMPLES`` generated requests per operation (about 20 s in all)."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from npo.service.app import openapi_document  # noqa: E402

MAX_EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
SCHEMA = schemathesis.openapi.from_dict(openapi_document())
OPERATIONS = [r.ok() for r in SCHEMA.get_all_operations()]


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_operation_conforms_and_never_fails(operation, live_sqlite) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {live_sqlite.tokens['admin']}"}

    @given(case=operation.as_strategy())
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case) -> None:  # type: ignore[no-untyped-def]
        if operation.label == "DELETE /v1/tokens/{name}":  # never revoke the test's own token
            case.path_parameters = {"name": "nobody-such"}
        case.call_and_validate(base_url=live_sqlite.url, headers=headers, checks=CHECKS)

    run()

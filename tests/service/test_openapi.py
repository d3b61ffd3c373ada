"""The committed OpenAPI document (``docs/openapi.json``) is the one the service serves.
Regenerate after an intended change:
``python -c "from npo.service.app import write_openapi; write_openapi()"``."""

from __future__ import annotations

import json
from pathlib import Path

from npo.service.app import openapi_document

COMMITTED = Path(__file__).parents[2] / "docs" / "openapi.json"


def test_committed_openapi_is_up_to_date() -> None:
    assert json.loads(COMMITTED.read_text()) == openapi_document(), (
        "docs/openapi.json is stale: regenerate it (see this module's docstring)"
    )


def test_every_route_documents_its_errors() -> None:
    doc = openapi_document()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            if path.startswith("/v1/"):
                assert {"401", "403"} <= codes, (method, path)
                if method in ("post", "delete"):
                    assert "422" in codes, (method, path)
                assert op.get("security"), (method, path)


def test_served_openapi_equals_the_document(live_sqlite) -> None:  # type: ignore[no-untyped-def]
    import httpx

    assert httpx.get(live_sqlite.url + "/openapi.json").json() == openapi_document()

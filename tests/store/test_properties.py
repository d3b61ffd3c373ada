"""Model-based property test of the ingestion contract (both backends).

Random sequences of batches drawn from a small id pool, with two possible contents per id
and some invalid items, are sent to a store and to a tiny reference model (a dict). After
every batch the outcome (accepted with these counts / rejected as invalid / rejected as
conflicting) and the stored contents must match the model.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from npo.domain import ActionSpace
from npo.errors import ConflictError, ValidationFailed
from npo.store import open_store

A = ActionSpace(["a", "b"])
PROPENSITY = {0: 0.5, 1: 0.25}

item = st.tuples(st.integers(0, 7), st.integers(0, 1), st.booleans())  # id, variant, valid
batches = st.lists(st.lists(item, min_size=1, max_size=6), min_size=1, max_size=6)


def dec(i: int, variant: int, valid: bool) -> dict[str, Any]:
    return {
        "id": f"d{i}",
        "scenario_id": "s",
        "policy_version": "p1",
        "scores": [0.6, 0.4],
        "action": "a",
        "propensity": PROPENSITY[variant] if valid else 0.0,
        "timestamp": 1.7e9 + i,
    }


def expected(model: dict[int, int], batch: list[tuple[int, int, bool]]) -> Any:
    if not all(v for _, _, v in batch):
        return "invalid"
    seen: dict[int, int] = {}
    for i, var, _ in batch:
        if seen.setdefault(i, var) != var or model.get(i, var) != var:
            return "conflict"
    new = [i for i in seen if i not in model]
    return (len(new), len(batch) - len(new), seen)


def check(url: str, seq: list[list[tuple[int, int, bool]]]) -> None:
    model: dict[int, int] = {}
    with open_store(url, A) as store:
        for batch in seq:
            want = expected(model, batch)
            items = [dec(*x) for x in batch]
            if want == "invalid":
                with pytest.raises(ValidationFailed) as ei:
                    store.ingest_decisions(items)
                assert not isinstance(ei.value, ConflictError)
                bad = {k for k, (_, _, v) in enumerate(batch) if not v}
                assert bad <= {e.index for e in ei.value.errors}
            elif want == "conflict":
                with pytest.raises(ConflictError):
                    store.ingest_decisions(items)
            else:
                ins, dup, seen = want
                r = store.ingest_decisions(items)
                assert (r.inserted, r.duplicates) == (ins, dup)
                model.update(seen)
            da = store.decisions()
            got = dict(zip(da.decision_id.tolist(), da.propensity.tolist(), strict=True))
            assert got == {f"d{i}": PROPENSITY[v] for i, v in model.items()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seq=batches)
def test_ingestion_matches_model_sqlite(seq: list[list[tuple[int, int, bool]]]) -> None:
    with tempfile.TemporaryDirectory() as d:
        check(str(Path(d) / "p.db"), seq)


@pytest.mark.postgres
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(seq=batches)
def test_ingestion_matches_model_postgresql(
    postgres_server: Any, seq: list[list[tuple[int, int, bool]]]
) -> None:
    check(postgres_server.create_database(f"h_{uuid.uuid4().hex[:16]}"), seq)

"""PostgreSQL-only behaviour: several writers at once (the service runs several workers)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from npo.domain import ActionSpace
from npo.errors import ConflictError
from npo.store import open_store

pytestmark = pytest.mark.postgres
A = ActionSpace(["a", "b", "c"])


def dec(i: int, p: float = 0.5) -> dict[str, Any]:
    return {
        "id": f"d{i:05d}",
        "scenario_id": f"s{i}",
        "policy_version": "p1",
        "scores": [0.6, 0.3, 0.1],
        "action": "a",
        "propensity": p,
        "timestamp": 1.7e9 + i,
    }


def run_threads(fns: list[Callable[[], Any]]) -> list[Any]:
    out: list[Any] = [None] * len(fns)
    start = threading.Barrier(len(fns))

    def wrap(k: int) -> None:
        start.wait()
        try:
            out[k] = fns[k]()
        except Exception as e:  # collected and asserted on by the test
            out[k] = e

    ts = [threading.Thread(target=wrap, args=(k,)) for k in range(len(fns))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return out


def test_concurrent_overlapping_resends_store_each_event_once(fresh_postgres_url: str) -> None:
    open_store(fresh_postgres_url, A).close()
    stores = [open_store(fresh_postgres_url) for _ in range(3)]
    try:
        # three writers send overlapping ranges, in different orders, in batches of 200
        ranges = [range(0, 1200), range(600, 1800), range(1199, -1, -1)]

        def writer(s: Any, r: range) -> tuple[int, int]:
            ins = dup = 0
            items = [dec(i) for i in r]
            for b in range(0, len(items), 200):
                rep = s.ingest_decisions(items[b : b + 200])
                ins, dup = ins + rep.inserted, dup + rep.duplicates
            return ins, dup

        res = run_threads(
            [lambda s=s, r=r: writer(s, r) for s, r in zip(stores, ranges, strict=True)]
        )
        assert all(isinstance(x, tuple) for x in res), res
        assert sum(x[0] for x in res) == 1800
        assert sum(x[1] for x in res) == 1200 + 1200 + 1200 - 1800
        assert stores[0].counts()["decisions"] == 1800
        assert sorted(stores[1].decisions().decision_id) == [f"d{i:05d}" for i in range(1800)]
    finally:
        for s in stores:
            s.close()


def test_concurrent_conflicting_resends_are_rejected_not_dropped(
    fresh_postgres_url: str,
) -> None:
    open_store(fresh_postgres_url, A).close()
    stores = [open_store(fresh_postgres_url) for _ in range(2)]
    try:
        for rnd in range(5):
            ids = range(rnd * 100, rnd * 100 + 100)
            res = run_threads(
                [
                    lambda ids=ids: stores[0].ingest_decisions([dec(i, 0.5) for i in ids]),
                    lambda ids=ids: stores[1].ingest_decisions([dec(i, 0.25) for i in ids]),
                ]
            )
            errs = [x for x in res if isinstance(x, Exception)]
            oks = [x for x in res if not isinstance(x, Exception)]
            assert len(oks) == 1 and len(errs) == 1, res
            assert isinstance(errs[0], ConflictError)
            assert len(errs[0].errors) == 100
            assert {e.field for e in errs[0].errors} == {"propensity"}
            winner = 0.5 if res[0] is oks[0] else 0.25
            p = stores[0].decisions().propensity[rnd * 100 :]
            assert p.tolist() == [winner] * 100
    finally:
        for s in stores:
            s.close()


def test_concurrent_audit_appends_form_one_chain(fresh_postgres_url: str) -> None:
    open_store(fresh_postgres_url, A).close()
    stores = [open_store(fresh_postgres_url) for _ in range(3)]
    try:
        res = run_threads(
            [
                lambda s=s, k=k: [s.append_audit("w", {"w": k, "i": i}) for i in range(30)]
                for k, s in enumerate(stores)
            ]
        )
        assert all(isinstance(x, list) for x in res), res
        recs = stores[0].audit()
        assert [r.seq for r in recs] == list(range(1, 91))
        v = stores[2].verify_audit()
        assert v.ok and v.checked == 90, v.problems
    finally:
        for s in stores:
            s.close()

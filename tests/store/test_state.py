"""Units of work, the loop's state primitives (compare-and-set state, leases) and the
audited configuration, on both backends; concurrency with real processes."""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import time
import warnings
from typing import Any

import pytest

from npo.domain import ActionSpace
from npo.errors import LeaseLost, StateConflict, ValidationFailed
from npo.store import Store, open_store

A = ActionSpace(["a", "b"])


def dec(i: int, **kw: Any) -> dict[str, Any]:
    return {
        "id": f"d{i}",
        "scenario_id": f"s{i}",
        "policy_version": "p1",
        "scores": [0.6, 0.4],
        "action": "a",
        "propensity": 0.5,
        "timestamp": 1.7e9 + i,
        **kw,
    }


@pytest.fixture
def store(store_url: str) -> Any:
    with open_store(store_url, A) as s:
        yield s


# -- units of work ---------------------------------------------------------------------------
def test_a_unit_of_work_commits_together_or_not_at_all(store: Store) -> None:
    before = store.counts()
    with pytest.raises(RuntimeError, match="crash"), store.transaction():
        store.ingest_decisions([dec(1), dec(2)])
        store.append_audit("loop.step", {"n": 2})
        store.put_state("monitor", {"t": 2})
        store.put_config({"p_min": 0.05})
        raise RuntimeError("crash before the end of the step")
    assert store.counts() == before
    assert store.get_state("monitor") is None and store.get_config() is None
    assert store.verify_audit().ok
    with store.transaction():
        store.ingest_decisions([dec(1), dec(2)])
        store.append_audit("loop.step", {"n": 2})
        assert store.put_state("monitor", {"t": 2}) == 1
    assert store.counts()["decisions"] == 2 and store.counts()["audit"] == 1
    assert store.get_state("monitor").value == {"t": 2}  # type: ignore[union-attr]


def test_a_rejected_batch_inside_a_unit_of_work_rolls_back_only_itself(store: Store) -> None:
    with store.transaction():
        store.ingest_decisions([dec(1)])
        with pytest.raises(ValidationFailed):
            store.ingest_decisions([dec(2), dec(3, propensity=0.0)])
        store.ingest_decisions([dec(4)])
        with store.transaction():  # nested: joins the outer one
            store.put_state("k", 1)
    assert sorted(store.decisions().decision_id) == ["d1", "d4"]
    assert store.get_state("k").version == 1  # type: ignore[union-attr]


# -- compare-and-set state -----------------------------------------------------------------
def test_state_versions_and_compare_and_set(store: Store) -> None:
    assert store.get_state("cs") is None
    assert store.put_state("cs", {"lower": 0.1}, expect_version=0) == 1
    with pytest.raises(StateConflict, match="expected absent, found version 1"):
        store.put_state("cs", {"lower": 0.2}, expect_version=0)
    assert store.put_state("cs", {"lower": 0.2}, expect_version=1) == 2
    with pytest.raises(StateConflict, match="expected version 1, found version 2"):
        store.put_state("cs", {"lower": 0.3}, expect_version=1)
    assert store.put_state("cs", [1, 2.5, None, "x"]) == 3  # unconditional
    got = store.get_state("cs")
    assert got is not None and (got.version, got.value) == (3, [1, 2.5, None, "x"])
    with pytest.raises(ValidationFailed, match="payload"):
        store.put_state("cs", {"o": object()})
    with pytest.raises(ValidationFailed, match="NUL"):
        store.put_state("cs", "a\x00b")
    with pytest.raises(ValidationFailed, match="key"):
        store.put_state("", 1)
    assert store.get_state("cs").version == 3  # type: ignore[union-attr]


def _increment(url: str, n: int, start: Any, out: Any) -> None:
    """n increments of a counter by read + compare-and-set, retrying on conflicts."""
    conflicts = 0
    with open_store(url) as s:
        start.wait(60)
        for _ in range(n):
            while True:
                cur = s.get_state("counter")
                version = 0 if cur is None else cur.version
                value = 0 if cur is None else cur.value
                try:
                    s.put_state("counter", value + 1, expect_version=version)
                    break
                except StateConflict:
                    conflicts += 1
    out.put(conflicts)


def run_together(target: Any, args: list[tuple[Any, ...]]) -> list[Any]:
    """Run ``target(*a, start, out)`` in one process per ``a``, released at once; what
    each put on ``out``."""
    ctx = mp.get_context("spawn")
    out, start = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=target, args=(*a, start, out)) for a in args]
    for p in procs:
        p.start()
    time.sleep(0.5)
    start.set()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(120)
    assert all(p.exitcode == 0 for p in procs)
    return results


def test_compare_and_set_loses_no_update_across_processes(store_url: str) -> None:
    open_store(store_url, A).close()
    conflicts = sum(run_together(_increment, [(store_url, 40)] * 3))
    with open_store(store_url) as s:
        got = s.get_state("counter")
    assert got is not None and got.value == 120 and got.version == 120
    assert conflicts >= 0  # how often they raced (usually > 0)


# -- leases ----------------------------------------------------------------------------------
def test_lease_acquire_renew_release_and_expiry_by_the_database_clock(store: Store) -> None:
    a = store.acquire_lease("retrain", "worker-a", ttl_s=30)
    assert a is not None and a.holder == "worker-a"
    assert store.acquire_lease("retrain", "worker-b", ttl_s=30) is None
    again = store.acquire_lease("retrain", "worker-a", ttl_s=30)  # ours: extended
    assert again is not None and again.fence == a.fence
    assert store.renew_lease("retrain", "worker-a", ttl_s=0.3).fence == a.fence
    time.sleep(0.5)  # expired by the database's clock
    b = store.acquire_lease("retrain", "worker-b", ttl_s=30)
    assert b is not None and b.fence == a.fence + 1
    with pytest.raises(LeaseLost, match="worker-a"):
        store.renew_lease("retrain", "worker-a", ttl_s=30)
    assert not store.release_lease("retrain", "worker-a")
    assert store.release_lease("retrain", "worker-b")
    c = store.acquire_lease("retrain", "worker-a", ttl_s=30)
    assert c is not None and c.fence == b.fence + 1
    with pytest.raises(ValidationFailed, match="ttl_s"):
        store.acquire_lease("retrain", "worker-a", ttl_s=0)


def _hold(url: str, name: str, times: int, start: Any, out: Any) -> None:
    """Take the lease ``times`` times; while holding it, record (start, end, fence) with
    the system-wide monotonic clock, then release it and let the others try."""
    spans = []
    with open_store(url) as s:
        start.wait(60)
        deadline = time.monotonic() + 60
        while len(spans) < times and time.monotonic() < deadline:
            lease = s.acquire_lease("leader", name, ttl_s=30)
            if lease is None:
                time.sleep(0.001)
                continue
            t0 = time.monotonic()
            time.sleep(0.005)
            spans.append((t0, time.monotonic(), lease.fence))
            assert s.release_lease("leader", name)
            time.sleep(0.005)
    out.put((name, spans))


def test_leases_exclude_each_other_across_processes(store_url: str) -> None:
    open_store(store_url, A).close()
    names = [f"w{i}" for i in range(3)]
    held = run_together(_hold, [(store_url, n, 15) for n in names])
    spans = sorted((t0, t1, fence, name) for name, h in held for t0, t1, fence in h)
    assert {s[3] for s in spans} == set(names)  # every one held it in turn
    assert len(spans) == 45
    for (_s1, e1, f1, _), (s2, _e2, f2, _) in itertools.pairwise(spans):
        assert e1 <= s2, "two processes held the lease at the same time"
        assert f2 > f1  # every change of hands raised the fence


# -- configuration ----------------------------------------------------------------------------
def test_configuration_is_versioned_and_audited(store: Store) -> None:
    assert store.get_config() is None
    cfg = {"actions": ["a", "b"], "lambda": 0.15, "delta": 0.05, "p_min": 0.05}
    assert store.put_config(cfg, reason="initial") == 1
    assert store.put_config(dict(cfg), reason="same again") == 1  # identical: no new version
    assert store.put_config({**cfg, "lambda": 0.2}, reason="tighter") == 2
    assert store.get_config().config["lambda"] == 0.2  # type: ignore[union-attr]
    assert store.get_config(1).config == cfg  # type: ignore[union-attr]
    recs = store.audit(kind="config.changed")
    assert [(r.payload["version"], r.payload["reason"]) for r in recs] == [
        (1, "initial"),
        (2, "tighter"),
    ]
    assert json.loads(json.dumps(recs[0].payload["config"])) == cfg
    with pytest.raises(ValidationFailed, match="reason"):
        store.put_config(cfg, reason=" ")


def test_propensity_below_the_configured_p_min_is_stored_with_a_warning(store: Store) -> None:
    store.put_config({"p_min": 0.05})
    with pytest.warns(UserWarning, match=r"below the configured exploration floor p_min = 0.05"):
        rep = store.ingest_decisions([dec(1, propensity=0.01), dec(2, propensity=0.2)])
    assert rep.inserted == 2
    assert [(w.index, w.field, w.item_id) for w in rep.warnings] == [(0, "propensity", "d1")]
    assert rep.to_dict()["warnings"][0]["field"] == "propensity"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert store.ingest_decisions([dec(3, propensity=0.05)]).warnings == ()


def _create(url: str, start: Any, out: Any) -> None:
    start.wait(60)
    try:
        with open_store(url, A) as s:
            s.ingest_decisions([dec(1)])
        out.put("ok")
    except Exception as e:  # reported to the parent
        out.put(repr(e))


def test_processes_creating_one_store_at_once_agree(store_url: str) -> None:
    assert run_together(_create, [(store_url,)] * 3) == ["ok"] * 3
    with open_store(store_url) as s:
        assert s.counts()["decisions"] == 1 and s.actions == A


def test_a_name_added_by_another_process_is_found(store_url: str) -> None:
    """Workers share a store: a segment (policy, reviewer ...) named by one after the other
    read its names is decoded by re-reading them, not a KeyError (a 500 in the service)."""
    from npo.domain import ActionSpace
    from npo.store import open_store

    first = open_store(store_url, ActionSpace(("a", "b")))
    second = open_store(store_url)
    try:
        with first.transaction():
            (old,) = first._codes("segment", ["north"])
        seen = second._names_of("segment")
        assert seen[old] == "north"
        with first.transaction():
            (new,) = first._codes("segment", ["south"])
        assert second._names_of("segment")[new] == "south"
        assert second._names_of("segment").get(10**9, "-") == "-"
        with pytest.raises(KeyError):
            second._names_of("segment")[10**9]
    finally:
        first.close()
        second.close()

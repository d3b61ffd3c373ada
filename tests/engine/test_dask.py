"""The Dask engine on a local cluster of worker processes gives the in-process numbers.

One ``LocalCluster`` of three worker processes for the module; the exported history is cut
into many partitions so that every worker computes some. Against the store's report
(breakdowns), the in-process engine (tuning, validation: the tuner and the validator on
every row at once), and through the command line pointed at the cluster's scheduler.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

import engine_helpers as helpers
import pytest
from engine_helpers import COSTS, breakdown_matches_store, close
from typer.testing import CliRunner

from npo.cli.main import app
from npo.engine import Candidates, DaskEngine, Dataset, LocalEngine
from npo.engine import sweep as sw
from npo.tuning import ThresholdTuner
from npo.validation import PolicyValidator

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster() -> Any:
    from npo.engine.runners import start_cluster

    client = start_cluster(n_workers=3, threads_per_worker=1)
    try:
        yield client
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()


@pytest.fixture(scope="module")
def dask_engine(cluster: Any) -> Any:
    return DaskEngine(cluster)


def test_every_worker_takes_partitions(exported: Any, dask_engine: Any) -> None:
    _, out = exported
    data = Dataset.open(out, rows_per_partition=150)
    assert len(data.partitions()) >= 30
    pids = dask_engine.runner.map_reduce(data, (), lambda ev: {os.getpid()}, set.union)
    assert len(pids) == 3 and os.getpid() not in pids


@pytest.mark.parametrize(
    "flt",
    [{}, {"since": helpers.T0 + timedelta(hours=30), "until": helpers.T0 + timedelta(hours=70)}],
    ids=["all", "since-until"],
)
def test_breakdowns_equal_the_stores_report(
    exported: Any, dask_engine: Any, flt: dict[str, Any]
) -> None:
    store, out = exported
    breakdown_matches_store(dask_engine, Dataset.open(out, **flt), store, **flt)


def test_tuning_equals_the_tuner_on_every_row(exported: Any, dask_engine: Any) -> None:
    _, out = exported
    data = Dataset.open(out)
    for per, budget, seg in (
        ("global", 0.2, None),
        ("action", 0.05, None),
        ("segment", 0.25, {"eu": 0.2, "us": 0.4}),
        ("segment_action", 0.25, None),
    ):
        tuner = ThresholdTuner(per=per, deferral_budget=budget, segment_budgets=seg)  # type: ignore[arg-type]
        want = LocalEngine().tune(data, tuner, COSTS).to_dict()
        got = dask_engine.tune(data, tuner, COSTS).to_dict()
        assert got["thresholds"] == want["thresholds"]
        close(got, want, per)
        if per in ("global", "segment"):  # coarse bins: the refinement runs on the cluster too
            got = sw.tune_partitioned(dask_engine.runner, data, tuner, COSTS, n_bins=16).to_dict()
            assert got["thresholds"] == want["thresholds"]
            close(got, want, f"{per} 16 bins")


@pytest.mark.parametrize("p_min", [None, 0.05])
def test_validation_equals_the_validator_on_every_row(
    exported: Any, dask_engine: Any, p_min: float | None
) -> None:
    store, out = exported
    data = Dataset.open(out)
    pol = Candidates(store.get_policy("v2"), store.get_policy("v1"), store.get_thresholds("t1"))
    v = PolicyValidator(p_min=p_min, min_segment_n=30)
    got, s1 = dask_engine.validate(data, v, COSTS, pol)
    want, s2 = LocalEngine().validate(data, v, COSTS, pol)
    assert s1 == s2
    close(got.to_dict(), want.to_dict(), str(p_min))


def _cli(*args: str) -> dict[str, Any]:
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code in (0, 1), res.output
    return json.loads(res.stdout)


def test_commands_on_the_cluster_give_the_stores_answers(
    exported: Any, cluster: Any, tmp_path: Any
) -> None:
    """``npo report|tune|validate --data OUT --engine dask --scheduler ADDRESS`` against the
    same commands on the store (the validator's asymptotic test does not depend on the
    order of the reviews, so the store's order gives the same verdict)."""
    import sqlite3

    store, out = exported
    db = str(tmp_path / "copy.db")
    with sqlite3.connect(store.url) as src, sqlite3.connect(db) as dst:
        src.backup(dst)  # a copy to write the audit records into
    on = ["--data", str(out), "--engine", "dask", "--scheduler", cluster.scheduler.address]
    for by in ("segment", "reviewer"):
        a = _cli("report", "--by", by, *on)
        b = _cli("report", "--by", by, "--db", db)
        assert a.pop("engine") == "dask" and a.pop("data") == str(out)
        close(a, b, by)
    a = _cli("tune", "--per", "segment", "--budget", "0.3", *on)
    b = _cli("tune", "--per", "segment", "--budget", "0.3", "--db", db)
    close(a, b, "tune")
    a = _cli("validate", "v2", "--incumbent", "v1", "--db", db, *on)
    b = _cli("validate", "v2", "--incumbent", "v1", "--db", db)
    close(a, b, "validate")
    from npo.store import open_store

    with open_store(db) as s:
        records = s.audit(kind="policy.validation")
    assert [r.payload.get("engine") for r in records] == ["dask", None]


def test_risk_mode_on_dask_is_refused_naming_the_option(exported: Any, cluster: Any) -> None:
    _, out = exported
    res = CliRunner().invoke(
        app,
        [
            "tune",
            "--data",
            str(out),
            "--objective",
            "risk",
            "--p-min",
            "0.05",
            "--engine",
            "dask",
            "--scheduler",
            cluster.scheduler.address,
        ],
    )
    assert res.exit_code == 2
    assert "--objective" in res.stderr and "--engine local" in res.stderr

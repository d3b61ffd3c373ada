"""The monitor's history the loop persists for plotting (``store.monitor_history``): one
point per checkpoint that moved the monitor, written in the same unit of work (a failed
call writes none), kept across restarts, read back evenly thinned with every change of
state kept; on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import stream_world as world
from durability import open_loop, serve

from npo.domain import ActionSpace
from npo.errors import ValidationFailed
from npo.loop.checkpoint import KEY
from npo.store import MonitorPoint, Store, open_store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _point(seq: int, state: str = "ok", **kw: Any) -> MonitorPoint:
    d: dict[str, Any] = {
        "seq": seq,
        "at": (T0 + timedelta(seconds=seq)).isoformat(),
        "n_labelled": 10 * seq,
        "estimate": 0.1,
        "lower": 0.05,
        "upper": 0.15,
        "lam": 0.2,
        "lam_crit": 0.4,
        "state": state,
        "policy_version": "v1",
    }
    d.update(kw)
    return MonitorPoint(**d)


@pytest.fixture
def store(store_url: str) -> Any:
    with open_store(store_url, ActionSpace(world.ACTIONS)) as s:
        yield s


def test_history_is_thinned_evenly_keeping_every_change_of_state(store: Store) -> None:
    # 1,000 points; the state changes at 5 of them (first point, 301, 302, 700, 999)
    states = {i: "override" if 700 <= i < 999 else "ok" for i in range(1, 1001)}
    states[301] = "retrain"
    changes = [1, 301, 302, 700, 999]
    with store.transaction():
        for i in range(1, 1001):
            store.append_monitor_point(_point(i, states[i], estimate=None if i == 5 else 0.1))
    full = store.monitor_history(2000)
    assert [p.seq for p in full] == list(range(1, 1001))
    assert full[4].estimate is None and full[0] == _point(1)  # round trip, times included
    h = store.monitor_history(50)
    seqs = [p.seq for p in h]
    assert len(h) <= 50 and seqs == sorted(seqs) and seqs[-1] == 1000  # newest last
    assert set(changes) <= set(seqs)
    # evenly: the points that are not changes are every stride-th one
    rest = [s for s in seqs if s not in changes and s != 1000]
    gaps = {b - a for a, b in itertools.pairwise(rest)}
    assert len(gaps) == 1 and len(rest) >= 40
    # more changes than fit: the newest changes
    assert [p.seq for p in store.monitor_history(3)] == [302, 700, 999]
    with pytest.raises(ValidationFailed, match="seq"):
        store.append_monitor_point(_point(1000))  # not after the last
    with pytest.raises(ValidationFailed, match="max_points"):
        store.monitor_history(0)


def _points(loop: Any) -> list[MonitorPoint]:
    return loop.store.monitor_history(100_000)


def test_one_point_per_checkpoint_that_moved_the_monitor_kept_across_restarts(
    store_url: str,
) -> None:
    stream = world.Stream(seed=1, steps=45)
    loop = open_loop(store_url, "a", slow=False)
    (first,) = _points(loop)  # opening: v1 serves, nothing observed yet
    assert (first.policy_version, first.n_labelled, first.estimate) == ("v1", 0, None)
    moved = 1
    for t in range(40):
        X, ids, ts = stream.scenarios(t)
        for what in ("decide", "receive"):
            before, n_before = loop._monitor_point(), len(_points(loop))
            if what == "decide":
                stream.answer(t, X, serve(loop, ("decide", X, ids, ts)))
            else:
                serve(loop, ("receive", stream.due(t)))
            new = _points(loop)[n_before:]
            if loop._monitor_point() != before:  # the monitor moved: exactly one point
                moved += 1
                assert [p.seq for p in new] == [loop.checkpoint.version]
                assert new[0] == _replace_time(loop._monitor_point(), new[0])
            else:
                assert new == []
        if t == 20:  # a failed receive writes no point (and changes nothing)
            history, version = _points(loop), loop.store.get_state(KEY).version
            with pytest.raises(ValidationFailed, match="decision_id"):
                loop.receive(
                    [
                        *stream.queue.get(t + 1, [])[:5],
                        {"id": "f-x", "decision_id": "d-nope", "reviewer_id": "r", "kind": "like"},
                    ]
                )
            assert _points(loop) == history and loop.store.get_state(KEY).version == version
            # a crash after the point was written, inside the unit: all of it rolls back
            write = loop.checkpoint._on_change

            def crash(version: int, write: Any = write) -> None:
                write(version)
                raise RuntimeError("killed after the point was written")

            loop.checkpoint._on_change = crash
            stored, status = loop.store.counts(), loop.status().to_dict()
            with pytest.raises(RuntimeError, match="killed"):
                loop.receive(stream.queue.get(t + 1, []))  # re-sent at t + 1 below
            loop.checkpoint._on_change = write
            assert _points(loop) == history and loop.store.counts() == stored
            assert loop.status().to_dict() == status  # the loop reloads what is stored
    history = _points(loop)
    assert len(history) == moved > 20
    states = [p.state for p in history]
    assert "override" in states and states[0] == "ok"  # the change drove OVERRIDE
    assert all(p.lam == 0.2 and p.lam_crit == 0.4 for p in history)
    assert [p.n_labelled for p in history] == sorted(p.n_labelled for p in history)
    band = [p for p in history if p.estimate is not None]
    assert band and all(p.lower <= p.estimate <= p.upper for p in band)  # type: ignore[operator]
    assert all(math.isfinite(p.upper) for p in band)  # type: ignore[arg-type]
    loop.store.close()
    again = open_loop(store_url, "b", slow=False)  # a restart
    assert _points(again) == history
    X, ids, ts = stream.scenarios(40)
    serve(again, ("decide", X, ids, ts))
    again.receive(stream.rest())
    after = _points(again)
    assert after[: len(history)] == history and after[-1].seq > history[-1].seq
    again.store.close()


def _replace_time(p: MonitorPoint, stored: MonitorPoint) -> MonitorPoint:
    from dataclasses import replace

    return replace(p, seq=stored.seq, at=stored.at)


def test_a_store_made_before_the_table_gets_it_when_opened(tmp_path: Any) -> None:
    db = str(tmp_path / "npo.db")
    open_store(db, ActionSpace(world.ACTIONS)).close()
    import sqlite3

    with sqlite3.connect(db) as c:
        c.execute("DROP TABLE monitor_points")
    with open_store(db) as s:
        assert s.monitor_history() == []
        s.append_monitor_point(_point(1))
        assert [p.seq for p in s.monitor_history()] == [1]

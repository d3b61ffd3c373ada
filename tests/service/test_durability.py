"""What a live system relies on: acknowledged events survive SIGKILL and SIGTERM; several
workers never double count; a restarted (or shared) loop ends where an uninterrupted one
would. Real servers on 127.0.0.1, real SQLite / PostgreSQL stores."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from server import Server, client, prepare, scenarios

from npo.store import open_store
from npo.store.lookup import existing_ids


class Load:
    """A client that decides batches and answers the deferred / sampled ones, recording
    every acknowledged decision and feedback id. It retries a failed request until the
    server answers (idempotent by id), so it can run across a crash and a restart."""

    def __init__(self, server: Server, token: str, prefix: str, batches: int, size: int = 20):
        self.server, self.token, self.prefix = server, token, prefix
        self.batches, self.size = batches, size
        self.acked_decisions: list[str] = []
        self.acked_feedback: list[str] = []
        self.errors: list[str] = []

    def _post(self, path: str, body: dict[str, Any], stop: threading.Event | None) -> Any:
        give_up = time.monotonic() + 120  # a server that stops answering fails the test
        while True:
            if time.monotonic() > give_up:
                self.errors.append(f"no answer to {path} within 120 s")
                return None
            try:
                with client(self.server, self.token) as c:
                    r = c.post(path, json=body)
                if r.status_code == 200:
                    return r.json()
                self.errors.append(f"{r.status_code} {r.text[:200]}")
                return None
            except httpx.TransportError:
                if stop is not None and stop.is_set():
                    return None
                time.sleep(0.05)

    def run(self, start: int = 0, stop: threading.Event | None = None) -> int:
        """Batches ``start..``; returns the next batch not acknowledged whole."""
        for b in range(start, self.batches):
            sc = scenarios(f"{self.prefix}{b}-", self.size, _rng(b))
            out = self._post("/v1/decide", {"scenarios": sc}, stop)
            if out is None:
                return b
            ds = out["decisions"]
            self.acked_decisions += [d["decision_id"] for d in ds]
            fb = [
                {"id": f"f-{d['decision_id']}", "decision_id": d["decision_id"],
                 "reviewer_id": "ana", "kind": "override", "action": "repair"}
                for d in ds if d["review"]
            ]  # fmt: skip
            if fb:
                if self._post("/v1/feedback", {"feedback": fb}, stop) is None:
                    return b
                self.acked_feedback += [f["id"] for f in fb]
        return self.batches


def _rng(b: int) -> Any:
    import numpy as np

    return np.random.default_rng(b)


def _all_stored(db: str, load: Load) -> None:
    with open_store(db) as store:
        assert existing_ids(store, "decisions", load.acked_decisions) == set(load.acked_decisions)
        assert existing_ids(store, "feedback", load.acked_feedback) == set(load.acked_feedback)


def _monitor(server: Server, token: str) -> dict[str, Any]:
    with client(server, token) as c:
        m = c.get("/v1/monitor").json()["monitor"]
    return {k: m.get(k) for k in ("state", "n", "estimate", "lower", "upper")}


def _crash_run(tmp: Path, stop_server: Callable[[Server], None], after_s: float) -> tuple:  # type: ignore[type-arg]
    db = str(tmp / "npo.db")
    cfg, tokens = prepare(db, tmp)
    srv = Server(db, cfg, log=tmp / "serve.log").start()
    load = Load(srv, tokens["admin"], "k", batches=10_000)
    stop = threading.Event()
    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(load.run, 0, stop)
        time.sleep(after_s)
        stop_server(srv)
        stop.set()
        reached = fut.result(60)
    return db, cfg, tokens, srv, load, reached


def test_sigkill_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    db, cfg, _, _, load, reached = _crash_run(tmp_path, Server.kill, 2.0)
    assert 0 < reached < load.batches and load.acked_decisions and not load.errors
    _all_stored(db, load)  # every acknowledged event is in the store after SIGKILL
    # restart; the client re-sends from the first batch not acknowledged whole
    srv2 = Server(db, cfg, log=tmp_path / "serve.log").start()
    try:
        load.server, load.batches = srv2, reached + 5
        assert load.run(reached) == load.batches and not load.errors, load.errors
        _all_stored(db, load)
        with open_store(db) as store:
            assert store.counts()["decisions"] == len(set(load.acked_decisions))
            assert store.verify_audit().ok
    finally:
        srv2.kill()


def test_sigterm_under_load_answers_in_flight_requests(tmp_path: Path) -> None:
    db = str(tmp_path / "npo.db")
    cfg, tokens = prepare(db, tmp_path)
    srv = Server(db, cfg, log=tmp_path / "serve.log").start()
    loads = [Load(srv, tokens["admin"], f"t{i}-", batches=10_000) for i in range(4)]
    stop = threading.Event()
    with ThreadPoolExecutor(4) as ex:
        futs = [ex.submit(ld.run, 0, stop) for ld in loads]
        time.sleep(1.5)
        code = srv.stop()
        stop.set()
        for f in futs:
            f.result(60)
    # uvicorn re-raises the signal after its graceful shutdown: -SIGTERM, not a crash
    assert code in (0, -15), srv.tail()
    assert "Traceback" not in srv.tail()
    for ld in loads:
        assert ld.acked_decisions and not ld.errors
        _all_stored(db, ld)


def test_restart_after_sigkill_ends_where_an_uninterrupted_run_ends(tmp_path: Path) -> None:
    """Kill -9 mid-run, restart, finish: the monitor state equals that of a run that was
    never interrupted (same requests, same order)."""
    batches = 40
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    # uninterrupted
    db_a = str(tmp_path / "a" / "npo.db")
    cfg_a, tok_a = prepare(db_a, tmp_path / "a")
    srv = Server(db_a, cfg_a).start()
    try:
        ref = Load(srv, tok_a["admin"], "u", batches)
        assert ref.run() == batches
        expected = _monitor(srv, tok_a["admin"])
    finally:
        srv.kill()
    # killed half-way, restarted
    db_b = str(tmp_path / "b" / "npo.db")
    cfg_b, tok_b = prepare(db_b, tmp_path / "b")
    srv = Server(db_b, cfg_b).start()
    load = Load(srv, tok_b["admin"], "u", batches // 2)
    assert load.run(0) == batches // 2
    srv.kill()  # SIGKILL between two requests of the same sequence
    srv = Server(db_b, cfg_b).start()
    try:
        load.server, load.batches = srv, batches
        assert load.run(batches // 2) == batches
        got = _monitor(srv, tok_b["admin"])
    finally:
        srv.kill()
    assert got == expected


def test_workers_never_double_count(postgres_server: Any, tmp_path: Path) -> None:
    """The same feedback batch sent at once through several connections to two workers:
    stored once, counted once (responses' ``new`` and the metrics)."""
    db = postgres_server.create_database(f"w_{uuid.uuid4().hex[:12]}")
    cfg, tokens = prepare(db, tmp_path)
    srv = Server(db, cfg, workers=2, log=tmp_path / "serve.log").start()
    try:
        with client(srv, tokens["admin"]) as c:
            low = [{"id": f"dup-{i}", "features": [0.0, 0.1]} for i in range(200)]
            ds = c.post("/v1/decide", json={"scenarios": low}).json()["decisions"]
        fb = [{"id": f"f-{d['decision_id']}", "decision_id": d["decision_id"],
               "kind": "override", "action": "reboot"} for d in ds]  # fmt: skip

        def send(_: int) -> int:
            with client(srv, tokens["reviewer"]) as c:
                r = c.post("/v1/feedback", json={"feedback": fb})
                assert r.status_code == 200, r.text
                return int(r.json()["new"])

        with ThreadPoolExecutor(8) as ex:
            news = list(ex.map(send, range(16)))
        assert sum(news) == len(fb)
        with open_store(db) as store:
            assert store.counts()["feedback"] == len(fb)
            assert store.summary().n_feedback == len(fb)
        import re

        text = httpx.get(srv.url + "/metrics").text
        total = sum(
            float(v) for v in re.findall(r"^npo_feedback_total\{[^}]*\} (\S+)$", text, re.M)
        )
        assert total == len(fb)
    finally:
        srv.kill()


def test_workers_share_one_monitor(postgres_server: Any, tmp_path: Path) -> None:
    """Several workers on one PostgreSQL store, four clients at once: every worker reports
    the one monitor of the store, which counted every decision and every labelled decision
    exactly once (against the store's own tables), and equals the monitor of the same
    requests sent one after the other to a single worker."""
    batches = 8
    db = postgres_server.create_database(f"w_{uuid.uuid4().hex[:12]}")
    cfg, tokens = prepare(db, tmp_path)
    srv = Server(db, cfg, workers=3, log=tmp_path / "serve.log").start()
    try:
        loads = [Load(srv, tokens["admin"], f"p{i}-", batches) for i in range(4)]
        with ThreadPoolExecutor(4) as ex:
            assert all(r == batches for r in ex.map(lambda ld: ld.run(), loads))
        # a re-send of every feedback batch through any worker counts nothing again
        for ld in loads:
            ld.run()
        statuses = []
        for _ in range(12):
            with client(srv, tokens["admin"]) as c:
                statuses.append(c.get("/v1/monitor").json())
    finally:
        srv.kill()
    assert len({st["worker"] for st in statuses}) > 1  # several workers answered
    assert len({str(st["monitor"]) + str(st["counts"]) for st in statuses}) == 1
    counts = statuses[0]["counts"]
    decided = {d for ld in loads for d in ld.acked_decisions}
    labelled = {f.removeprefix("f-") for ld in loads for f in ld.acked_feedback}
    with open_store(db) as store:
        assert store.counts()["decisions"] == len(decided)
        assert existing_ids(store, "feedback", [f"f-{d}" for d in labelled]) == {
            f"f-{d}" for d in labelled
        }
    assert counts["loop.decisions"] == len(decided)
    assert counts["loop.labelled"] == len(labelled)  # each labelled decision once
    assert counts["loop.feedback"] == counts["feedback"] == len(labelled)
    # the same requests, one client after the other, one worker: the same counts
    db1 = postgres_server.create_database(f"w_{uuid.uuid4().hex[:12]}")
    (tmp_path / "one").mkdir()
    cfg1, tok1 = prepare(db1, tmp_path / "one")
    one = Server(db1, cfg1, workers=1, log=tmp_path / "serve1.log").start()
    try:
        for i in range(4):
            assert Load(one, tok1["admin"], f"p{i}-", batches).run() == batches
        with client(one, tok1["admin"]) as c:
            single = c.get("/v1/monitor").json()
    finally:
        one.kill()
    same = ("loop.decisions", "loop.feedback", "loop.labelled")
    assert {k: single["counts"][k] for k in same} == {k: counts[k] for k in same}

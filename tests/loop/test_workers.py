"""Several workers on PostgreSQL: four processes share one stream -- each decision batch
goes to a random worker, feedback to random workers (some of it re-sent to another one)
at the same time -- and the worker holding the retraining lease is killed with SIGKILL in
the middle of training. Then:

- every labelled decision entered the monitor exactly once: the loop's counts, the loss
  monitor's observations (one per decision), the abstention monitor's (one per decision
  with feedback) and the stream's labelled reviews equal what the store holds;
- every retraining attempt has exactly one candidate, and the killed worker's attempt
  was completed by another worker (after its lease expired)."""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import stream_world as world
from durability import LoopProcess

from npo.loop.checkpoint import KEY
from npo.store import open_store

pytestmark = pytest.mark.postgres

STEPS, PER_STEP, WORKERS = 60, 40, 4
CONFIG = {
    # everything is answered: the monitor waits for every review (no non-response)
    "monitor": {"window": None, "horizon": 4000, "feedback_wait": 100_000},
    # scheduled attempts; a margin no candidate can meet, so the monitor never restarts
    "retrain": {
        "min_feedback": 200,
        "min_steps_between": 5,
        "max_per_day": 1000,
        "every_labels": 400,
        "margin": 0.9,
        "lease_s": 3.0,
    },
}


def _checkpoint(store: Any) -> dict[str, Any] | None:
    found = store.get_state(KEY)
    return None if found is None else json.loads(found.value["doc"])


def test_four_workers_count_each_label_once_and_take_over_retraining(
    fresh_postgres_url: str,
) -> None:
    url = fresh_postgres_url
    workers = [
        LoopProcess(url, f"w{i}", rename=True, config=CONFIG, pause=1.0) for i in range(WORKERS)
    ]
    by_name = {w.name: w for w in workers}
    rnd = random.Random(11)
    stream = world.Stream(seed=11, steps=STEPS, per_step=PER_STEP, change=10**9, delay=3)
    sent: list[dict[str, Any]] = []
    killed: list[tuple[str, int]] = []
    stop = threading.Event()

    def killer() -> None:  # the lease holder, in the middle of training
        store = open_store(url)
        try:
            while not stop.is_set() and not killed:
                doc = _checkpoint(store)
                pending = doc and doc["retraining"]["pending"]
                if pending and pending["status"] == "training":
                    holder = pending["holder"]
                    time.sleep(0.3)  # well inside the 1 s of training
                    if by_name[holder.split(".")[0]].kill():
                        killed.append((holder, int(pending["number"])))
                time.sleep(0.005)
        finally:
            store.close()

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    pool = ThreadPoolExecutor(WORKERS + 2)
    due: list[dict[str, Any]] = []
    try:
        for t in range(STEPS):
            X, ids, ts = stream.scenarios(t)
            decide = pool.submit(rnd.choice(workers).call, ("decide", X, ids, ts))
            chunks = [due[: len(due) // 2], due[len(due) // 2 :]]
            if sent and rnd.random() < 0.3:  # a client re-sends earlier feedback elsewhere
                chunks.append(rnd.sample(sent, min(10, len(sent))))
            sent += due
            calls = [pool.submit(rnd.choice(workers).call, ("receive", c)) for c in chunks]
            stream.answer(t, X, decide.result())
            for c in calls:
                c.result()
            due = stream.due(t)
        due += stream.rest()
        sent += due
        rnd.choice(workers).call(("receive", due))
        # the killed holder's lease expires; whoever is called next finishes its attempt
        deadline = time.time() + 60
        store = open_store(url)
        while time.time() < deadline:
            doc = _checkpoint(store)
            if doc and doc["retraining"]["pending"] is None and killed:
                break
            rnd.choice(workers).call(("receive", []))
            time.sleep(0.2)
        statuses = [w.call(("status",)) for w in workers]
    finally:
        stop.set()
        thread.join(10)
        for w in workers:
            w.stop()
        pool.shutdown()
    assert killed, "the lease holder was never caught training"
    doc = _checkpoint(store)
    assert doc is not None and doc["retraining"]["pending"] is None
    # ---- each labelled decision once, whichever worker got its feedback
    lab = store.labelled()
    first: dict[str, int] = {}
    for d, k in zip(lab.decision_id.tolist(), lab.kind.tolist(), strict=True):
        first.setdefault(d, k)  # rows in store order: the first feedback of each decision
    counts = statuses[0]["counts"]
    assert all(s["counts"] == counts for s in statuses)
    ids = {r["id"] for r in sent}
    assert counts["feedback"] == len(ids) == store.counts()["feedback"] == len(lab)
    assert counts["decisions"] == STEPS * PER_STEP == store.counts()["decisions"]
    assert counts["labelled"] == sum(k != 2 for k in first.values())
    assert counts["abstained"] == sum(k == 2 for k in first.values())
    ev = statuses[0]["monitor"]["evidence"]
    assert ev["observations"] == STEPS * PER_STEP  # one term per decision, none twice
    stream_state = doc["observations"]["stream"]
    from npo.estimation.serial import unpack_array

    assert unpack_array(stream_state["labelled"]).sum() == counts["labelled"]
    assert unpack_array(stream_state["resolved"]).sum() == counts["review_requests"]
    abst = doc["monitors"]["abstention"]["cs"]["plugin"]["t"]
    assert abst == len(first)
    # the monitor's history, written by whichever worker moved it, one point per checkpoint
    history = store.monitor_history(10**9)
    assert [p.seq for p in history] == sorted({p.seq for p in history})
    assert history[-1].n_labelled == counts["labelled"]
    # ---- one candidate per attempt; the killed worker's attempt finished elsewhere
    attempts = doc["retraining"]["attempts"]
    # at least the killed one; how many more fall inside the stream depends on how long the
    # takeover waited for the lease to expire (timing, not a property of the loop)
    assert attempts >= 1
    notes = [p.note or "" for p in store.policies() if p.version != "v1"]
    assert sorted(notes) == sorted({n for n in notes})  # no attempt trained twice
    assert sorted(int(n.rsplit("attempt ", 1)[1].rstrip(")")) for n in notes) == list(
        range(1, attempts + 1)
    )
    verdicts = store.audit(kind="policy.validation")
    assert len(verdicts) == attempts
    done = [r.payload for r in store.audit(kind="loop.held")]
    done += [r.payload for r in store.audit(kind="loop.rejected")]
    assert len(done) == attempts
    candidates = {r.payload["attempt"]: r.payload for r in store.audit(kind="loop.candidate")}
    assert sorted(candidates) == list(range(1, attempts + 1))
    victim, number = killed[0]
    assert candidates[number]["worker"] != victim  # trained by the worker that took over
    finished = [p for p in done if p["candidate"] == candidates[number]["version"]]
    assert len(finished) == 1 and finished[0]["worker"] != victim
    store.close()

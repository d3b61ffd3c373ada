"""The service's store-side tables on every backend: the review queue (claims that
expire, agreement sampling, no over-claiming by concurrent processes) and tokens
(hashed, revocable, names never reused, audited); a store created before the tables
existed gets them on first use."""

from __future__ import annotations

import multiprocessing as mp
import time
from typing import Any

import pytest

from npo.errors import ConflictError, NotFound, ValidationFailed
from npo.store import open_store, queue
from npo.store.queue import wants_two
from npo.store.tokens import authenticate, create_token, list_tokens, revoke_token


def _decide(store: Any, n: int, prefix: str = "d") -> list[str]:
    ids = [f"{prefix}{i}" for i in range(n)]
    store.ingest_decisions(
        [
            {
                "id": d,
                "scenario_id": f"s-{d}",
                "policy_version": "p",
                "scores": [0.4, 0.3, 0.3],
                "action": "DEFER",
                "propensity": 1.0,
                "review": True,
            }
            for d in ids
        ]
    )
    return ids


def test_claims_are_exclusive_and_expire(store: Any) -> None:
    ids = _decide(store, 10)
    assert queue.enqueue(store, ids) == 10
    assert queue.enqueue(store, ids) == 0  # idempotent
    a = [i.decision_id for i in queue.claim(store, "ana", limit=4, ttl_s=1.0)]
    b = [i.decision_id for i in queue.claim(store, "bo", limit=100, ttl_s=60.0)]
    assert a == ids[:4] and b == ids[4:]  # oldest first, nothing shared
    assert queue.claim(store, "cy", limit=100) == []  # everything is claimed
    assert [i.decision_id for i in queue.claim(store, "ana", limit=4, ttl_s=1.0)] == a  # own
    time.sleep(1.2)  # ana's claims expire (database clock)
    assert [i.decision_id for i in queue.claim(store, "cy", limit=100)] == a
    # answered decisions leave the queue; the answering reviewer never gets them again
    store.ingest_feedback([{"id": f"f{d}", "decision_id": d, "reviewer_id": "bo",
                            "kind": "abstain"} for d in b])  # fmt: skip
    assert queue.pending(store) == 4
    assert queue.claim(store, "bo", limit=100) == []
    assert queue.release(store, "cy", a[:2]) == 2
    assert [i.decision_id for i in queue.claim(store, "dan", limit=100)] == a[:2]


def test_agreement_sampling_hands_picked_items_to_two_reviewers(store: Any) -> None:
    ids = _decide(store, 400)
    queue.enqueue(store, ids, agreement=0.25)
    picked = {d for d in ids if wants_two(d, 0.25)}
    assert 60 < len(picked) < 140  # about a quarter
    a = queue.claim(store, "ana", limit=1000)
    b = queue.claim(store, "bo", limit=1000)
    assert {i.decision_id for i in a} == set(ids)
    assert {i.decision_id for i in b} == picked
    assert all(i.reviews_wanted == 2 for i in b)
    assert queue.claim(store, "cy", limit=1000) == []  # two reviews at most


def test_queue_input_errors_name_the_field(store: Any) -> None:
    for kw, field in (({"limit": 0}, "limit"), ({"ttl_s": 0.1}, "ttl_s")):
        with pytest.raises(ValidationFailed) as e:
            queue.claim(store, "ana", **kw)
        assert e.value.errors[0].field == field
    with pytest.raises(ValidationFailed):
        queue.claim(store, " ", limit=1)


def _claimer(url: str, who: str, out: Any) -> None:
    with open_store(url) as s:
        got = []
        for k in range(10):  # a new reviewer each time (one's own claims come back first)
            got += [i.decision_id for i in queue.claim(s, f"{who}.{k}", limit=7, ttl_s=600)]
        out.put((who, got))


def test_concurrent_processes_never_claim_the_same_item(store_url: str) -> None:
    from npo.domain import ActionSpace

    with open_store(store_url, ActionSpace(["reboot", "reimage", "repair"])) as s:
        ids = _decide(s, 120)
        queue.enqueue(s, ids)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_claimer, args=(store_url, f"r{i}", out)) for i in range(3)]
    for p in procs:
        p.start()
    got = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    claimed = [d for _, ds in got for d in ds]
    assert len(claimed) == len(set(claimed)) == 120


def test_tokens_are_hashed_revocable_and_audited(store: Any) -> None:
    secret, info = create_token(store, "ana", "reviewer", actor="test")
    assert secret.startswith("npo_") and len(secret) > 40
    assert authenticate(store, secret) == info
    assert authenticate(store, secret + "x") is None and authenticate(store, "nope") is None
    assert store._x("SELECT count(*) FROM tokens WHERE hash = ?", (secret,)).fetchone()[0] == 0
    with pytest.raises(ConflictError):
        create_token(store, "ana", "admin")
    with pytest.raises(ValidationFailed) as e:
        create_token(store, "bo", "root")
    assert e.value.errors[0].field == "role"
    revoked = revoke_token(store, "ana", actor="boss")
    assert not revoked.active and revoked.revoked_by == "boss"
    assert authenticate(store, secret) is None
    assert revoke_token(store, "ana") == revoked  # no-op
    with pytest.raises(NotFound):
        revoke_token(store, "nobody")
    with pytest.raises(ConflictError):  # a name is never reused
        create_token(store, "ana", "reviewer")
    assert [t.name for t in list_tokens(store)] == ["ana"]
    kinds = [r.kind for r in store.audit() if r.kind.startswith("token.")]
    assert kinds == ["token.created", "token.revoked"]
    with pytest.raises(Exception, match="append-only"), store.transaction():
        store._x("DELETE FROM tokens")


def test_a_store_without_the_service_tables_gets_them(store: Any) -> None:
    for t in ("tokens", "token_revocations", "review_claims", "review_queue"):
        store._x(f"DROP TABLE {t}{' CASCADE' if store.backend == 'postgresql' else ''}")
    store.__dict__.pop("_npo_additive", None)
    secret, _ = create_token(store, "ana", "admin")
    assert authenticate(store, secret) is not None
    ids = _decide(store, 2)
    assert queue.enqueue(store, ids) == 2

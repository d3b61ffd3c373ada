"""The review queue: decisions sent for review, handed to reviewers under expiring claims.

- :func:`enqueue` adds decisions that were sent for review with the
  number of reviews they want: 1, or 2 for the share ``agreement`` of them picked for
  agreement sampling (a hash of the decision id, so every process picks the same ones).
- :func:`claim` hands a reviewer up to ``limit`` queued decisions, oldest first, that the
  reviewer has not answered yet and that do not already have their wanted number of
  reviews counting live claims of other reviewers; each comes with a claim that expires
  after ``ttl_s`` seconds of the database's clock. So two reviewers never hold the same
  decision unless it wants two reviews; a claim not answered in time frees the decision.
- A decision leaves the queue once it has its wanted number of feedback events (any kind:
  an abstention is an answer too; it stays measured as an abstention).

The queue is a cache of the decisions and feedback tables plus the claims: losing it loses
no event. Claims are serialised by one lock, so concurrent reviewers never over-claim.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from npo.domain.rules import from_us, now_us
from npo.errors import ItemError, ValidationFailed
from npo.store.additive import ensure_tables, lock
from npo.store.schema import REVIEW_CLAIMS, REVIEW_QUEUE

_TABLES = (REVIEW_QUEUE, REVIEW_CLAIMS)
_PAGE = 500


@dataclass(frozen=True)
class QueueItem:
    """A decision handed to a reviewer, and the claim on it."""

    decision_id: str
    scenario_id: str
    action: str
    scores: tuple[float, ...]
    propensity: float
    segment: str
    timestamp: datetime
    features: tuple[float, ...] | None
    policy_version: str
    reviews_wanted: int
    reviews_received: int
    claim_expires_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision_id": self.decision_id,
            "scenario_id": self.scenario_id,
            "action": self.action,
            "scores": list(self.scores),
            "propensity": self.propensity,
            "segment": self.segment,
            "timestamp": self.timestamp.isoformat(),
            "features": None if self.features is None else list(self.features),
            "policy_version": self.policy_version,
            "reviews_wanted": self.reviews_wanted,
            "reviews_received": self.reviews_received,
            "claim_expires_at": self.claim_expires_at.isoformat(),
        }


def wants_two(decision_id: str, agreement: float) -> bool:
    """Whether agreement sampling picks ``decision_id`` (share ``agreement`` of ids)."""
    if agreement <= 0:
        return False
    h = int.from_bytes(hashlib.blake2b(decision_id.encode(), digest_size=8).digest(), "big")
    return h / 2**64 < agreement


def _bad(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(0, field, reason)], what="review queue")


def enqueue(store: Any, decision_ids: Sequence[str], *, agreement: float = 0.0) -> int:
    """Queue the stored decisions ``decision_ids`` (those sent for review; idempotent);
    the number of rows added."""
    if not 0.0 <= agreement <= 1.0:
        raise _bad("agreement", f"must be in [0, 1], got {agreement}")
    ids = list(dict.fromkeys(str(d) for d in decision_ids))
    if not ids:
        return 0
    ensure_tables(store, _TABLES)
    with store.transaction():
        rows = store._where_in("SELECT seq, id FROM decisions", "id", ids)
        if not rows:
            return 0
        t = now_us()
        new = [(int(s), i, 2 if wants_two(i, agreement) else 1, t) for s, i in rows]
        before = _count(store)
        store._xm(
            "INSERT INTO review_queue (decision_seq, decision_id, wanted, enqueued_us) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (decision_seq) DO NOTHING",
            new,
        )
        return _count(store) - before


def _count(store: Any) -> int:
    return int(store._x("SELECT count(*) FROM review_queue").fetchone()[0])


def pending(store: Any) -> int:
    """Queued decisions still waiting for reviews (whether claimed or not)."""
    ensure_tables(store, _TABLES)
    with store._read():
        return int(
            store._x(
                "SELECT count(*) FROM review_queue q WHERE q.wanted > "
                "(SELECT count(*) FROM feedback f WHERE f.decision_seq = q.decision_seq)"
            ).fetchone()[0]
        )


def claim(store: Any, reviewer: str, *, limit: int = 10, ttl_s: float = 600.0) -> list[QueueItem]:
    """Claim up to ``limit`` queued decisions for ``reviewer`` (module docstring). A
    reviewer asking again gets its own live claims back first (extended)."""
    if not isinstance(reviewer, str) or not reviewer.strip() or len(reviewer) > 200:
        raise _bad(
            "reviewer", f"must be a non-empty string of at most 200 characters, got {reviewer!r}"
        )
    if not 1 <= int(limit) <= 1000:
        raise _bad("limit", f"must be in 1..1000, got {limit}")
    if not 1.0 <= float(ttl_s) <= 86_400.0:
        raise _bad("ttl_s", f"must be in [1, 86400] seconds, got {ttl_s}")
    ensure_tables(store, _TABLES)
    now = store._dialect.now_us
    with store.transaction():
        lock(store, "queue")
        t_now = int(store._x(f"SELECT {now}").fetchone()[0])
        store._x("DELETE FROM review_claims WHERE expires_us <= ?", (t_now,))
        rcode = store._code_of("reviewer", reviewer)
        rcode = -1 if rcode is None else rcode
        chosen: list[tuple[int, int, int]] = []  # (seq, wanted, received)
        done: list[int] = []
        after = -1
        while len(chosen) < limit:
            rows = store._x(
                "SELECT q.decision_seq, q.wanted, "
                "(SELECT count(*) FROM feedback f WHERE f.decision_seq = q.decision_seq), "
                "(SELECT count(*) FROM feedback f WHERE f.decision_seq = q.decision_seq "
                " AND f.reviewer = ?), "
                "(SELECT count(*) FROM review_claims c WHERE c.decision_seq = q.decision_seq "
                " AND c.reviewer <> ?), "
                "(SELECT count(*) FROM review_claims c WHERE c.decision_seq = q.decision_seq "
                " AND c.reviewer = ?) "
                "FROM review_queue q WHERE q.decision_seq > ? "
                f"ORDER BY q.decision_seq LIMIT {_PAGE}",
                (rcode, reviewer, reviewer, after),
            ).fetchall()
            if not rows:
                break
            for seq, wanted, received, mine, others, held in rows:
                if received >= wanted:
                    done.append(int(seq))
                elif mine:
                    continue
                elif held or received + others < wanted:
                    chosen.append((int(seq), int(wanted), int(received)))
                    if len(chosen) == limit:
                        break
            after = int(rows[-1][0])
        for s in range(0, len(done), 500):
            part = done[s : s + 500]
            marks = ", ".join("?" * len(part))
            store._x(f"DELETE FROM review_queue WHERE decision_seq IN ({marks})", part)
            store._x(f"DELETE FROM review_claims WHERE decision_seq IN ({marks})", part)
        if not chosen:
            return []
        expires = t_now + round(float(ttl_s) * 1e6)
        store._xm(
            "INSERT INTO review_claims (decision_seq, reviewer, expires_us) VALUES (?, ?, ?) "
            "ON CONFLICT (decision_seq, reviewer) DO UPDATE SET expires_us = excluded.expires_us",
            [(s, reviewer, expires) for s, _, _ in chosen],
        )
        return _items(store, chosen, expires)


def release(store: Any, reviewer: str, decision_ids: Sequence[str]) -> int:
    """Give claims back before they expire; the number released."""
    ensure_tables(store, _TABLES)
    ids = list(dict.fromkeys(str(d) for d in decision_ids))
    if not ids:
        return 0
    with store.transaction():
        lock(store, "queue")
        seqs = [int(r[0]) for r in store._where_in("SELECT seq FROM decisions", "id", ids)]
        n = 0
        for s in range(0, len(seqs), 500):
            part = seqs[s : s + 500]
            marks = ", ".join("?" * len(part))
            n += store._x(
                f"DELETE FROM review_claims WHERE reviewer = ? AND decision_seq IN ({marks})",
                [reviewer, *part],
            ).rowcount
        return int(n)


def _items(store: Any, chosen: list[tuple[int, int, int]], expires: int) -> list[QueueItem]:
    info = {s: (w, r) for s, w, r in chosen}
    rows = store._where_in(
        "SELECT d.seq, d.id, d.scenario_id, d.action, d.scores, d.propensity, d.segment, d.ts, "
        "d.policy, s.features FROM decisions d LEFT JOIN scenarios s ON s.id = d.scenario_id "
        "WHERE 1 = 1",
        "d.seq",
        list(info),
    )
    seg, pol = store._names_of("segment"), store._names_of("policy")
    names = [*store.actions.actions]
    out = []
    for seq, did, sid, action, scores, prop, segment, ts, policy, feats in sorted(rows):
        w, r = info[int(seq)]
        out.append(
            QueueItem(
                decision_id=did,
                scenario_id=sid,
                action="DEFER" if int(action) < 0 else names[int(action)],
                scores=tuple(np.frombuffer(bytes(scores), dtype="<f8").tolist()),
                propensity=float(prop),
                segment=seg.get(int(segment), str(segment)),
                timestamp=from_us(int(ts)),
                features=None
                if feats is None
                else tuple(np.frombuffer(bytes(feats), "<f8").tolist()),
                policy_version=pol.get(int(policy), str(policy)),
                reviews_wanted=w,
                reviews_received=r,
                claim_expires_at=from_us(expires),
            )
        )
    return out

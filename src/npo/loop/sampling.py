"""Review sampling: which decisions people review, with what propensity, and what gives
way when people cannot keep up.

**Propensities.** A deferred decision is always reviewed (``p = 1``); an automated one with
``p = clip(rate + uncertainty_weight · (1 − s_max), p_min, 1)`` (:class:`~npo.policy.
ReviewSampler`'s rule): never below the exploration floor ``p_min``, whatever the capacity.

**The coin.** Decision ``i`` is sent for review iff ``u_i < p_i`` with
``u_i = H(seed, decision id) / 2^64`` (BLAKE2b, 64 bits): a uniform draw that depends on
nothing but the seed and the decision's id. Restarted processes and several workers
therefore draw the same coin for the same decision, and the coin is independent of the
scores and of everything the loop has seen (what makes ``E[R_i] = p_i`` given the past).

**When people cannot keep up** (:class:`ReviewCapacity`, ``review_capacity`` below a
batch's expected review requests), positivity is kept, never traded: every automated
decision keeps ``p ≥ p_min``, and the batch's deferrals give way -- the deferred decisions
the policy is most confident about (chosen from the scores only, so independent of the
coins) are served by the fallback policy, or outside OVERRIDE by the policy's own best
action (as a lower threshold would), each reviewed with its own propensity ``≥ p_min``,
until the expected requests fit. What still does not fit waits in the review queue.
Both are counted and audited (``review.overflow``), and the thresholds are retuned with a
deferral budget that leaves room for the floor's audits (:func:`floor_aware_budget`).

Without IPW (ablation ``ipw=False``) automated decisions are never reviewed and every
decision records propensity 1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from npo.domain import DEFER_CODE
from npo.policy import ReviewSampler

__all__ = ["CapacityFit", "ReviewCapacity", "ReviewSampling", "floor_aware_budget", "review_coins"]

_SCALE = float(2**64)


def review_coins(seed: int, decision_ids: Sequence[str]) -> np.ndarray:
    """``u_i = BLAKE2b-64(seed, id_i) / 2^64``: a uniform coin per decision id."""
    key = str(int(seed)).encode() + b"\x00"
    digest = hashlib.blake2b
    out = np.fromiter(
        (
            int.from_bytes(digest(key + d.encode(), digest_size=8).digest(), "big")
            for d in decision_ids
        ),
        dtype=np.float64,
        count=len(decision_ids),
    )
    return out / _SCALE


def floor_aware_budget(capacity_share: float, p_min: float) -> float:
    """The largest deferral rate ``D`` whose reviews fit a capacity of ``capacity_share``
    reviews per decision together with the floor's audits: ``D + p_min (1 − D) ≤ share``,
    i.e. ``D ≤ (share − p_min) / (1 − p_min)`` (0 when the audits alone fill it)."""
    if p_min >= 1.0:
        return 0.0
    return float(min(1.0, max(0.0, (capacity_share - p_min) / (1.0 - p_min))))


class ReviewSampling:
    """Propensities and coins (module docstring). ``ipw=False``: only deferred decisions
    are reviewed and every propensity is 1 (the "no exploration floor" ablation)."""

    def __init__(self, p_min: float, seed: int, *, ipw: bool = True) -> None:
        self.rule = ReviewSampler(p_min=p_min) if ipw else None
        self.p_min = float(p_min)
        self.seed = int(seed)

    @property
    def ipw(self) -> bool:
        return self.rule is not None

    def propensity(self, scores: np.ndarray, served: np.ndarray) -> np.ndarray:
        if self.rule is None:
            return np.ones(served.shape[0])
        return self.rule.propensity(scores, served)

    def sample(
        self, scores: np.ndarray, served: np.ndarray, decision_ids: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(review, propensity, coins)`` for a batch of served decisions."""
        if self.rule is None:
            return served == DEFER_CODE, np.ones(served.shape[0]), np.zeros(served.shape[0])
        p = self.rule.propensity(scores, served)
        u = review_coins(self.seed, decision_ids)
        return u < p, p, u


@dataclass(frozen=True)
class CapacityFit:
    """A batch after :meth:`ReviewCapacity.fit`: what is served, reviewed and with which
    propensity; how many deferrals were served instead (``converted``), how many review
    requests wait beyond the capacity (``overflow``) and the audit events to write."""

    served: np.ndarray
    review: np.ndarray
    propensity: np.ndarray
    converted: int
    overflow: int
    events: tuple[tuple[str, dict[str, Any]], ...] = ()


class ReviewCapacity:
    """Fits each batch's review requests to the capacity people have (module docstring).

    State (checkpointed): the last capacity share seen (reviews per decision), whether an
    overload is going on (its start and end are audited once), and whether a retune for
    the capacity is due (once per serving rule)."""

    def __init__(self, sampling: ReviewSampling) -> None:
        self.sampling = sampling
        self.share: float | None = None
        self.overloaded = False
        self.retune_due = False
        self.retuned_gen = -1

    def state_dict(self) -> dict[str, Any]:
        return {
            "share": self.share,
            "overloaded": self.overloaded,
            "retune_due": self.retune_due,
            "retuned_gen": self.retuned_gen,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.share = None if state["share"] is None else float(state["share"])
        self.overloaded = bool(state["overloaded"])
        self.retune_due = bool(state["retune_due"])
        self.retuned_gen = int(state["retuned_gen"])

    def fit(
        self,
        capacity: int,
        scores: np.ndarray,
        served: np.ndarray,
        review: np.ndarray,
        prop: np.ndarray,
        coins: np.ndarray,
        *,
        fallback_scores: np.ndarray | None,
        override: bool,
        retune: bool,
    ) -> CapacityFit:
        """Keep a batch's review requests within ``capacity`` without touching positivity:
        audits keep their propensities; if deferrals plus audits exceed the capacity, the
        most confident deferrals are served by the fallback's best action (or outside
        OVERRIDE by the policy's own), each reviewed with its own ``p ≥ p_min`` and its own
        coin, until the expected requests fit; the rest waits. ``retune``: ask for a
        capacity-aware retune when deferrals gave way."""
        n = served.shape[0]
        if n:
            self.share = max(0, capacity) / n
        deferred = served == DEFER_CODE
        requests = int(review.sum())
        if requests <= capacity or self.sampling.rule is None:
            events: tuple[tuple[str, dict[str, Any]], ...] = ()
            if self.overloaded and requests <= capacity:
                self.overloaded = False
                events = (("review.overflow.end", {"capacity": capacity, "requests": requests}),)
            return CapacityFit(served, review, prop, 0, 0, events)
        served, review, prop = served.copy(), review.copy(), prop.copy()
        if fallback_scores is not None:
            target = np.argmax(fallback_scores, axis=1).astype(served.dtype)
            by = "fallback policy"
        elif not override:
            target = np.argmax(scores, axis=1).astype(served.dtype)
            by = "policy's own action"
        else:
            target, by = None, "nobody: people decide in OVERRIDE"
        converted = 0
        if target is not None:
            cand = np.flatnonzero(deferred)
            order = cand[np.argsort(-scores[cand].max(axis=1), kind="stable")]
            p_auto = self.sampling.propensity(scores[order], target[order])
            kept = int(deferred.sum())
            audits = float(prop[~deferred].sum())  # expected audits of automated ones
            # convert the first k: (kept − k) + audits + Σ_{j<k} p_j ≤ capacity
            need = kept + audits + np.concatenate([[0.0], np.cumsum(p_auto - 1.0)])
            fits = np.flatnonzero(need <= capacity)
            converted = int(fits[0]) if fits.size else len(order)
            if converted:
                idx = order[:converted]
                served[idx] = target[idx]
                prop[idx] = p_auto[:converted]
                review[idx] = coins[idx] < prop[idx]
        overflow = max(0, int(review.sum()) - capacity)
        events = ()
        if not self.overloaded:
            self.overloaded = True
            events = (
                (
                    "review.overflow",
                    {
                        "why": "deferrals plus the exploration floor's audits exceed the review "
                        "capacity; audits keep p >= p_min",
                        "capacity": capacity,
                        "requests": requests,
                        "deferred": int(deferred.sum()),
                        "served_instead": converted,
                        "served_by": by,
                        "waiting": overflow,
                        "p_min": self.sampling.p_min,
                    },
                ),
            )
        if retune and converted:
            self.retune_due = True
        return CapacityFit(served, review, prop, converted, overflow, events)

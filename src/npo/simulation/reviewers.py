"""Simulated reviewers: who reviews, what they say, when it arrives, and the budget.

Behaviour per reviewed item with decision ``d`` (DEFER = -1) and true preferences
``p = P(· | x, t)``; every reviewer first draws a private preference ``y ~ p`` (``latent``):

* **honest** — abstains with probability ``a(m) = min(1, a0 + a1 (1 − m)^γ)``, ``m`` the
  margin between the two largest ``p`` (abstention grows near the decision boundary);
  otherwise reports ``y``, flipped with probability ``flip_rates[r]`` (reviewer ``r``'s own
  rate, ``flip_rate ± flip_rate_spread``) to a uniformly chosen other action. Report =
  ``like`` if it equals ``d`` else ``override`` with that label.
* **rubber-stamper** — ``like`` on every automated decision, never abstains; on a deferred
  decision (nothing to like) behaves as an honest reviewer.
* **adversarial** — reports the least-preferred action ``argmin p`` (or a fixed
  ``adversarial_target``), never abstains: systematically wrong.

Several reviewers per item (``reviewers_per_item``) are distinct, drawn uniformly.
Reviewer ids are shuffled so an id does not reveal the type (``kinds`` holds the truth).

**Budget** (``budget`` = items reviewed per step). Deferred decisions are always sent to a
person (propensity 1). Per step, deferred items are served first; if they alone exceed the
budget, a uniformly random ``budget`` of them get real reviews and the rest get load
abstentions (``overload``: kind abstain, no label, never agreement). The remaining
capacity ``cap = max(0, budget − n_deferred)`` goes to the ``m`` requested audits of
automated decisions, kept as a uniformly random subset of size ``min(m, cap)``.
Honest propensities: if each automated item ``i`` was requested independently with
probability ``p_i`` (Poisson sampling), then conditionally on the other items
``P(i reviewed) = p_i · min(1, cap / m)`` with ``m`` the realised number of requests
(including ``i``), so recording ``p_i' = p_i · min(1, cap / m)`` (``propensity`` of the
outcome) keeps ``E[R_i / p_i'] = 1``: the Horvitz–Thompson / Hájek estimators stay
unbiased. ``p_i' = 0`` flags items that could not be reviewed at all (budget used up by
deferrals): a blind spot the orchestrator must fix by deferring less.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from npo.simulation import _rng
from npo.simulation.config import DelaySpec, ReviewerSpec

HONEST, RUBBER_STAMPER, ADVERSARIAL = 0, 1, 2
KIND_NAMES = ("honest", "rubber-stamper", "adversarial")
LIKE, OVERRIDE, ABSTAIN = 0, 1, 2  # same codes as npo.domain.records
NO_LABEL = -1


@dataclass(frozen=True)
class FeedbackArrays:
    """Feedback records as columns. ``decision_index`` points into the arrays given to
    :meth:`ReviewerPool.review`; ``latent`` (the reviewer's private preference before noise,
    -1 for load abstentions) and ``overload`` are simulation ground truth, not observable."""

    decision_index: np.ndarray  # int64
    scenario_id: np.ndarray  # int64 (-1 when not given)
    reviewer: np.ndarray  # int32
    kind: np.ndarray  # int8: 0 like, 1 override, 2 abstain
    label: np.ndarray  # int16: action code, -1 = none
    step: np.ndarray  # int64: step of the decision
    arrival: np.ndarray  # int64: step at which the feedback arrives
    latent: np.ndarray  # int16
    overload: np.ndarray  # bool

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    @classmethod
    def empty(cls) -> FeedbackArrays:
        return cls(
            *(
                np.empty(0, dtype=t)
                for t in (
                    np.int64,
                    np.int64,
                    np.int32,
                    np.int8,
                    np.int16,
                    np.int64,
                    np.int64,
                    np.int16,
                    bool,
                )
            )
        )

    @classmethod
    def concat(cls, parts: list[FeedbackArrays]) -> FeedbackArrays:
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        return cls(
            **{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)}
        )

    def take(self, idx: np.ndarray) -> FeedbackArrays:
        return FeedbackArrays(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


@dataclass(frozen=True)
class ReviewOutcome:
    """Result of one :meth:`ReviewerPool.review` call.

    ``feedback``: the records (not yet delayed; see :class:`FeedbackQueue`). Per decision:
    ``reviewed`` (got real reviews), ``overloaded`` (deferred, got load abstentions),
    ``propensity`` (honest review probability after budget thinning), and ``dropped``
    (requested audits not served because of the budget).
    """

    feedback: FeedbackArrays
    reviewed: np.ndarray
    overloaded: np.ndarray
    propensity: np.ndarray
    dropped: int


def sample_delays(spec: DelaySpec, rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` delays (in steps, int64) from the delay distribution."""
    if spec.kind == "none":
        return np.zeros(n, dtype=np.int64)
    if spec.kind == "fixed":
        return np.full(n, round(spec.mean), dtype=np.int64)
    if spec.kind == "poisson":
        return rng.poisson(spec.mean, n).astype(np.int64)
    if spec.kind == "uniform":
        return rng.integers(spec.low, spec.high + 1, n).astype(np.int64)
    # geometric on {0, 1, ...} with mean m: numpy's geometric is on {1, 2, ...} with p
    return (rng.geometric(1.0 / (1.0 + spec.mean), n) - 1).astype(np.int64)


class ReviewerPool:
    """A seeded pool of simulated reviewers (see the module docstring).

    Parameters
    ----------
    spec : reviewer configuration.
    actions : the action names (K ≥ 2), needed to resolve ``adversarial_target``.
    seed : seed of every draw (the pool's own stream; reproducible for the same calls).
    """

    def __init__(
        self,
        spec: ReviewerSpec | None = None,
        *,
        actions: list[str] | tuple[str, ...],
        seed: int = 0,
    ) -> None:
        self.spec = spec = spec or ReviewerSpec()
        self.actions = tuple(actions)
        self.k = len(self.actions)
        if self.k < 2:
            raise ValueError(f"actions: needs at least 2, got {self.k}")
        self.target = -1
        if spec.adversarial_target is not None:
            if spec.adversarial_target not in self.actions:
                raise ValueError(
                    f"adversarial_target: unknown action {spec.adversarial_target!r}; "
                    f"actions are {list(self.actions)}"
                )
            self.target = self.actions.index(spec.adversarial_target)
        kinds = np.zeros(spec.n_reviewers, dtype=np.int8)
        kinds[: spec.rubber_stampers] = RUBBER_STAMPER
        kinds[spec.rubber_stampers : spec.rubber_stampers + spec.adversarial] = ADVERSARIAL
        self.rng = _rng.generator(seed, _rng.REVIEWERS)
        self.kinds = self.rng.permutation(kinds)
        self.kinds.setflags(write=False)
        lo, hi = spec.flip_rate - spec.flip_rate_spread, spec.flip_rate + spec.flip_rate_spread
        rates = (
            self.rng.uniform(lo, hi, spec.n_reviewers) if hi > lo else np.full(spec.n_reviewers, lo)
        )
        self.flip_rates = np.clip(rates, 0.0, 1.0)
        self.flip_rates.setflags(write=False)
        self.reviewer_ids = tuple(f"reviewer-{i:03d}" for i in range(spec.n_reviewers))

    @property
    def n_reviewers(self) -> int:
        return self.spec.n_reviewers

    def abstain_probability(self, probs: np.ndarray) -> np.ndarray:
        """Honest abstention probability ``a(m)`` for each row of ``P(y|x,t)``."""
        s = self.spec
        top2 = np.partition(probs, self.k - 2, axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
        return np.minimum(
            1.0, s.abstain_base + s.abstain_boundary * (1.0 - margin) ** s.abstain_sharpness
        )

    def expected_abstention(self, probs: np.ndarray, decisions: np.ndarray) -> np.ndarray:
        """Probability that one uniformly assigned reviewer abstains on each item (no
        budget overload): honest reviewers with ``a(m)``, rubber-stampers only on deferred
        items (where they act honestly), adversaries never."""
        a = self.abstain_probability(np.asarray(probs, dtype=np.float64))
        share_honest = float(np.mean(self.kinds == HONEST))
        share_rubber = float(np.mean(self.kinds == RUBBER_STAMPER))
        deferred = np.asarray(decisions) == -1
        return a * (share_honest + share_rubber * deferred)

    def _assign(self, m: int) -> np.ndarray:
        r, n = self.spec.reviewers_per_item, self.spec.n_reviewers
        if r == 1:
            return self.rng.integers(0, n, (m, 1))
        if r == n:
            return np.broadcast_to(np.arange(n), (m, n)).copy()
        return np.argpartition(self.rng.random((m, n)), r, axis=1)[:, :r]

    def review(
        self,
        probs: np.ndarray,
        decisions: np.ndarray,
        propensity: np.ndarray,
        requested: np.ndarray,
        *,
        step: np.ndarray | int,
        scenario_id: np.ndarray | None = None,
    ) -> ReviewOutcome:
        """Review the requested decisions.

        ``probs``: (n, K) true preferences of the items; ``decisions``: codes (DEFER = -1);
        ``propensity``: the probability with which each item was requested (1 for deferred);
        ``requested``: which items were sent (every deferred item must be); ``step``: the
        decision step of each item (budget applies per step).
        """
        probs = np.asarray(probs, dtype=np.float64)
        n = probs.shape[0]
        if probs.ndim != 2 or probs.shape[1] != self.k:
            raise ValueError(f"probs: shape must be (n, {self.k}), got {probs.shape}")
        decisions = np.asarray(decisions)
        propensity = np.asarray(propensity, dtype=np.float64)
        requested = np.asarray(requested, dtype=bool)
        steps = np.broadcast_to(np.asarray(step, dtype=np.int64), (n,))
        for name, a in (
            ("decisions", decisions),
            ("propensity", propensity),
            ("requested", requested),
        ):
            if a.shape != (n,):
                raise ValueError(f"{name}: shape must be ({n},), got {a.shape}")
        if n and (decisions.min() < -1 or decisions.max() >= self.k):
            raise ValueError(f"decisions: codes must lie in -1..{self.k - 1}")
        if np.any(~np.isfinite(propensity) | (propensity <= 0) | (propensity > 1)):
            raise ValueError("propensity: must lie in (0, 1]")
        deferred = decisions == -1
        if np.any(deferred & (~requested | (propensity != 1.0))):
            i = int(np.flatnonzero(deferred & (~requested | (propensity != 1.0)))[0])
            raise ValueError(
                f"requested/propensity: deferred decision at position {i} must be sent for "
                "review with propensity 1"
            )
        ids = (
            np.full(n, -1, dtype=np.int64)
            if scenario_id is None
            else np.asarray(scenario_id, np.int64)
        )

        kept = requested.copy()
        overload = np.zeros(n, dtype=bool)
        p_eff = propensity.copy()
        dropped = 0
        budget = self.spec.budget
        if budget is not None and n:
            cand = np.flatnonzero(requested)
            key = self.rng.random(cand.size)
            order = np.lexsort((key, ~deferred[cand], steps[cand]))
            c = cand[order]
            sc = steps[c]
            starts = np.r_[0, np.flatnonzero(np.diff(sc)) + 1]
            sizes = np.diff(np.r_[starts, c.size])
            group = np.repeat(np.arange(starts.size), sizes)
            rank = np.arange(c.size) - starts[group]
            over = rank >= budget
            kept[c[over]] = False
            dc = deferred[c]
            overload[c[over & dc]] = True
            dropped = int((over & ~dc).sum())
            n_def = np.bincount(group[dc], minlength=starts.size)
            m = np.bincount(group[~dc], minlength=starts.size)
            cap = np.maximum(0, budget - n_def)
            ratio = np.where(m > 0, np.minimum(1.0, cap / np.maximum(m, 1)), 1.0)
            p_eff[c[~dc]] *= ratio[group[~dc]]

        parts = []
        items = np.flatnonzero(kept)
        if items.size:
            parts.append(self._judge(items, probs, decisions, steps, ids))
        items = np.flatnonzero(overload)
        if items.size:
            parts.append(self._overload(items, steps, ids))
        fb = FeedbackArrays.concat(parts)
        if len(fb):
            order = np.argsort(fb.decision_index, kind="stable")
            fb = fb.take(order)
        return ReviewOutcome(fb, kept, overload, p_eff, dropped)

    def _judge(
        self,
        items: np.ndarray,
        probs: np.ndarray,
        decisions: np.ndarray,
        steps: np.ndarray,
        ids: np.ndarray,
    ) -> FeedbackArrays:
        k, rng = self.k, self.rng
        who = self._assign(items.size)
        r = who.shape[1]
        idx = np.repeat(items, r)
        rev = who.reshape(-1).astype(np.int32)
        kind_r = self.kinds[rev]
        p = probs[idx]
        d = decisions[idx]
        latent = _rng.categorical(rng, p)
        label = latent.copy()
        honest = (kind_r == HONEST) | ((kind_r == RUBBER_STAMPER) & (d == -1))
        u_flip, u_abs = rng.random(idx.size), rng.random(idx.size)
        shift = rng.integers(1, k, idx.size)
        flip = honest & (u_flip < self.flip_rates[rev])
        label[flip] = (latent[flip] + shift[flip]) % k
        abstain = honest & (u_abs < self.abstain_probability(p))
        label[abstain] = NO_LABEL
        stamp = (kind_r == RUBBER_STAMPER) & (d >= 0)
        label[stamp] = d[stamp]
        adv = kind_r == ADVERSARIAL
        if adv.any():
            label[adv] = self.target if self.target >= 0 else np.argmin(p[adv], axis=1)
        kind = np.where(label == NO_LABEL, ABSTAIN, np.where(label == d, LIKE, OVERRIDE))
        return self._records(idx, rev, kind, label, latent, steps, ids, False)

    def _overload(self, items: np.ndarray, steps: np.ndarray, ids: np.ndarray) -> FeedbackArrays:
        who = self._assign(items.size)
        idx = np.repeat(items, who.shape[1])
        none = np.full(idx.size, NO_LABEL)
        return self._records(
            idx,
            who.reshape(-1).astype(np.int32),
            np.full(idx.size, ABSTAIN),
            none,
            none,
            steps,
            ids,
            True,
        )

    def _records(
        self,
        idx: np.ndarray,
        rev: np.ndarray,
        kind: np.ndarray,
        label: np.ndarray,
        latent: np.ndarray,
        steps: np.ndarray,
        ids: np.ndarray,
        overload: bool,
    ) -> FeedbackArrays:
        st = steps[idx]
        return FeedbackArrays(
            decision_index=idx.astype(np.int64),
            scenario_id=ids[idx],
            reviewer=rev,
            kind=kind.astype(np.int8),
            label=label.astype(np.int16),
            step=st,
            arrival=st + sample_delays(self.spec.delay, self.rng, idx.size),
            latent=latent.astype(np.int16),
            overload=np.full(idx.size, overload),
        )

    def describe(self) -> list[dict[str, Any]]:
        """Ground truth per reviewer: id and type (for checking reviewer diagnostics)."""
        return [
            {"reviewer": rid, "kind": KIND_NAMES[int(k)]}
            for rid, k in zip(self.reviewer_ids, self.kinds, strict=True)
        ]


class FeedbackQueue:
    """Holds feedback until its arrival step: :meth:`push` records, :meth:`pop` those due."""

    def __init__(self) -> None:
        self._by_arrival: dict[int, list[FeedbackArrays]] = {}
        self._heap: list[int] = []
        self._pending = 0

    def __len__(self) -> int:
        return self._pending

    def push(self, feedback: FeedbackArrays) -> None:
        if not len(feedback):
            return
        order = np.argsort(feedback.arrival, kind="stable")
        fb = feedback.take(order)
        arr = fb.arrival
        cuts = np.flatnonzero(np.diff(arr)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, arr.size], strict=True):
            t = int(arr[lo])
            if t not in self._by_arrival:
                self._by_arrival[t] = []
                heapq.heappush(self._heap, t)
            self._by_arrival[t].append(fb.take(slice(lo, hi)))
        self._pending += len(fb)

    def pop(self, step: int) -> FeedbackArrays:
        """Every pending record with ``arrival ≤ step``, in arrival order."""
        out: list[FeedbackArrays] = []
        while self._heap and self._heap[0] <= step:
            t = heapq.heappop(self._heap)
            out.extend(self._by_arrival.pop(t))
        fb = FeedbackArrays.concat(out)
        self._pending -= len(fb)
        return fb

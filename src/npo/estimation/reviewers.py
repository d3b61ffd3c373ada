"""Reviewer statistics: per-reviewer rates, inter-rater agreement, flags and aggregation.

Inputs are parallel arrays of feedback events: ``item`` (the decision id reviewed, any
hashable codes), ``reviewer`` (integer codes into ``keys``), ``kind`` (0 like, 1
override, 2 abstain) and ``label`` (action code, ``-1`` = abstain).

- Rates: like / override / abstain per reviewer with Wilson intervals.
- Agreement on shared decisions: Cohen's κ per pair of reviewers, Fleiss' κ overall (items
  rated by different numbers of people are allowed: per-item agreement is
  ``P_i = Σ_j n_ij(n_ij − 1) / (n_i(n_i − 1))``), and each reviewer's agreement with the
  majority of the *other* reviewers of the same decision.
- Flags (Bonferroni over reviewers at level ``δ``):
  *rubber-stamping* when the Wilson lower bound of a reviewer's like-rate exceeds the
  pooled like-rate of everyone else by more than ``margin``; *discordant* when the Wilson
  upper bound of the reviewer's agreement with the others' majority is below the others'
  pooled agreement by more than ``margin``. Both assume reviewers see comparable decisions
  (random assignment).
- Aggregation of several reviewers per decision: majority vote, and Dawid–Skene EM
  (each reviewer has a confusion matrix ``π_r[k, l] = P(says l | truth k)``; the posterior
  over the true label weighs each reviewer by its estimated reliability).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from npo.errors import ItemError, ValidationFailed
from npo.estimation.intervals import wilson_interval

__all__ = [
    "DawidSkeneResult",
    "ReviewerStats",
    "agreement_terms",
    "cohen_kappa",
    "dawid_skene",
    "fleiss_item_terms",
    "fleiss_kappa",
    "fleiss_kappa_from_sums",
    "fleiss_sums",
    "majority_vote",
    "pairwise_kappa",
    "reviewer_stats",
    "reviewer_stats_from_counts",
]


def _bad(field: str, reason: str, index: int = 0) -> ValidationFailed:
    return ValidationFailed([ItemError(index=index, field=field, reason=reason)], what="input")


def _codes(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """(unique values, inverse codes)."""
    uniq, inv = np.unique(np.asarray(values), return_inverse=True)
    return uniq, inv.astype(np.intp)


# ---------------------------------------------------------------------------------------
# agreement coefficients
# ---------------------------------------------------------------------------------------
def cohen_kappa(a: np.ndarray, b: np.ndarray, n_classes: int | None = None) -> float:
    """Cohen's κ of two raters' labels on the same items: ``(p_o − p_e)/(1 − p_e)``."""
    a = np.asarray(a, dtype=np.intp)
    b = np.asarray(b, dtype=np.intp)
    if a.shape != b.shape:
        raise _bad("b", f"must have the same length as a ({a.size})")
    if a.size == 0:
        return math.nan
    k = int(n_classes or max(a.max(), b.max()) + 1)
    table = np.bincount(a * k + b, minlength=k * k).reshape(k, k) / a.size
    po = float(np.trace(table))
    pe = float(table.sum(1) @ table.sum(0))
    return 1.0 if pe >= 1.0 else (po - pe) / (1.0 - pe)


def fleiss_kappa(item: np.ndarray, label: np.ndarray, n_classes: int | None = None) -> float:
    """Fleiss' κ over items with ≥ 2 ratings (abstentions, ``label == -1``, dropped)."""
    return fleiss_kappa_from_sums(*fleiss_sums(item, label, n_classes))


def fleiss_sums(
    item: np.ndarray, label: np.ndarray, n_classes: int | None = None
) -> tuple[int, float, np.ndarray]:
    """The additive sums behind Fleiss' κ, over items with ≥ 2 (non-abstained) ratings:
    ``(number of items, Σ_i P_i, per-label totals Σ_i n_ij)`` with
    ``P_i = Σ_j n_ij (n_ij − 1) / (n_i (n_i − 1))``. Sums over disjoint sets of items add."""
    item = np.asarray(item)
    label = np.asarray(label, dtype=np.intp)
    keep = label >= 0
    if not keep.any():
        return 0, 0.0, np.zeros(int(n_classes or 0), dtype=np.int64)
    _, it = _codes(item[keep])
    lab = label[keep]
    k = int(n_classes or lab.max() + 1)
    _, counts, p_i = fleiss_item_terms(it, lab, k)
    return int(p_i.size), float(p_i.sum()), counts.sum(0).astype(np.int64)


def fleiss_kappa_from_sums(n_items: int, sum_p: float, label_totals: np.ndarray) -> float:
    """Fleiss' κ ``(P̄ − P_e)/(1 − P_e)`` from :func:`fleiss_sums` (nan without items)."""
    totals = np.asarray(label_totals, dtype=np.float64)
    if n_items == 0 or totals.sum() == 0:
        return math.nan
    p_bar = float(sum_p) / n_items
    p_j = totals / totals.sum()
    pe = float(np.dot(p_j, p_j))
    return 1.0 if pe >= 1.0 else (p_bar - pe) / (1.0 - pe)


def pairwise_kappa(
    item: np.ndarray,
    reviewer: np.ndarray,
    label: np.ndarray,
    *,
    n_classes: int | None = None,
    min_shared: int = 10,
) -> dict[tuple[Any, Any], tuple[float, int]]:
    """Cohen's κ for every pair of reviewers with ≥ ``min_shared`` shared (non-abstained)
    items: ``{(r1, r2): (kappa, n_shared)}`` (first label per reviewer and item)."""
    item, reviewer, label = np.asarray(item), np.asarray(reviewer), np.asarray(label)
    keep = label >= 0
    items, it = _codes(item[keep])
    revs, rv = _codes(reviewer[keep])
    lab = label[keep].astype(np.intp)
    k = int(n_classes or (lab.max() + 1 if lab.size else 2))
    mat = np.full((revs.size, items.size), -1, dtype=np.intp)
    mat[rv[::-1], it[::-1]] = lab[::-1]  # first label wins
    out: dict[tuple[Any, Any], tuple[float, int]] = {}
    for i in range(revs.size):
        for j in range(i + 1, revs.size):
            both = (mat[i] >= 0) & (mat[j] >= 0)
            n = int(both.sum())
            if n >= min_shared:
                out[(revs[i].item(), revs[j].item())] = (
                    cohen_kappa(mat[i, both], mat[j, both], k),
                    n,
                )
    return out


# ---------------------------------------------------------------------------------------
# aggregation
# ---------------------------------------------------------------------------------------
def majority_vote(
    item: np.ndarray, label: np.ndarray, n_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Majority label per item: ``(items, label, share)``; ties go to the lowest code,
    abstentions are ignored (items with only abstentions get label ``-1``)."""
    item = np.asarray(item)
    label = np.asarray(label, dtype=np.intp)
    items, it = _codes(item)
    k = int(n_classes or (label.max() + 1 if label.size else 2))
    keep = label >= 0
    counts = np.bincount(it[keep] * k + label[keep], minlength=items.size * k).reshape(-1, k)
    tot = counts.sum(1)
    lab = np.where(tot > 0, counts.argmax(1), -1)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(tot > 0, counts.max(1) / np.maximum(tot, 1), np.nan)
    return items, lab, share


@dataclass(frozen=True)
class DawidSkeneResult:
    """Dawid–Skene fit: ``posterior[i, k] = P(truth of items[i] = k | labels)``."""

    items: np.ndarray
    reviewers: np.ndarray
    posterior: np.ndarray
    confusion: np.ndarray  # (R, K, K): P(reviewer says l | truth k)
    priors: np.ndarray
    n_iter: int
    converged: bool

    @property
    def labels(self) -> np.ndarray:
        return self.posterior.argmax(axis=1)

    @property
    def reliability(self) -> np.ndarray:
        """Per reviewer: probability of giving the true label, ``Σ_k prior_k π_r[k, k]``."""
        return np.einsum("k,rkk->r", self.priors, self.confusion)


def dawid_skene(
    item: np.ndarray,
    reviewer: np.ndarray,
    label: np.ndarray,
    n_classes: int | None = None,
    *,
    max_iter: int = 200,
    tol: float = 1e-7,
    smoothing: float = 0.01,
) -> DawidSkeneResult:
    """Dawid & Skene (1979) EM for the true label of each item from several reviewers.

    Model: truth ``z_i ~ Cat(prior)``; reviewer ``r`` reports ``l`` with probability
    ``π_r[z_i, l]``, independently across reviewers given the truth. Initialised from the
    soft majority vote; ``smoothing`` is a Dirichlet pseudo-count on every confusion cell.
    Abstentions (``label == -1``) are ignored. Cost per iteration: ``O(n_labels · K)``.
    """
    item, reviewer, label = np.asarray(item), np.asarray(reviewer), np.asarray(label)
    if not (item.shape == reviewer.shape == label.shape):
        raise _bad("label", "item, reviewer and label must have the same length")
    keep = label >= 0
    items, it = _codes(item[keep])
    revs, rv = _codes(reviewer[keep])
    lab = label[keep].astype(np.intp)
    if lab.size == 0:
        raise _bad("label", "no non-abstained labels to aggregate")
    k = int(n_classes or lab.max() + 1)
    n_items, n_rev = items.size, revs.size
    # soft majority vote initialisation
    t = np.bincount(it * k + lab, minlength=n_items * k).reshape(n_items, k).astype(float)
    t /= t.sum(1, keepdims=True)
    prev = -np.inf
    converged = False
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007
        priors = (t.sum(0) + smoothing) / (n_items + k * smoothing)
        conf = np.full((n_rev, k, k), smoothing)
        for true_k in range(k):
            conf[:, true_k, :] += np.bincount(
                rv * k + lab, weights=t[it, true_k], minlength=n_rev * k
            ).reshape(n_rev, k)
        conf /= conf.sum(2, keepdims=True)
        log_conf = np.log(conf)
        log_t = np.tile(np.log(priors), (n_items, 1))
        for true_k in range(k):
            log_t[:, true_k] += np.bincount(
                it, weights=log_conf[rv, true_k, lab], minlength=n_items
            )
        mx = log_t.max(1, keepdims=True)
        t = np.exp(log_t - mx)
        norm = t.sum(1, keepdims=True)
        t /= norm
        loglik = float((np.log(norm) + mx).sum())
        if loglik - prev < tol * max(1.0, abs(loglik)):
            converged = True
            break
        prev = loglik
    return DawidSkeneResult(items, revs, t, conf, priors, n_iter, converged)


# ---------------------------------------------------------------------------------------
# per-reviewer statistics and flags
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReviewerStats:
    """One reviewer's behaviour. ``like_rate``/``override_rate`` are fractions of their
    non-abstained reviews, ``abstain_rate`` of all their reviews."""

    reviewer: Hashable
    n: int
    n_like: int
    n_override: int
    n_abstain: int
    like_rate: float
    override_rate: float
    abstain_rate: float
    like_rate_interval: tuple[float, float]
    n_shared: int
    agreement_with_peers: float
    peer_like_rate: float
    peer_agreement: float
    rubber_stamp: bool
    discordant: bool
    flags: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        def f(v: float) -> float | None:
            return None if not np.isfinite(v) else float(v)

        return {
            "reviewer": self.reviewer
            if isinstance(self.reviewer, str | int)
            else str(self.reviewer),
            "n": self.n,
            "n_like": self.n_like,
            "n_override": self.n_override,
            "n_abstain": self.n_abstain,
            "like_rate": f(self.like_rate),
            "override_rate": f(self.override_rate),
            "abstain_rate": f(self.abstain_rate),
            "like_rate_lower": f(self.like_rate_interval[0]),
            "like_rate_upper": f(self.like_rate_interval[1]),
            "n_shared": self.n_shared,
            "agreement_with_peers": f(self.agreement_with_peers),
            "peer_like_rate": f(self.peer_like_rate),
            "peer_agreement": f(self.peer_agreement),
            "flags": list(self.flags),
        }


def _label_counts(it: np.ndarray, lab: np.ndarray, k: int, weight: np.ndarray | None) -> np.ndarray:
    n_items = int(it.max()) + 1 if it.size else 0
    counts = np.bincount(it * k + lab, weights=weight, minlength=n_items * k)
    return np.rint(counts).astype(np.int64).reshape(n_items, k)


def agreement_terms(
    item: np.ndarray, label: np.ndarray, k: int, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per labelled review (``label ≥ 0``; ``item`` integer codes): ``valid`` -- the
    *other* reviews of the same item have a unique majority label -- and ``agree`` -- the
    review's label is that label. Additive over items: the sums per reviewer are the
    ``n_shared`` and agreement counts of :func:`reviewer_stats`. With ``weight``, row ``i``
    stands for ``weight[i]`` identical reviews (its terms then count that many times)."""
    it = np.asarray(item, dtype=np.intp)
    lab = np.asarray(label, dtype=np.intp)
    counts = _label_counts(it, lab, k, weight)
    others = counts[it].copy()
    others[np.arange(it.size), lab] -= 1  # leave the reviewer's own label out
    tot = others.sum(1)
    top = others.max(1) if it.size else np.zeros(0, dtype=np.intp)
    arg = others.argmax(1) if it.size else np.zeros(0, dtype=np.intp)
    unique_top = (others == top[:, None]).sum(1) == 1
    valid = (tot > 0) & unique_top
    return valid, valid & (arg == lab)


def fleiss_item_terms(
    item: np.ndarray, label: np.ndarray, k: int, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per item with ≥ 2 labelled reviews (``item`` integer codes, ``label ≥ 0``; ``weight``
    as in :func:`agreement_terms`): its code, its label counts ``n_ij`` (rows) and
    ``P_i = Σ_j n_ij (n_ij − 1) / (n_i (n_i − 1))``. Fleiss' κ is a function of the sums of
    these over items (:func:`fleiss_kappa_from_sums`)."""
    it = np.asarray(item, dtype=np.intp)
    lab = np.asarray(label, dtype=np.intp)
    counts = _label_counts(it, lab, k, weight)
    n_i = counts.sum(1)
    keep = np.flatnonzero(n_i >= 2)
    counts, n_i = counts[keep], n_i[keep]
    p_i = (counts * (counts - 1)).sum(1) / (n_i * (n_i - 1)) if keep.size else np.zeros(0)
    return keep, counts, p_i


def _agreement_with_others(
    it: np.ndarray, rv: np.ndarray, lab: np.ndarray, n_rev: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per reviewer: (#shared items where the others' strict majority exists,
    #of those where the reviewer's label equals it)."""
    keep = lab >= 0
    valid, agree = agreement_terms(it[keep], lab[keep], k)
    rv = rv[keep]
    return np.bincount(rv[valid], minlength=n_rev), np.bincount(rv[agree], minlength=n_rev)


def reviewer_stats(
    reviewer: np.ndarray,
    kind: np.ndarray,
    *,
    keys: Sequence[Hashable] | None = None,
    item: np.ndarray | None = None,
    label: np.ndarray | None = None,
    n_classes: int | None = None,
    delta: float = 0.05,
    margin: float = 0.1,
    min_reviews: int = 20,
) -> list[ReviewerStats]:
    """Per-reviewer rates and flags; see the module docstring for the definitions.

    ``reviewer`` holds codes ``0..R−1`` into ``keys`` (or any values when ``keys`` is
    omitted). Agreement and the *discordant* flag need ``item`` and ``label``. Reviewers
    with fewer than ``min_reviews`` reviews are never flagged.
    """
    reviewer = np.asarray(reviewer)
    kind = np.asarray(kind)
    if reviewer.shape != kind.shape:
        raise _bad("kind", f"must have the same length as reviewer ({reviewer.size})")
    if kind.size and (kind.min() < 0 or kind.max() > 2):
        i = int(np.flatnonzero((kind < 0) | (kind > 2))[0])
        raise _bad("kind", f"code {kind[i]} outside 0 (like), 1 (override), 2 (abstain)", i)
    if keys is None:
        revs, rv = _codes(reviewer)
        keys = [r.item() if hasattr(r, "item") else r for r in revs]
    else:
        rv = reviewer.astype(np.intp)
        if rv.size and (rv.min() < 0 or rv.max() >= len(keys)):
            raise _bad("reviewer", f"codes must be in 0..{len(keys) - 1}")
    n_rev = len(keys)
    counts = np.bincount(rv * 3 + kind.astype(np.intp), minlength=3 * n_rev).reshape(n_rev, 3)
    shared = agree = None
    if item is not None and label is not None:
        item, label = np.asarray(item), np.asarray(label)
        if item.shape != reviewer.shape or label.shape != reviewer.shape:
            raise _bad("label", "item and label must have the same length as reviewer")
        _, it = _codes(item)
        lab = label.astype(np.intp)
        k = int(n_classes or (lab.max() + 1 if lab.size else 2))
        shared, agree = _agreement_with_others(it, rv, lab, n_rev, k)
    return reviewer_stats_from_counts(
        keys, counts, shared, agree, delta=delta, margin=margin, min_reviews=min_reviews
    )


def reviewer_stats_from_counts(
    keys: Sequence[Hashable],
    counts: np.ndarray,
    shared: np.ndarray | None = None,
    agree: np.ndarray | None = None,
    *,
    delta: float = 0.05,
    margin: float = 0.1,
    min_reviews: int = 20,
) -> list[ReviewerStats]:
    """:func:`reviewer_stats` from per-reviewer tallies (additive, e.g. maintained by a
    store): ``counts[r]`` = (likes, overrides, abstentions); ``shared[r]`` = reviews on
    decisions where the other reviewers' labels have a unique majority, ``agree[r]`` =
    those equal to it (None: no agreement figures)."""
    n_rev = len(keys)
    counts = np.asarray(counts, dtype=np.int64).reshape(n_rev, 3)
    n = counts.sum(1)
    n_like, n_over, n_abs = counts[:, 0], counts[:, 1], counts[:, 2]
    judged = n_like + n_over  # like-rate among non-abstained reviews
    lo, hi = wilson_interval(n_like, judged, delta=delta)
    d_each = delta / max(n_rev, 1)
    lo_b, _ = wilson_interval(n_like, judged, delta=d_each)
    peer_like = np.array(
        [(n_like.sum() - n_like[r]) / max(judged.sum() - judged[r], 1) for r in range(n_rev)]
    )
    shared = np.zeros(n_rev, np.int64) if shared is None else np.asarray(shared, np.int64)
    agree = np.zeros(n_rev, np.int64) if agree is None else np.asarray(agree, np.int64)
    _, hi_b = wilson_interval(agree, shared, delta=d_each)
    peer_agree = np.array(
        [(agree.sum() - agree[r]) / max(shared.sum() - shared[r], 1) for r in range(n_rev)]
    )
    out = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for r in range(n_rev):
            enough = n[r] >= min_reviews
            stamp = bool(enough and lo_b[r] > peer_like[r] + margin)
            disc = bool(
                enough
                and shared[r] >= min_reviews
                and shared.sum() > shared[r]
                and hi_b[r] < peer_agree[r] - margin
            )
            flags = tuple(f for f, on in (("rubber_stamp", stamp), ("discordant", disc)) if on)
            out.append(
                ReviewerStats(
                    reviewer=keys[r],
                    n=int(n[r]),
                    n_like=int(n_like[r]),
                    n_override=int(n_over[r]),
                    n_abstain=int(n_abs[r]),
                    like_rate=float(n_like[r] / judged[r]) if judged[r] else math.nan,
                    override_rate=float(n_over[r] / judged[r]) if judged[r] else math.nan,
                    abstain_rate=float(n_abs[r] / n[r]) if n[r] else math.nan,
                    like_rate_interval=(float(lo[r]), float(hi[r])),
                    n_shared=int(shared[r]),
                    agreement_with_peers=float(agree[r] / shared[r]) if shared[r] else math.nan,
                    peer_like_rate=float(peer_like[r]),
                    peer_agreement=float(peer_agree[r]),
                    rubber_stamp=stamp,
                    discordant=disc,
                    flags=flags,
                )
            )
    return out

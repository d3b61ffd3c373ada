"""Reviewer statistics: agreement coefficients vs independent implementations, flags and
aggregation against simulated reviewers with known behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss

from npo.errors import ValidationFailed
from npo.estimation.reviewers import (
    cohen_kappa,
    dawid_skene,
    fleiss_kappa,
    majority_vote,
    pairwise_kappa,
    reviewer_stats,
)

K = 3


def _crowd(seed: int, n_items: int = 1500, per_item: int = 3):
    """Items with a true label; 7 reviewers: 4 good (85%), 2 noisy (50%), 1 adversarial
    (reports (truth + 1) mod K 80% of the time). Each item gets `per_item` reviewers."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, K, n_items)
    acc = np.array([0.85, 0.85, 0.85, 0.85, 0.5, 0.5, -1.0])
    items, revs, labels = [], [], []
    for i in range(n_items):
        for r in rng.choice(acc.size, per_item, replace=False):
            if acc[r] < 0:
                lab = (truth[i] + 1) % K if rng.random() < 0.8 else truth[i]
            elif rng.random() < acc[r]:
                lab = truth[i]
            else:
                lab = (truth[i] + rng.integers(1, K)) % K
            items.append(i)
            revs.append(r)
            labels.append(lab)
    return truth, np.array(items), np.array(revs), np.array(labels)


def test_cohen_kappa_matches_sklearn():
    rng = np.random.default_rng(31)
    for _ in range(20):
        a = rng.integers(0, K, 200)
        b = np.where(rng.random(200) < 0.6, a, rng.integers(0, K, 200))
        assert cohen_kappa(a, b, K) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


def test_fleiss_kappa_matches_statsmodels():
    _, item, _, lab = _crowd(32, n_items=400)
    table = np.zeros((400, K))
    np.add.at(table, (item, lab), 1)
    assert fleiss_kappa(item, lab, K) == pytest.approx(sm_fleiss(table), abs=1e-12)
    # abstentions are dropped before counting
    lab2 = lab.copy()
    lab2[::7] = -1
    t2 = np.zeros((400, K))
    keep = lab2 >= 0
    np.add.at(t2, (item[keep], lab2[keep]), 1)
    # statsmodels needs equal counts: compare on items that still have all 3 ratings
    full = t2.sum(1) == 3
    sel = np.isin(item, np.flatnonzero(full))
    assert fleiss_kappa(item[sel], lab2[sel], K) == pytest.approx(sm_fleiss(t2[full]), abs=1e-12)


def test_pairwise_kappa_orders_reviewers_by_quality():
    _, item, rev, lab = _crowd(33, per_item=4)
    pk = pairwise_kappa(item, rev, lab, n_classes=K)
    good = pk[(0, 1)][0]
    noisy = pk[(0, 4)][0]
    adversarial = pk[(0, 6)][0]
    assert good > noisy > adversarial
    assert adversarial < 0


def test_dawid_skene_beats_majority_and_recovers_reliabilities():
    truth, item, rev, lab = _crowd(34)
    items, mv, _ = majority_vote(item, lab, K)
    ds = dawid_skene(item, rev, lab, K)
    assert ds.converged
    mv_acc = float(np.mean(mv == truth[items]))
    ds_acc = float(np.mean(ds.labels == truth[ds.items]))
    assert ds_acc > mv_acc + 0.03, (ds_acc, mv_acc)
    rel = ds.reliability
    assert np.all(np.abs(rel[:4] - 0.85) < 0.05)
    assert np.all(np.abs(rel[4:6] - 0.5) < 0.07)
    assert rel[6] < 0.3
    # the adversary's confusion matrix is learned: says (k+1) mod K given truth k
    conf = ds.confusion[6]
    assert all(conf[k, (k + 1) % K] > 0.6 for k in range(K))


def test_majority_vote_ties_and_abstentions():
    items, lab, share = majority_vote(np.array([1, 1, 2, 2, 3]), np.array([2, 0, 1, 1, -1]), 3)
    assert items.tolist() == [1, 2, 3]
    assert lab.tolist() == [0, 1, -1]  # tie -> lowest code; only abstentions -> -1
    assert share[1] == 1.0


def _review_stream(seed: int):
    """Decisions with a policy that is right 70% of the time; 6 reviewers look at each
    decision in random triples. r4 likes 99% of everything; r5 answers at random."""
    rng = np.random.default_rng(seed)
    n = 3000
    truth = rng.integers(0, K, n)
    decision = np.where(rng.random(n) < 0.7, truth, (truth + 1) % K)
    item, rev, kind, label = [], [], [], []
    for i in range(n):
        for r in rng.choice(6, 3, replace=False):
            if rng.random() < 0.05:
                item.append(i), rev.append(r), kind.append(2), label.append(-1)
                continue
            if r == 4:
                lab = decision[i] if rng.random() < 0.99 else truth[i]
            elif r == 5:
                lab = rng.integers(0, K)
            else:
                lab = truth[i] if rng.random() < 0.9 else rng.integers(0, K)
            item.append(i), rev.append(r), label.append(lab)
            kind.append(0 if lab == decision[i] else 1)
    return np.array(item), np.array(rev), np.array(kind), np.array(label)


def test_flags_catch_rubber_stamper_and_discordant_reviewer_only():
    item, rev, kind, label = _review_stream(35)
    keys = ("ann", "bob", "cat", "dan", "stamp", "random")
    stats = reviewer_stats(rev, kind, keys=keys, item=item, label=label, n_classes=K)
    by = {s.reviewer: s for s in stats}
    assert by["stamp"].rubber_stamp and not by["stamp"].discordant
    assert by["random"].discordant and not by["random"].rubber_stamp
    for name in ("ann", "bob", "cat", "dan"):
        assert by[name].flags == ()
    assert by["stamp"].like_rate > 0.95
    assert by["ann"].abstain_rate == pytest.approx(0.05, abs=0.02)
    assert sum(s.n for s in stats) == item.size
    d = by["stamp"].to_dict()
    assert d["flags"] == ["rubber_stamp"] and d["reviewer"] == "stamp"


def test_no_flags_when_everyone_behaves_alike():
    rng = np.random.default_rng(36)
    rev = rng.integers(0, 5, 5000)
    kind = np.where(rng.random(5000) < 0.7, 0, 1)
    assert not any(s.flags for s in reviewer_stats(rev, kind))


def test_reviewer_stats_bad_input():
    with pytest.raises(ValidationFailed, match="kind"):
        reviewer_stats(np.array([0, 1]), np.array([0, 3]))
    with pytest.raises(ValidationFailed, match="reviewer"):
        reviewer_stats(np.array([0, 4]), np.array([0, 1]), keys=("a", "b"))
    with pytest.raises(ValidationFailed, match="label"):
        dawid_skene(np.array([1]), np.array([0]), np.array([-1]))

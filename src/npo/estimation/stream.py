"""The monitor's observation stream: one Horvitz–Thompson term per decision, in decision
order, with abstentions and late feedback handled as estimated non-response.

Decision ``i`` (numbered in the order decisions are made) is sent for review with
probability ``p_i`` (``R_i`` = it was sent) and falls in a *response bin* ``b_i`` (the
loop uses deferred/automated × ten bins of the policy's top score). Its term is

    Z_i = R_i A_i C_i / (p_i r̂_{b_i, i})

where ``A_i = 1`` when the review returned a label (not an abstention, and in time: see
below), ``C_i`` the cost of the measured decision under that label, and ``r̂_{b, i}`` the
share of the reviews in bin ``b`` *released before* ``i`` that returned a label (one
pseudo-review with a label as prior). ``r̂`` is clipped below at
``response_floor · p_min / p_i``, so ``0 ≤ Z_i ≤ C_max / (p_min · response_floor)``.

**Order and delays.** Terms are released strictly in decision order — never in the order
feedback happens to arrive, which would let a term's position depend on its value (a
reviewed decision arrives late, an unreviewed one is known at once). The release frontier
is the first decision whose requested review is still pending, but never more than
``max_wait`` decisions behind the newest one: a review still pending then is resolved as
non-response (``A_i = 0``; feedback arriving later is stored by the loop but not fed).

**The conditional-mean condition, precisely.** Given the released past, ``E[Z_i] = L``
holds exactly when ``r̂_{b_i}`` equals the true response rate of bin ``b_i`` and responding
(labelling, in time) is independent of the cost within a bin (*missing at random given
the bin*). What is approximate: ``r̂`` is an estimate (predictable, so the past-only
structure is kept; its error shrinks like ``1/sqrt(reviews in the bin)``), and any
dependence of abstention or delay on the cost *within* a bin biases ``Z`` — by at most the
bin's non-response rate times ``C_max``, downwards when people abstain more on the cases
the policy gets wrong. Abstention that depends on the score across bins (people abstain
more on uncertain cases) is corrected. A global response rate would not correct it. The
clip is a bias too when a bin's true response rate is below ``response_floor``: set the
floor below the lowest response rate expected (the monitor's scale, hence its band, grows
as ``1 / response_floor``).

State: counts per bin and the decisions after the frontier (memory bounded by
``max_wait``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from npo.errors import ItemError, ValidationFailed
from npo.estimation.serial import check_kind, pack_array, unpack_array

__all__ = ["HorvitzThompsonStream", "response_bins"]


def _bad(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(0, field, reason)], what="stream input")


def response_bins(top_score: ArrayLike, deferred: ArrayLike, n_score_bins: int = 10) -> np.ndarray:
    """Response bin of each decision: ``deferred · n + floor(top_score · n)`` (``n`` score
    bins on ``[0, 1]``, separately for deferred and automated decisions)."""
    s = np.clip(np.asarray(top_score, dtype=np.float64), 0.0, 1.0)
    b = np.minimum((s * n_score_bins).astype(np.intp), n_score_bins - 1)
    return b + n_score_bins * np.asarray(deferred, dtype=bool).astype(np.intp)


class HorvitzThompsonStream:
    """Decisions and their feedback in, the monitor's terms out (module docstring).

    Parameters: ``p_min`` the exploration floor, ``response_floor`` (see the clip above),
    ``n_bins`` the number of response bins, ``max_wait`` the most decisions a term waits for
    its review before it is resolved as non-response (``None``: wait for ever).
    """

    def __init__(
        self,
        *,
        p_min: float,
        response_floor: float = 0.8,
        n_bins: int = 20,
        max_wait: int | None = 5_000,
    ) -> None:
        if not 0.0 < p_min <= 1.0:
            raise _bad("p_min", f"must lie in (0, 1], got {p_min}")
        if not 0.0 < response_floor <= 1.0:
            raise _bad("response_floor", f"must lie in (0, 1], got {response_floor}")
        if n_bins < 1:
            raise _bad("n_bins", f"must be ≥ 1, got {n_bins}")
        if max_wait is not None and max_wait < 0:
            raise _bad("max_wait", f"must be ≥ 0, got {max_wait}")
        self.p_min = float(p_min)
        self.response_floor = float(response_floor)
        self.n_bins = int(n_bins)
        self.max_wait = None if max_wait is None else int(max_wait)
        self.labelled = np.zeros(self.n_bins)  # released reviews that returned a label
        self.resolved = np.zeros(self.n_bins)  # released reviews
        self.restart(0)

    @property
    def scale(self) -> float:
        """Upper bound of a term per unit of cost: ``1 / (p_min · response_floor)``."""
        return 1.0 / (self.p_min * self.response_floor)

    def restart(self, first_seq: int) -> None:
        """Drop the pending decisions (they belong to a rule that no longer serves); the next
        decision is number ``first_seq``. The response-rate counts are kept."""
        self.base = int(first_seq)  # number of the first pending decision
        self._p = np.zeros(0)
        self._req = np.zeros(0, dtype=bool)
        self._bin = np.zeros(0, dtype=np.intp)
        self._done = np.zeros(0, dtype=bool)
        self._lab = np.zeros(0, dtype=bool)
        self._cost = np.zeros(0)

    _PENDING = ("_p", "_req", "_bin", "_done", "_lab", "_cost")

    def state_dict(self, *, pending: bool = True) -> dict[str, Any]:
        """What the stream holds (serialisation protocol, :mod:`npo.estimation.serial`): the
        response counts per bin, the number of the first pending decision and, with
        ``pending``, the pending decisions themselves. Without them (a checkpoint whose
        pending decisions can be read back from where they are stored) the state is a few
        hundred bytes; :meth:`load_state_dict` then starts with none pending and the
        owner re-adds them with :meth:`add_decisions` / :meth:`add_feedback`."""
        out: dict[str, Any] = {
            "kind": "HorvitzThompsonStream",
            "base": self.base,
            "labelled": pack_array(self.labelled),
            "resolved": pack_array(self.resolved),
        }
        if pending:
            out["pending"] = {k.lstrip("_"): pack_array(getattr(self, k)) for k in self._PENDING}
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_kind(state, "HorvitzThompsonStream")
        labelled, resolved = unpack_array(state["labelled"]), unpack_array(state["resolved"])
        if labelled.shape != (self.n_bins,) or resolved.shape != (self.n_bins,):
            raise _bad("state", f"response counts must have {self.n_bins} bins")
        self.restart(int(state["base"]))
        self.labelled, self.resolved = labelled.astype(np.float64), resolved.astype(np.float64)
        for k, v in (state.get("pending") or {}).items():
            setattr(self, "_" + k, unpack_array(v))

    @property
    def end(self) -> int:
        """Number of the next decision."""
        return self.base + self._p.size

    @property
    def pending(self) -> int:
        """Decisions made but not yet released."""
        return int(self._p.size)

    def add_decisions(self, propensity: ArrayLike, requested: ArrayLike, bins: ArrayLike) -> int:
        """Register the next decisions; returns the number of the first one."""
        p = np.asarray(propensity, dtype=np.float64).reshape(-1)
        req = np.asarray(requested, dtype=bool).reshape(-1)
        b = np.asarray(bins, dtype=np.intp).reshape(-1)
        if not (p.shape == req.shape == b.shape):
            raise _bad("propensity/requested/bins", "need one entry per decision")
        if p.size and (np.any(~(p > 0) | (p > 1)) or np.any(p[req] < self.p_min * (1 - 1e-12))):
            raise _bad("propensity", f"must lie in [p_min={self.p_min:g}, 1] for reviewed ones")
        if b.size and (b.min() < 0 or b.max() >= self.n_bins):
            raise _bad("bins", f"must lie in 0..{self.n_bins - 1}")
        first = self.end
        self._p = np.concatenate([self._p, p])
        self._req = np.concatenate([self._req, req])
        self._bin = np.concatenate([self._bin, b])
        self._done = np.concatenate([self._done, ~req])  # not sent for review: Z = 0, known
        self._lab = np.concatenate([self._lab, np.zeros(p.size, dtype=bool)])
        self._cost = np.concatenate([self._cost, np.zeros(p.size)])
        return first

    def add_feedback(self, seq: ArrayLike, labelled: ArrayLike, cost: ArrayLike) -> None:
        """First feedback on decisions ``seq``: ``labelled`` (False = abstained) with the cost
        of the measured decision under the label. Decisions already released or unknown are
        ignored (late or about a rule that no longer serves)."""
        s = np.asarray(seq, dtype=np.int64).reshape(-1) - self.base
        lab = np.asarray(labelled, dtype=bool).reshape(-1)
        c = np.asarray(cost, dtype=np.float64).reshape(-1)
        if not (s.shape == lab.shape == c.shape):
            raise _bad("seq/labelled/cost", "need one entry per feedback")
        ok = (s >= 0) & (s < self._p.size)
        s, lab, c = s[ok], lab[ok], c[ok]
        ok = self._req[s] & ~self._done[s]
        s, lab, c = s[ok], lab[ok], c[ok]
        self._done[s] = True
        self._lab[s] = lab
        self._cost[s] = np.where(lab, c, 0.0)

    def release(self) -> np.ndarray:
        """The terms (cost units, not divided by any scale) of the decisions now final, in
        decision order; every later call continues where this one ended."""
        n = self._p.size
        waiting = np.flatnonzero(~self._done)
        stop = int(waiting[0]) if waiting.size else n
        if self.max_wait is not None:
            stop = max(stop, n - self.max_wait)
        if stop <= 0:
            return np.zeros(0)
        p, req, b = self._p[:stop], self._req[:stop], self._bin[:stop]
        lab = self._lab[:stop] & self._done[:stop]  # still pending at release: non-response
        cost = self._cost[:stop]
        # predictable response rate per bin: counts of the reviews released before each one
        onehot = np.zeros((stop, self.n_bins))
        onehot[np.arange(stop), b] = req
        res_before = self.resolved + np.cumsum(onehot, axis=0) - onehot
        onehot[np.arange(stop), b] = req & lab
        lab_before = self.labelled + np.cumsum(onehot, axis=0) - onehot
        rows = np.arange(stop)
        r_hat = (lab_before[rows, b] + 1.0) / (res_before[rows, b] + 1.0)
        r_hat = np.clip(r_hat, self.response_floor * self.p_min / p, 1.0)
        z = np.where(req & lab, cost / (p * r_hat), 0.0)
        self.resolved += np.bincount(b[req], minlength=self.n_bins)
        self.labelled += np.bincount(b[req & lab], minlength=self.n_bins)
        self.base += stop
        for name in ("_p", "_req", "_bin", "_done", "_lab", "_cost"):
            setattr(self, name, getattr(self, name)[stop:])
        return z

    def response_rate(self) -> np.ndarray:
        """Current ``r̂`` per bin (before clipping)."""
        return (self.labelled + 1.0) / (self.resolved + 1.0)

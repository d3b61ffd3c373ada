"""The observation builder: the store's decisions and feedback, in their store order, turned
into what the monitors consume.

**What the monitor sees (Horvitz–Thompson with non-response).** Each decision ``i`` was sent
for review with probability ``p_i`` (``R_i`` = it was). Its term
``Z_i = R_i A_i C(d_i, y_i) / (p_i r̂)`` comes out of :class:`npo.estimation.
HorvitzThompsonStream`: in decision order (a term never moves because of its value),
abstentions and reviews still pending after ``monitor.feedback_wait`` decisions treated as
non-response with a response rate ``r̂`` estimated per response bin (deferred /
automated × the policy's top score), never as agreement. ``d_i`` is always the *policy's*
own decision (the stored shadow where another was served: OVERRIDE, capacity), so the
monitor keeps measuring the policy. ``A_i`` and ``y_i`` come from the decision's **first
feedback** (the earliest feedback row of that decision in the store).

**The store is the source of truth.** The builder consumes rows after two watermarks (the
last decision ``seq`` and the last feedback ``seq`` it consumed), inside the unit of work
that stored them: whichever process stored a feedback, and however late, it is consumed
once, in order, and "is this the decision's first feedback?" is answered by the store in
that same transaction. The stream contains every decision with a recorded review flag and
``p ≥ p_min`` (the loop's own, and any recorded through :meth:`~npo.loop.AlignmentLoop.
record_decisions`); others cannot form a bounded term and are counted as ``unmonitored``.
What the builder keeps in memory is a cache: the pending decisions (at most
``feedback_wait`` plus one batch) are re-read from the store when another process moved
the checkpoint on. Caveat (PostgreSQL only): decisions written *outside* the loop's lock
by a concurrent process may commit after the loop has passed their ``seq``; they are then
not monitored (send them through ``record_decisions``).

**Other streams.** Abstentions feed the abstention-rate monitor (one 0/1 per first feedback
of a decision of the serving rule); when several people label one decision, each label
after its first feeds the disagreement monitor with ``1[label ≠ first label]`` (an
unbiased estimate of the pairwise disagreement rate). Without IPW (``ipw=False``) the loss
monitor gets the plain costs of first labels of the serving rule, in decision order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from npo.domain import DEFER_CODE, KIND_ABSTAIN, CostMatrix
from npo.estimation.stream import HorvitzThompsonStream, response_bins

if TYPE_CHECKING:
    from npo.store.base import DecisionRows, FeedbackRows, Store

__all__ = ["ObservationBuilder", "Observations"]

_EMPTY = np.zeros(0)


@dataclass(frozen=True)
class Observations:
    """What one catch-up with the store produced.

    ``loss`` / ``abstention`` / ``disagreement``: the observations for the three monitors,
    in order. Tallies: decisions consumed (``deferred``, sent for ``review``, not in the
    stream: ``unmonitored``), feedback rows consumed, decisions whose first feedback was a
    label / an abstention (all of them, and ``*_current``: those of the serving rule),
    ``last_time_us``: the latest decision time consumed (0: none)."""

    loss: np.ndarray = field(default_factory=lambda: _EMPTY)
    abstention: np.ndarray = field(default_factory=lambda: _EMPTY)
    disagreement: np.ndarray = field(default_factory=lambda: _EMPTY)
    decisions: int = 0
    deferred: int = 0
    review: int = 0
    unmonitored: int = 0
    feedback: int = 0
    labelled: int = 0
    abstained: int = 0
    labelled_current: int = 0
    abstained_current: int = 0
    last_time_us: int = 0


class ObservationBuilder:
    """Consumes the store's decisions and feedback after its watermarks (module docstring).

    Parameters: ``cost`` the cost matrix; ``p_min``; ``response_floor`` and ``max_wait``
    (``monitor.feedback_wait``) of the Horvitz–Thompson stream; ``ipw`` (False: plain costs
    of labelled reviews).
    """

    def __init__(
        self,
        cost: CostMatrix,
        *,
        p_min: float,
        response_floor: float,
        max_wait: int | None,
        ipw: bool = True,
    ) -> None:
        self.cost = cost.array
        self.p_min = float(p_min)
        self.ipw = bool(ipw)
        self.stream = HorvitzThompsonStream(
            p_min=p_min, response_floor=response_floor, max_wait=max_wait
        )
        self.decision_seq = 0  # last decision consumed
        self.feedback_seq = 0  # last feedback consumed
        self.first_seq = 1  # first decision of the serving rule (the stream restarted there)
        self._window_seq = np.zeros(0, dtype=np.int64)  # store seq of each pending decision
        self._window_measured = np.zeros(0, dtype=np.int16)
        self._stale = False  # pending decisions to be re-read from the store
        self._frontier = 1
        self._pending = 0

    # ------------------------------------------------------------------ state
    def start(self, store: Store) -> None:
        """Begin after everything already in the store (a new loop on an old store)."""
        self.decision_seq = store.last_seq("decisions")
        self.feedback_seq = store.last_seq("feedback")
        self.first_seq = self.decision_seq + 1
        self.stream.restart(0)
        self._window_seq = np.zeros(0, dtype=np.int64)
        self._window_measured = np.zeros(0, dtype=np.int16)
        self._stale = False

    @property
    def frontier_seq(self) -> int:
        """``seq`` of the first decision whose term is not released yet."""
        if self._stale:  # loaded, not re-read yet: as the checkpoint says
            return self._frontier
        return int(self._window_seq[0]) if self._window_seq.size else self.decision_seq + 1

    @property
    def pending(self) -> int:
        """Decisions whose term is not released yet."""
        return self._pending if self._stale else int(self.stream.pending)

    def state_dict(self) -> dict[str, Any]:
        """Watermarks, the stream's response counts and where its pending decisions start
        (they are in the store: :meth:`load_state_dict` re-reads them)."""
        return {
            "decision_seq": self.decision_seq,
            "feedback_seq": self.feedback_seq,
            "first_seq": self.first_seq,
            "frontier_seq": self.frontier_seq,
            "pending": self.pending,
            "stream": self.stream.state_dict(pending=False),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.decision_seq = int(state["decision_seq"])
        self.feedback_seq = int(state["feedback_seq"])
        self.first_seq = int(state["first_seq"])
        self.stream.load_state_dict(state["stream"])
        self._frontier = int(state["frontier_seq"])
        self._pending = int(state["pending"])
        self._window_seq = np.zeros(0, dtype=np.int64)
        self._window_measured = np.zeros(0, dtype=np.int16)
        self._stale = self.ipw and self._pending > 0

    def _rebuild(self, store: Store) -> None:
        """Re-read the pending decisions and their first feedback from the store."""
        self._stale = False
        dec = store.read_decisions(after_seq=self._frontier - 1, until_seq=self.decision_seq)
        keep = self._in_stream(dec)
        self._add_decisions(dec, keep)
        fb = store.read_feedback(decision_seqs=dec.seq[keep].tolist(), until_seq=self.feedback_seq)
        first = _first_rows(fb.decision_seq)
        self._feed_stream(fb, first)

    def restart(self) -> None:
        """A new rule serves: pending decisions belong to the old one (dropped); the next
        decision starts the new rule's stream."""
        self.stream.restart(self.stream.base + self.pending)
        self._window_seq = np.zeros(0, dtype=np.int64)
        self._window_measured = np.zeros(0, dtype=np.int16)
        self._stale = False
        self.first_seq = self.decision_seq + 1

    # ------------------------------------------------------------------ consuming
    def _in_stream(self, dec: DecisionRows) -> np.ndarray:
        if not self.ipw:
            return np.zeros(len(dec), dtype=bool)
        return (dec.review >= 0) & (dec.propensity >= self.p_min * (1.0 - 1e-12))

    def _add_decisions(self, dec: DecisionRows, keep: np.ndarray) -> None:
        if not keep.any():
            return
        measured = dec.measured[keep]
        top = dec.scores[keep].max(axis=1)
        self.stream.add_decisions(
            dec.propensity[keep], dec.review[keep] == 1, response_bins(top, measured == DEFER_CODE)
        )
        self._window_seq = np.concatenate([self._window_seq, dec.seq[keep]])
        self._window_measured = np.concatenate([self._window_measured, measured])

    def _feed_stream(self, fb: FeedbackRows, first: np.ndarray) -> None:
        """First feedback of pending decisions -> the stream (labelled or not, the cost)."""
        if not first.any() or not self._window_seq.size:
            return
        dseq = fb.decision_seq[first]
        idx = np.searchsorted(self._window_seq, dseq)
        ok = idx < self._window_seq.size
        ok[ok] &= self._window_seq[idx[ok]] == dseq[ok]
        if not ok.any():
            return
        idx = idx[ok]
        label = fb.label[first][ok]
        labelled = label >= 0
        cost = self.cost[self._window_measured[idx], np.maximum(label, 0)]
        self.stream.add_feedback(self.stream.base + idx, labelled, cost)

    def consume(self, store: Store) -> Observations:
        """Everything stored after the watermarks, inside the caller's unit of work."""
        if self._stale:
            self._rebuild(store)
        # feedback first: each of its decisions committed before it, so the decisions read
        # next include them (a concurrent commit in between is read next time)
        fb = store.read_feedback(after_seq=self.feedback_seq)
        dec = store.read_decisions(after_seq=self.decision_seq)
        out: dict[str, Any] = {}
        if len(dec):
            keep = self._in_stream(dec)
            self._add_decisions(dec, keep)
            self.decision_seq = int(dec.seq[-1])
            out.update(
                decisions=len(dec),
                deferred=int((dec.action == DEFER_CODE).sum()),
                review=int((dec.review == 1).sum()),
                unmonitored=int((~keep).sum()) if self.ipw else 0,
                last_time_us=int(dec.timestamp.max()),
            )
        if len(fb):
            out.update(self._feedback(store, fb))
            self.feedback_seq = int(fb.seq[-1])
        wait = self.stream.max_wait
        if self.ipw and (len(fb) or (wait is not None and self.stream.pending > wait)):
            # terms become final when reviews arrive (or wait too long): release then
            before = self.stream.pending
            terms = self.stream.release()
            released = before - self.stream.pending
            self._window_seq = self._window_seq[released:]
            self._window_measured = self._window_measured[released:]
            out["loss"] = terms
        return Observations(**out)

    def _feedback(self, store: Store, fb: FeedbackRows) -> dict[str, Any]:
        earlier = store.read_feedback(
            decision_seqs=np.unique(fb.decision_seq).tolist(), until_seq=self.feedback_seq
        )
        # first feedback / first label of each decision over the earlier and the new rows
        n_old = len(earlier)
        dseq = np.concatenate([earlier.decision_seq, fb.decision_seq])
        label = np.concatenate([earlier.label, fb.label])
        first = _first_rows(dseq)[n_old:]
        lab_idx = np.flatnonzero(label >= 0)
        first_label = np.zeros(dseq.size, dtype=bool)
        first_label[lab_idx[_first_rows(dseq[lab_idx])]] = True
        # each label after its decision's first label: does it agree with that one?
        later = (fb.label >= 0) & ~first_label[n_old:]
        disagree = _EMPTY
        if later.any():
            ref = np.flatnonzero(first_label)
            order = np.argsort(dseq[ref], kind="stable")
            keys, values = dseq[ref][order], label[ref][order]
            against = values[np.searchsorted(keys, fb.decision_seq[later])]
            disagree = (fb.label[later] != against).astype(np.float64)
        current = first & (fb.decision_seq >= self.first_seq)
        abst = fb.kind == KIND_ABSTAIN
        out: dict[str, Any] = {
            "feedback": len(fb),
            "labelled": int((first & ~abst).sum()),
            "abstained": int((first & abst).sum()),
            "labelled_current": int((current & ~abst).sum()),
            "abstained_current": int((current & abst).sum()),
            "abstention": abst[current].astype(np.float64),
            "disagreement": disagree,
        }
        if self.ipw:
            self._feed_stream(fb, first)
        else:  # no IPW: the plain costs of first labels of this rule, in decision order
            sel = np.flatnonzero(current & ~abst)
            sel = sel[np.argsort(fb.decision_seq[sel], kind="stable")]
            out["loss"] = self.cost[fb.shadow[sel], fb.label[sel]].astype(np.float64)
        return out


def _first_rows(keys: np.ndarray) -> np.ndarray:
    """Mask of the first occurrence of each key (rows are in ``seq`` order)."""
    first = np.zeros(keys.size, dtype=bool)
    if keys.size:
        _, idx = np.unique(keys, return_index=True)
        first[idx] = True
    return first

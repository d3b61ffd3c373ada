"""The simulated world: a scenario stream and the true preferences of people.

Math. Scenarios arrive in steps ``t = 0, 1, …``: ``n_t`` per step (fixed or Poisson), each
in segment ``g ~ Categorical(w)`` with features ``x = μ_g + N(0, I_d)`` (``continuous``
population) or drawn uniformly from the fixed evaluation sample of its segment (``finite``
population, where every expectation below is exact). The preferred action of a person is
``y ~ P(y | x, t) = softmax(ℓ(x, t))`` (see :class:`~npo.simulation.config.PreferenceSpec`),
which may change abruptly or gradually and may hold a *blind spot*.

For a decision rule ``d(x) ∈ A ∪ {DEFER}`` and a cost matrix ``C`` ((K+1) × K, DEFER row
last) the true alignment loss at ``t`` is ``L_t(d) = Σ_g w_g(t) E_{x|g}[Σ_y P(y|x,t) C(d(x), y)]``,
computed on a fixed evaluation sample stratified by segment (``eval_size`` scenarios, equal
numbers per segment; exact for the ``finite`` population). The Bayes rule picks
``argmin_{d ∈ A ∪ {DEFER}} Σ_y P(y|x,t) C(d, y)`` per scenario, so ``bayes_loss(t) ≤ L_t(d)``
for every rule ``d`` evaluated on the same sample.

Closed loop: with a ``follow_up`` spec, wrong automated decisions create follow-up
scenarios (see :class:`~npo.simulation.config.FollowUpSpec`); the segment mix ``w(t)`` then
depends on past decisions, and steps must be generated and observed in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from npo.simulation import _rng
from npo.simulation.closed_loop import ClosedLoopHook, FollowUpIncidents
from npo.simulation.config import WorldSpec

DecideFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""A decision rule: ``decide(features (n, d), segments (n,)) -> codes (n,)``, DEFER = -1."""

PAGE_STEPS = 64
"""Scenarios are drawn in pages of this many steps, one keyed generator per page."""

ID_STRIDE = 1_000_000
"""Scenario ids are ``step · ID_STRIDE + position in the step`` (unique, random-access)."""


@dataclass(frozen=True)
class ScenarioBatch:
    """Scenarios of one or more steps as columns (``X`` may have 0 columns if dropped)."""

    step: np.ndarray  # int64 (n,)
    scenario_id: np.ndarray  # int64 (n,)
    X: np.ndarray  # float64 (n, d)
    segment: np.ndarray  # int32 (n,)
    follow_up: np.ndarray  # bool (n,): a closed-loop follow-up of an earlier decision

    def __len__(self) -> int:
        return int(self.step.shape[0])

    @classmethod
    def concat(cls, batches: list[ScenarioBatch]) -> ScenarioBatch:
        if not batches:
            raise ValueError("batches: nothing to concatenate")
        return cls(
            step=np.concatenate([b.step for b in batches]),
            scenario_id=np.concatenate([b.scenario_id for b in batches]),
            X=np.concatenate([b.X for b in batches]),
            segment=np.concatenate([b.segment for b in batches]),
            follow_up=np.concatenate([b.follow_up for b in batches]),
        )

    def without_features(self) -> ScenarioBatch:
        return ScenarioBatch(
            self.step, self.scenario_id, self.X[:, :0], self.segment, self.follow_up
        )


def cost_array(cost: Any, k: int) -> np.ndarray:
    """A (K+1) × K float array from a :class:`~npo.domain.CostMatrix` or an array-like."""
    c = getattr(cost, "array", cost)
    c = np.asarray(c, dtype=np.float64)
    if c.shape != (k + 1, k):
        raise ValueError(
            f"cost: shape must be (K+1, K) = ({k + 1}, {k}) with DEFER last, got {c.shape}"
        )
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError("cost: every entry must be finite and ≥ 0")
    return c


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class World:
    """A seeded scenario stream with known true preferences (see the module docstring).

    Parameters
    ----------
    spec : the world configuration (default: 3 actions, 20 features, 1 segment, stationary).
    seed : seed of every random draw; the same seed gives identical arrays.
    steps : run length, used to resolve times given as fractions (change point, ...).
    closed_loop : a custom :class:`~npo.simulation.closed_loop.ClosedLoopHook`; by default
        ``spec.follow_up`` (if set) builds a :class:`~npo.simulation.closed_loop.FollowUpIncidents`.
    """

    def __init__(
        self,
        spec: WorldSpec | None = None,
        *,
        seed: int = 0,
        steps: int = 2000,
        closed_loop: ClosedLoopHook | None = None,
    ) -> None:
        if steps < 1:
            raise ValueError(f"steps: must be ≥ 1, got {steps}")
        self.spec = spec = spec or WorldSpec()
        self.seed = int(seed)
        self.steps = int(steps)
        self.actions: tuple[str, ...] = tuple(spec.actions)
        self.k = len(self.actions)
        self.feature_names: tuple[str, ...] = tuple(spec.feature_names)
        self.d = len(self.feature_names)
        self.segment_names: tuple[str, ...] = tuple(spec.segment_names)
        self.n_segments = len(self.segment_names)
        w = np.array([s.weight for s in spec.segments], dtype=np.float64)
        self.segment_weights = w / w.sum()
        self._cum_weights = np.cumsum(self.segment_weights)
        self._cum_weights[-1] = 1.0
        self._build_structure()
        self._build_eval()
        # closed-loop state
        fu = spec.follow_up
        if closed_loop is None and fu is not None:
            closed_loop = FollowUpIncidents(
                self.n_segments,
                probability=fu.probability,
                delay=fu.delay,
                target_segment=-1 if fu.segment is None else self.segment_names.index(fu.segment),
            )
        if closed_loop is not None and not isinstance(closed_loop, ClosedLoopHook):
            raise TypeError("closed_loop: needs observe(...) and arrivals(step) methods")
        self.hook = closed_loop
        self.closed_loop = closed_loop is not None
        self._observed_through = -1
        self._prob_cache: dict[tuple[float, bool], np.ndarray] = {}
        self._pages: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------ structure
    def _fidx(self, name: str | int) -> int:
        return name if isinstance(name, int) else self.feature_names.index(name)

    def _aidx(self, name: str | int) -> int:
        return name if isinstance(name, int) else self.actions.index(name)

    def _build_structure(self) -> None:
        spec, k, d = self.spec, self.k, self.d
        sseed = spec.structure_seed if spec.structure_seed is not None else self.seed
        rng = _rng.generator(sseed, _rng.STRUCTURE)
        means = rng.normal(0.0, spec.segment_separation, size=(self.n_segments, d))
        for g, s in enumerate(spec.segments):
            for f, v in s.mean.items():
                means[g, self._fidx(f)] = v
        self.segment_means = means

        p = spec.preference
        n_inf = p.n_informative or d

        def random_w() -> np.ndarray:
            w = np.zeros((k, d))
            w[:, :n_inf] = rng.normal(0.0, 1.0 / np.sqrt(n_inf), size=(k, n_inf))
            return w

        w_rand, b_rand = random_w(), rng.normal(0.0, 0.25, size=k)
        if p.weights is not None:
            w0 = np.zeros((k, d))
            for a, row in p.weights.items():
                for f, v in row.items():
                    w0[self._aidx(a), self._fidx(f)] = v
            b0 = np.zeros(k)
        else:
            w0, b0 = w_rand, b_rand
        for a, v in p.bias.items():
            b0[self._aidx(a)] = v
        self.hidden_u = rng.normal(0.0, 1.0 / np.sqrt(d), size=(p.hidden_units, d))
        v0 = rng.normal(0.0, 1.0 / np.sqrt(p.hidden_units), size=(k, p.hidden_units))
        # post-change parameters (drawn even without a change, so the stream is the same)
        w_new, v_new = (
            random_w(),
            rng.normal(0.0, 1.0 / np.sqrt(p.hidden_units), size=(k, p.hidden_units)),
        )
        c = spec.change
        rho = c.strength if c.kind != "none" else 0.0
        keep = np.sqrt(1.0 - rho**2)
        w1 = keep * w0 + rho * w_new
        v1 = keep * v0 + rho * v_new
        for a, row in c.weights.items():
            for f, val in row.items():
                w1[self._aidx(a), self._fidx(f)] = val
        b1 = b0.copy()
        for a, val in c.bias_shift.items():
            b1[self._aidx(a)] += val
        self.params = {"W0": w0, "b0": b0, "V0": v0, "W1": w1, "b1": b1, "V1": v1}
        self.segment_bias = np.zeros((self.n_segments, k))
        for g, row in p.segment_bias.items():
            for a, val in row.items():
                self.segment_bias[self.segment_names.index(g), self._aidx(a)] = val
        # change times
        self.change_kind = c.kind
        self.t0 = c.at if c.at is not None else round(c.at_fraction * self.steps)
        self.change_duration = (
            c.duration
            if c.duration is not None
            else max(1, round(c.duration_fraction * self.steps))
        )
        b = spec.blind_spot
        self.blind_spot: dict[str, Any] | None = None
        if b is not None:
            self.blind_spot = {
                "feature": self._fidx(b.feature),
                "above": b.above,
                "segment": -1 if b.segment is None else self.segment_names.index(b.segment),
                "action": self._aidx(b.action),
                "strength": b.strength,
                "reverse": b.effect == "reverse",
                "start": b.start if b.start is not None else round(b.start_fraction * self.steps),
            }

    def _build_eval(self) -> None:
        rng = _rng.generator(self.seed, _rng.EVAL)
        per = max(1, self.spec.eval_size // self.n_segments)
        self._eval_per_segment = per
        self.eval_segments = np.repeat(np.arange(self.n_segments, dtype=np.int32), per)
        self.eval_X = self.segment_means[self.eval_segments] + rng.standard_normal(
            (per * self.n_segments, self.d)
        )
        self.eval_X.setflags(write=False)
        self.eval_segments.setflags(write=False)

    def summary(self) -> dict[str, Any]:
        """A JSON-able description of the world's ground truth (for run reports)."""
        b = self.blind_spot
        return {
            "seed": self.seed,
            "steps": self.steps,
            "actions": list(self.actions),
            "features": list(self.feature_names),
            "segments": dict(zip(self.segment_names, self.segment_weights.tolist(), strict=True)),
            "scenarios_per_step": self.spec.scenarios_per_step,
            "arrivals": self.spec.arrivals,
            "population": self.spec.population,
            "preference": self.spec.preference.kind,
            "change": {"kind": self.change_kind, "t0": self.t0}
            | ({"duration": self.change_duration} if self.change_kind == "gradual" else {}),
            "blind_spot": None
            if b is None
            else {
                "feature": self.feature_names[b["feature"]],
                "above": b["above"],
                "effect": "reverse" if b["reverse"] else f"boost {self.actions[b['action']]}",
                "start": b["start"],
            },
            "closed_loop": type(self.hook).__name__ if self.hook is not None else None,
        }

    # ------------------------------------------------------------------ preferences
    def alpha(self, t: np.ndarray | int) -> np.ndarray:
        """Progress of the change at step ``t``: 0 before, 1 after (in between: gradual)."""
        t = np.asarray(t, dtype=np.float64)
        if self.change_kind == "none":
            return np.zeros_like(t)
        if self.change_kind == "abrupt":
            return (t >= self.t0).astype(np.float64)
        return np.clip((t - self.t0) / self.change_duration, 0.0, 1.0)

    def preference_state(self, t: int) -> tuple[float, bool]:
        """A hashable key: two steps with the same key have identical ``P(y | x, ·)``."""
        blind = self.blind_spot is not None and t >= self.blind_spot["start"]
        return float(self.alpha(t)), bool(blind)

    def _f(self, X: np.ndarray, state: int) -> np.ndarray:
        p = self.spec.preference
        w, b = self.params[f"W{state}"], self.params[f"b{state}"]
        out = X @ w.T + b
        if p.kind == "nonlinear":
            out += p.nonlinear_strength * (
                np.tanh(X @ self.hidden_u.T) @ self.params[f"V{state}"].T
            )
        return p.sharpness * out

    def logits(self, X: np.ndarray, segments: np.ndarray, t: np.ndarray | int) -> np.ndarray:
        """``ℓ(x, t)`` for each row; ``t`` is a step or one step per row."""
        X, segments = self._check_xs(X, segments)
        n = X.shape[0]
        tt = np.broadcast_to(np.asarray(t, dtype=np.int64), (n,))
        a = self.alpha(tt)
        out = self._f(X, 0)
        if np.any(a > 0):
            out += a[:, None] * (self._f(X, 1) - out)
        out += self.segment_bias[segments]
        b = self.blind_spot
        if b is not None:
            m = (X[:, b["feature"]] > b["above"]) & (tt >= b["start"])
            if b["segment"] >= 0:
                m &= segments == b["segment"]
            if b["reverse"]:
                out[m] = -out[m]
            else:
                out[m, b["action"]] += self.spec.preference.sharpness * b["strength"]
        return out

    def preference_probs(
        self, X: np.ndarray, segments: np.ndarray, t: np.ndarray | int
    ) -> np.ndarray:
        """``P(y | x, t)`` as an (n, K) array whose rows sum to 1."""
        return softmax(self.logits(X, segments, t))

    def in_blind_spot(self, X: np.ndarray, segments: np.ndarray) -> np.ndarray:
        """Whether each scenario lies in the blind-spot region (ignoring its start time)."""
        X, segments = self._check_xs(X, segments)
        b = self.blind_spot
        if b is None:
            return np.zeros(X.shape[0], dtype=bool)
        m = X[:, b["feature"]] > b["above"]
        if b["segment"] >= 0:
            m &= segments == b["segment"]
        return m

    def _check_xs(
        self, X: np.ndarray, segments: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.d:
            raise ValueError(f"X: shape must be (n, {self.d}), got {X.shape}")
        if segments is None:
            if self.n_segments != 1:
                raise ValueError("segments: required when the world has several segments")
            segments = np.zeros(X.shape[0], dtype=np.int32)
        segments = np.asarray(segments)
        if segments.shape != (X.shape[0],):
            raise ValueError(f"segments: shape must be ({X.shape[0]},), got {segments.shape}")
        if segments.size and (segments.min() < 0 or segments.max() >= self.n_segments):
            raise ValueError(f"segments: codes must lie in 0..{self.n_segments - 1}")
        return X, segments

    # ------------------------------------------------------------------ the stream
    def scenarios(self, step: int) -> ScenarioBatch:
        """The scenarios arriving at ``step`` (deterministic given the seed; in a closed-loop
        world, every earlier step must have been :meth:`observe`-d first)."""
        step = int(step)
        if step < 0:
            raise ValueError(f"step: must be ≥ 0, got {step}")
        if self.closed_loop and step > self._observed_through + 1:
            raise ValueError(
                "step: closed-loop world: observe the decisions of step "
                f"{self._observed_through + 1} before generating step {step}"
            )
        _, seg, X = self._base(step, step + 1)
        n_base = seg.shape[0]
        extra = self._extra(step)
        if extra is not None and extra.sum():
            seg_x = np.repeat(np.arange(self.n_segments, dtype=np.int32), extra)
            rng = _rng.generator(self.seed, _rng.FOLLOW_UPS, step)
            seg = np.concatenate([seg, seg_x])
            X = np.concatenate([X, self._features(rng, seg_x)])
        n = seg.shape[0]
        if n > ID_STRIDE:
            raise ValueError(f"scenarios_per_step: {n} scenarios in one step exceed {ID_STRIDE}")
        follow = np.zeros(n, dtype=bool)
        follow[n_base:] = True
        return ScenarioBatch(
            step=np.full(n, step, dtype=np.int64),
            scenario_id=step * ID_STRIDE + np.arange(n, dtype=np.int64),
            X=X,
            segment=seg,
            follow_up=follow,
        )

    def scenario_block(self, start: int, stop: int) -> ScenarioBatch:
        """Steps ``start .. stop-1`` concatenated (open-loop worlds only); identical to
        concatenating :meth:`scenarios` of each step."""
        if self.closed_loop:
            raise ValueError("scenario_block: a closed-loop world is generated step by step")
        if not 0 <= start < stop:
            raise ValueError(f"start/stop: need 0 ≤ start < stop, got {start}, {stop}")
        step, seg, X = self._base(start, stop)
        first = np.searchsorted(step, step, side="left")
        return ScenarioBatch(
            step=step,
            scenario_id=step * ID_STRIDE + (np.arange(step.size) - first),
            X=X,
            segment=seg,
            follow_up=np.zeros(step.size, dtype=bool),
        )

    def _features(self, rng: np.random.Generator, seg: np.ndarray) -> np.ndarray:
        if self.spec.population == "finite":
            per = self._eval_per_segment
            return self.eval_X[seg * per + rng.integers(0, per, seg.shape[0])]
        return self.segment_means[seg] + rng.standard_normal((seg.shape[0], self.d))

    def _page(self, page: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Base arrivals of steps ``page·PAGE_STEPS …`` (one keyed generator per page)."""
        hit = self._pages.get(page)
        if hit is not None:
            return hit
        rng = _rng.generator(self.seed, _rng.SCENARIOS, page)
        rate = self.spec.scenarios_per_step
        if self.spec.arrivals == "poisson":
            counts = rng.poisson(rate, PAGE_STEPS)
        else:
            counts = np.full(PAGE_STEPS, round(rate))
        offsets = np.concatenate([[0], np.cumsum(counts)])
        u = rng.random(int(offsets[-1]))
        seg = np.searchsorted(self._cum_weights, u, side="right").astype(np.int32)
        X = self._features(rng, seg)
        for a in (offsets, seg, X):
            a.setflags(write=False)
        out = (offsets, seg, X)
        if len(self._pages) >= 4:
            self._pages.pop(next(iter(self._pages)))
        self._pages[page] = out
        return out

    def _base(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        steps, segs, xs = [], [], []
        for page in range(start // PAGE_STEPS, (stop - 1) // PAGE_STEPS + 1):
            offsets, seg, X = self._page(page)
            lo = max(start, page * PAGE_STEPS) - page * PAGE_STEPS
            hi = min(stop, (page + 1) * PAGE_STEPS) - page * PAGE_STEPS
            a, b = int(offsets[lo]), int(offsets[hi])
            counts = np.diff(offsets[lo : hi + 1])
            steps.append(np.repeat(np.arange(lo, hi, dtype=np.int64) + page * PAGE_STEPS, counts))
            segs.append(seg[a:b])
            xs.append(X[a:b])
        if len(steps) == 1:  # copies: the cached page must not be changed through a batch
            return steps[0], segs[0].copy(), xs[0].copy()
        return np.concatenate(steps), np.concatenate(segs), np.concatenate(xs)

    def observe(
        self, batch: ScenarioBatch, decisions: np.ndarray, probs: np.ndarray | None = None
    ) -> int:
        """Tell the world which decisions were made on ``batch`` (one step). In a closed-loop
        world this schedules follow-up scenarios; returns how many were scheduled.
        ``probs`` (``P(y|x,t)`` of the batch) may be passed to save recomputing it."""
        decisions = np.asarray(decisions)
        if decisions.shape != (len(batch),):
            raise ValueError(f"decisions: shape must be ({len(batch)},), got {decisions.shape}")
        if decisions.size and (decisions.min() < -1 or decisions.max() >= self.k):
            raise ValueError(f"decisions: codes must lie in -1..{self.k - 1}")
        if not self.closed_loop:
            return 0
        steps = np.unique(batch.step)
        if steps.size > 1:
            raise ValueError("batch: a closed-loop world observes one step at a time")
        step = int(steps[0]) if steps.size else self._observed_through + 1
        if step != self._observed_through + 1:
            raise ValueError(
                f"batch: expected the decisions of step {self._observed_through + 1}, "
                f"got step {step}"
            )
        self._observed_through = step
        if len(batch) == 0:
            return 0
        if probs is None:
            probs = self.preference_probs(batch.X, batch.segment, step)
        assert self.hook is not None
        rng = _rng.generator(self.seed, _rng.LOOP, step)
        return int(self.hook.observe(step, batch.segment, decisions, probs, rng))

    def follow_ups_scheduled(self, step: int) -> np.ndarray:
        """Follow-up scenarios per segment scheduled (so far) to arrive at ``step``."""
        extra = self._extra(int(step))
        return np.zeros(self.n_segments, dtype=np.int64) if extra is None else extra.copy()

    def _extra(self, step: int) -> np.ndarray | None:
        if self.hook is None:
            return None
        extra = self.hook.arrivals(step)
        if extra is None:
            return None
        extra = np.asarray(extra, dtype=np.int64)
        if extra.shape != (self.n_segments,) or np.any(extra < 0):
            raise ValueError(
                f"closed_loop.arrivals: must give {self.n_segments} non-negative counts, "
                f"got {extra!r}"
            )
        return extra

    def segment_mix(self, step: int) -> np.ndarray:
        """Expected segment composition of the arrivals at ``step`` (closed loop: with the
        follow-ups scheduled so far)."""
        base = self.spec.scenarios_per_step * self.segment_weights
        extra = self._extra(int(step))
        if extra is None:
            return self.segment_weights.copy()
        tot = base + extra
        return tot / tot.sum()

    # ------------------------------------------------------------------ truth
    def eval_probs(self, step: int) -> np.ndarray:
        """``P(y | x, step)`` on the evaluation sample (cached per preference state)."""
        key = self.preference_state(int(step))
        p = self._prob_cache.get(key)
        if p is None:
            p = self.preference_probs(self.eval_X, self.eval_segments, int(step))
            p.setflags(write=False)
            if len(self._prob_cache) >= 8:
                self._prob_cache.pop(next(iter(self._prob_cache)))
            self._prob_cache[key] = p
        return p

    def eval_codes(self, decide: DecideFn | np.ndarray) -> np.ndarray:
        """The rule's decisions on the evaluation sample (a callable, or codes already made)."""
        n = self.eval_X.shape[0]
        codes = decide(self.eval_X, self.eval_segments) if callable(decide) else decide
        codes = np.asarray(codes)
        if codes.shape != (n,):
            raise ValueError(
                f"decide: must give one code per evaluation scenario ({n},), got {codes.shape}"
            )
        if codes.min() < -1 or codes.max() >= self.k:
            raise ValueError(f"decide: codes must lie in -1..{self.k - 1} (DEFER = -1)")
        return codes.astype(np.intp, copy=False)

    def expected_costs(self, probs: np.ndarray, decisions: np.ndarray, cost: Any) -> np.ndarray:
        """Per-scenario ``Σ_y P(y|x,t) C(d, y)`` for given probabilities and decisions."""
        c = cost_array(cost, self.k)
        return np.einsum("ik,ik->i", c[np.asarray(decisions, dtype=np.intp)], probs)

    def segment_losses(self, decide: DecideFn | np.ndarray, step: int, cost: Any) -> np.ndarray:
        """True loss of the rule in each segment at ``step`` (shape (G,))."""
        codes = self.eval_codes(decide)
        per = self.expected_costs(self.eval_probs(step), codes, cost)
        return per.reshape(self.n_segments, self._eval_per_segment).mean(axis=1)

    def true_loss(
        self,
        decide: DecideFn | np.ndarray,
        step: int,
        cost: Any,
        *,
        mix: np.ndarray | None = None,
    ) -> float:
        """``L_t(d) = Σ_g w_g(t) E_{x|g} Σ_y P(y|x,t) C(d(x), y)`` (``w = segment_mix(t)``)."""
        w = self.segment_mix(step) if mix is None else np.asarray(mix, dtype=np.float64)
        return float(w @ self.segment_losses(decide, step, cost))

    def bayes_action(
        self,
        X: np.ndarray,
        step: int,
        cost: Any,
        segments: np.ndarray | None = None,
        *,
        allow_defer: bool = True,
    ) -> np.ndarray:
        """``argmin_{d ∈ A ∪ {DEFER}} Σ_y P(y|x,t) C(d, y)`` per row (DEFER = -1; ties go
        to the lowest action code, DEFER last)."""
        X, segments = self._check_xs(X, segments)
        return self.bayes_codes(self.preference_probs(X, segments, step), cost, allow_defer)

    def bayes_codes(self, probs: np.ndarray, cost: Any, allow_defer: bool = True) -> np.ndarray:
        """Bayes decisions for given preference probabilities (rows of ``P(y|x,t)``)."""
        c = cost_array(cost, self.k)
        rows = c if allow_defer else c[: self.k]
        codes = np.argmin(probs @ rows.T, axis=1)
        codes[codes == self.k] = -1
        return codes.astype(np.intp)

    def bayes_rule(self, step: int, cost: Any, *, allow_defer: bool = True) -> DecideFn:
        """The Bayes decision rule for the preferences at ``step``, as a ``decide`` callable."""
        c = cost_array(cost, self.k)

        def decide(X: np.ndarray, segments: np.ndarray) -> np.ndarray:
            return self.bayes_action(X, step, c, segments, allow_defer=allow_defer)

        return decide

    def bayes_loss(self, step: int, cost: Any, *, allow_defer: bool = True) -> float:
        """The smallest true loss any decision rule can reach at ``step``."""
        probs = self.eval_probs(step)
        codes = self.bayes_codes(probs, cost, allow_defer)
        return self.true_loss(codes, step, cost)

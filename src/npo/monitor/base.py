"""The monitor protocol shared by every NPO monitor, and small helpers they all use.

A monitor consumes labelled evidence one observation at a time (or in batches, which is
the fast path) and exposes a read-only trigger state:

* ``OK``       -- no evidence that the monitored quantity exceeds its tolerance;
* ``RETRAIN``  -- evidence that it exceeds the tolerance ``lambda``;
* ``OVERRIDE`` -- evidence that it exceeds the critical level ``lambda_crit``.

Observations for the alignment monitors are per-decision Horvitz-Thompson terms
``Z_i = R_i C(d_i, y_i) / p_i`` in loss units (``0 <= Z_i <= scale = C_max / p_min``);
unreviewed decisions contribute 0. Monitors divide by ``scale`` internally and report
estimates and bounds in loss units again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from npo.errors import ItemError, ValidationFailed
from npo.estimation.serial import pack_float, unpack_float

__all__ = [
    "Monitor",
    "MonitorStatus",
    "TriggerState",
    "as_observations",
    "band_status",
    "check_level",
    "check_levels",
    "hysteresis_states",
    "pack_status",
    "unpack_status",
]


class TriggerState(IntEnum):
    """Trigger state of a monitor (ordered: a larger value is a stronger alarm)."""

    OK = 0
    RETRAIN = 1
    OVERRIDE = 2


@dataclass(frozen=True)
class MonitorStatus:
    """Read-only snapshot of a monitor, suitable for the audit log.

    ``estimate``/``lower``/``upper`` are in loss units (NaN when the monitor has no such
    quantity). ``margin = |estimate - tolerance|`` and ``epsilon`` is the radius of the
    confidence sequence on the tolerance's side of the estimate, so
    ``in_ambiguity_zone = margin <= epsilon`` exactly when the tolerance lies inside the
    current confidence sequence: the trigger state is then not certain (SPEC: threshold
    fidelity). ``evidence`` holds monitor-specific numbers (e-values, parameters).
    """

    state: TriggerState
    n: int
    estimate: float = float("nan")
    lower: float = float("nan")
    upper: float = float("nan")
    tolerance: float = float("nan")
    margin: float = float("nan")
    epsilon: float = float("nan")
    in_ambiguity_zone: bool = False
    evidence: Mapping[str, float | int | str | bool] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-able dict (state by name)."""
        return {
            "state": self.state.name,
            "n": self.n,
            "estimate": self.estimate,
            "lower": self.lower,
            "upper": self.upper,
            "tolerance": self.tolerance,
            "margin": self.margin,
            "epsilon": self.epsilon,
            "in_ambiguity_zone": self.in_ambiguity_zone,
            "evidence": dict(self.evidence),
        }


def pack_status(status: MonitorStatus | None) -> dict[str, Any] | None:
    """A status as JSON (non-finite floats as strings): part of a monitor's state."""
    if status is None:
        return None
    d = status.to_dict()

    def conv(v: Any) -> Any:
        return pack_float(v) if isinstance(v, float) else v

    return {**{k: conv(v) for k, v in d.items() if k != "evidence"},
            "evidence": {k: conv(v) for k, v in d["evidence"].items()}}  # fmt: skip


def unpack_status(obj: Mapping[str, Any] | None) -> MonitorStatus | None:
    """The inverse of :func:`pack_status`."""
    if obj is None:
        return None

    def conv(v: Any) -> Any:
        return float(v) if isinstance(v, str) and v in ("inf", "-inf", "nan") else v

    return MonitorStatus(
        state=TriggerState[obj["state"]],
        n=int(obj["n"]),
        estimate=unpack_float(obj["estimate"]),
        lower=unpack_float(obj["lower"]),
        upper=unpack_float(obj["upper"]),
        tolerance=unpack_float(obj["tolerance"]),
        margin=unpack_float(obj["margin"]),
        epsilon=unpack_float(obj["epsilon"]),
        in_ambiguity_zone=bool(obj["in_ambiguity_zone"]),
        evidence={k: conv(v) for k, v in obj["evidence"].items()},
    )


@runtime_checkable
class Monitor(Protocol):
    """One small protocol for every monitor.

    ``update`` takes a scalar or a 1-D batch of observations and returns the trigger
    state after each observation (``int8`` values of :class:`TriggerState`); ``state`` and
    ``status`` are read-only views of the current state; ``reset`` forgets all evidence
    (the loop calls it after a validated policy is promoted). ``state_dict`` /
    ``load_state_dict`` save and restore the evidence as a JSON-able mapping
    (:mod:`npo.estimation.serial`): a monitor built with the same parameters that loads
    another's state continues exactly as that one would (the loop checkpoints it in the
    transaction of the data that changed it; ``npo.testing.check_monitor_state``).
    """

    def update(self, x: ArrayLike) -> np.ndarray: ...

    @property
    def state(self) -> TriggerState: ...

    @property
    def status(self) -> MonitorStatus: ...

    def reset(self) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def check_level(name: str, value: float, *, low: float = 0.0, high: float = float("inf")) -> float:
    """Validate a scalar parameter ``low < value < high`` (finite) or raise naming it."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValidationFailed(
            [ItemError(0, name, f"must be a number, got {value!r}")], what="parameter"
        ) from None
    if not np.isfinite(v) or not (low < v < high):
        raise ValidationFailed(
            [ItemError(0, name, f"must be finite and in ({low:g}, {high:g}), got {v!r}")],
            what="parameter",
        )
    return v


def check_levels(
    tolerance: float, critical: float | None, scale: float
) -> tuple[float, float, float]:
    """Validated ``(scale, tolerance, critical)`` of a loss monitor: ``0 < tolerance <
    critical < scale``; ``critical`` defaults to ``min(2 tolerance, (tolerance + scale)/2)``."""
    s = check_level("scale", scale)
    tol = check_level("tolerance", tolerance, high=s)
    crit = (
        min(2 * tol, 0.5 * (tol + s))
        if critical is None
        else check_level("critical", critical, low=tol, high=s)
    )
    return s, tol, crit


def band_status(
    state: TriggerState,
    n: int,
    estimate: float,
    lower: float,
    upper: float,
    tolerance: float,
    delta: float,
    evidence: Mapping[str, float | int | str | bool],
) -> MonitorStatus:
    """The status of a monitor with a confidence band (loss units), with the
    threshold-fidelity bound ``delta + 1[tolerance in band]`` (vacuous when it reaches 1)."""
    eps = (estimate - lower) if estimate >= tolerance else (upper - estimate)
    ambiguous = bool(lower <= tolerance <= upper)
    return MonitorStatus(
        state=state,
        n=n,
        estimate=estimate,
        lower=lower,
        upper=upper,
        tolerance=tolerance,
        margin=abs(estimate - tolerance),
        epsilon=eps,
        in_ambiguity_zone=ambiguous,
        evidence={
            **evidence,
            "fidelity_bound": delta + float(ambiguous),
            "fidelity_vacuous": delta + float(ambiguous) >= 1.0,  # no guarantee at all
        },
    )


def as_observations(
    x: ArrayLike, *, scale: float = 1.0, field_name: str = "x", binary: bool = False
) -> np.ndarray:
    """Validate observations in ``[0, scale]`` and return them divided by ``scale`` (float64, 1-D).

    Raises :class:`ValidationFailed` naming the first bad positions when a value is NaN,
    infinite or outside ``[0, scale]`` (or not 0/1 when ``binary``); nothing is consumed.
    """
    arr = np.asarray(x)
    if arr.ndim > 1:
        raise ValidationFailed(
            [ItemError(0, field_name, f"must be a scalar or 1-D array, got shape {arr.shape}")],
            what="observations",
        )
    try:
        arr = np.atleast_1d(arr).astype(np.float64, copy=False)
    except (TypeError, ValueError):
        raise ValidationFailed(
            [ItemError(0, field_name, "must be numeric")], what="observations"
        ) from None
    if binary:
        bad = ~((arr == 0.0) | (arr == 1.0))
        reason = "must be 0 or 1"
    else:
        bad = ~np.isfinite(arr) | (arr < 0.0) | (arr > scale)
        reason = f"must be finite and in [0, {scale:g}]"
    if bad.any():
        idx = np.flatnonzero(bad)
        errors = [ItemError(int(i), field_name, f"{reason}, got {arr[i]!r}") for i in idx[:10]]
        if len(idx) > 10:
            errors.append(ItemError(int(idx[10]), field_name, f"{len(idx) - 10} more bad values"))
        raise ValidationFailed(errors, what="observations")
    return arr / scale if scale != 1.0 else arr


def _forward_fill_flag(set_mask: np.ndarray, clear_mask: np.ndarray, initial: bool) -> np.ndarray:
    """Flag switched on by ``set_mask``, off by ``clear_mask`` (set wins); else it holds."""
    n = set_mask.shape[-1]
    event = set_mask | clear_mask
    idx = np.where(event, np.arange(n), -1)
    last = np.maximum.accumulate(idx, axis=-1)
    value = np.take_along_axis(set_mask, np.maximum(last, 0), axis=-1)
    return np.where(last >= 0, value, initial)


def hysteresis_states(
    lower: np.ndarray,
    upper: np.ndarray,
    tolerance: float,
    critical: float,
    initial: TriggerState | np.ndarray = TriggerState.OK,
) -> np.ndarray:
    """Trigger states from confidence-sequence bounds, with hysteresis, vectorised.

    Each level ``k`` (``tolerance`` for RETRAIN, ``critical`` for OVERRIDE) has a flag that
    switches on when ``lower > level`` and off when ``upper < level``; otherwise it holds.
    The state is the number of flags on (the OVERRIDE flag implies the RETRAIN flag because
    ``critical > tolerance``). So RETRAIN clears when ``upper < tolerance`` (SPEC) and OVERRIDE
    steps down to RETRAIN when ``upper < critical``. Works on ``(..., n)`` arrays; ``initial``
    is the state before the first column (scalar or one per row).
    """
    init = np.asarray(initial, dtype=np.int8)
    if init.ndim:
        init = init[..., None]
    retrain = _forward_fill_flag(lower > tolerance, upper < tolerance, init >= 1)
    override = _forward_fill_flag(lower > critical, upper < critical, init >= 2)
    return (retrain.astype(np.int8) + (override & retrain).astype(np.int8)).astype(np.int8)

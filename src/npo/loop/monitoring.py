"""The monitor step: observations in, trigger states and the loop's override mode out.

Three monitors (:mod:`npo.monitor`): the **loss** monitor on the Horvitz–Thompson terms
(default :class:`~npo.monitor.ChangeLevelMonitor`: e-detectors raise ``RETRAIN`` /
``OVERRIDE`` with any false trigger ≤ δ, a confidence band clears when ``u_t < λ``), the
**abstention-rate** and the **reviewer-disagreement** monitors (confidence sequences on
0/1 observations). Each change of a monitor's state is an event with the evidence that
caused it (the monitor's snapshot at the change, not at the end of the batch).

Override mode (SPEC §2): on ``OVERRIDE`` people (or a fallback policy) decide everything
until a validated policy serves *and* the band shows the loss below λ (``u_t < λ``, or
without a band 200 calm observations); both ends are audited. An operator may switch it on
or off (:meth:`MonitorStep.set_override`), audited with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from npo.errors import ItemError, ValidationFailed
from npo.monitor import AbstentionMonitor, DisagreementMonitor, Monitor, MonitorStatus, TriggerState

if TYPE_CHECKING:
    from npo.loop.config import LoopConfig
    from npo.loop.observations import Observations
    from npo.loop.options import LoopOptions

__all__ = ["MonitorStep", "make_monitor", "monitor_status"]

Event = tuple[str, dict[str, Any]]


def _bad(field_: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(0, field_, reason)], what="loop input")


def make_monitor(config: LoopConfig, options: LoopOptions) -> Monitor:
    """The loss monitor chosen by ``options.monitor``, sized from the configuration.

    Scale (bound on one observation): ``C_max / (p_min · response_floor)`` with IPW,
    ``C_max`` without. The default (``change_level``) raises triggers with e-detectors at
    ``delta`` split over its two up-detectors, planned for ``monitor.horizon`` decisions,
    and reports a band whose window resolves ``lambda`` (``monitor.window = "auto"``).
    """
    from npo.monitor import (
        ADWINMonitor,
        ChangeLevelMonitor,
        ConfidenceSequenceMonitor,
        EDetectorMonitor,
        FixedWindowMonitor,
        NullMonitor,
        PageHinkleyMonitor,
        band_window,
    )

    c_max = config.cost_matrix.c_max
    scale = c_max / (config.p_min * config.monitor.response_floor) if options.ipw else c_max
    lam, crit, delta = config.lambda_, config.lambda_crit, config.delta
    if crit >= scale:
        raise _bad("lambda_crit", f"must be below the observation bound {scale:g}")
    mc = config.monitor
    horizon = mc.horizon
    window: int | None
    if mc.window == "auto":
        window = band_window(lam, scale, delta=delta, horizon=horizon, resolution=mc.resolution)
    else:
        window = mc.window  # type: ignore[assignment]
    kind = options.monitor
    if options.monitor_params and kind not in ("adwin", "page_hinkley"):
        raise _bad("monitor_params", f"only the River monitors take parameters, not {kind!r}")
    if kind == "change_level":
        return ChangeLevelMonitor(
            lam, crit, scale=scale, delta=delta, horizon=horizon, window=window or horizon
        )
    if kind == "cs":
        return ConfidenceSequenceMonitor(lam, crit, scale=scale, delta=delta, window=window)
    if kind == "edetector":
        return EDetectorMonitor(lam, crit, scale=scale, alpha=delta, horizon=horizon)
    if kind == "fixed_window":
        return FixedWindowMonitor(lam, crit, scale=scale, window=window or 1000, delta=delta)
    if kind == "adwin":
        return ADWINMonitor(scale=scale, **options.monitor_params)
    if kind == "page_hinkley":
        return PageHinkleyMonitor(scale=scale, **options.monitor_params)
    return NullMonitor(scale=scale)


def _rate_window(config: LoopConfig, tolerance: float) -> int | None:
    """The recent window of a rate monitor (observations in [0, 1]): the configured one, or
    with ``"auto"`` the smallest whose band resolves ``tolerance``."""
    from npo.monitor import band_window

    mc = config.monitor
    if mc.window != "auto":
        return mc.window  # type: ignore[return-value]
    return band_window(
        tolerance, 1.0, delta=config.delta, horizon=mc.horizon, resolution=mc.resolution
    )


def monitor_status(monitor: Monitor, status: MonitorStatus | None = None) -> dict[str, Any]:
    """A status as a JSON-able dict (non-finite numbers as None)."""
    d = (status or monitor.status).to_dict()
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _fired(monitor: Monitor) -> dict[str, Any]:
    """The evidence of the last change of state (the snapshot taken when it happened, where
    the monitor keeps one: a batch may move the bounds again before it ends)."""
    return monitor_status(monitor, getattr(monitor, "transition", None))


class MonitorStep:
    """The three monitors, the trigger state the loop acts on, and override mode.

    ``monitor`` replaces the loss monitor of ``options.monitor`` (it must implement the
    serialisation protocol, ``state_dict`` / ``load_state_dict``).
    """

    def __init__(
        self, config: LoopConfig, options: LoopOptions, monitor: Monitor | None = None
    ) -> None:
        self.config = config
        self.allow_override = options.allow_override
        self.loss: Monitor = monitor or make_monitor(config, options)
        abst = config.monitor.abstention_tolerance
        self.abstention = AbstentionMonitor(
            abst, min(0.999, 2 * abst), delta=config.delta, window=_rate_window(config, abst)
        )
        dis = config.monitor.disagreement_tolerance
        self.disagreement = DisagreementMonitor(
            dis, min(0.999, 2 * dis), delta=config.delta, window=_rate_window(config, dis)
        )
        self.state = TriggerState.OK  # the loss monitor's state the loop last acted on
        self.abstention_state = TriggerState.OK
        self.disagreement_state = TriggerState.OK
        self.override = False
        self.fixed_in_override = False  # a validated policy was promoted during override

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss.state_dict(),
            "abstention": self.abstention.state_dict(),
            "disagreement": self.disagreement.state_dict(),
            "state": self.state.name,
            "abstention_state": self.abstention_state.name,
            "disagreement_state": self.disagreement_state.name,
            "override": self.override,
            "fixed_in_override": self.fixed_in_override,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.loss.load_state_dict(state["loss"])
        self.abstention.load_state_dict(state["abstention"])
        self.disagreement.load_state_dict(state["disagreement"])
        self.state = TriggerState[state["state"]]
        self.abstention_state = TriggerState[state["abstention_state"]]
        self.disagreement_state = TriggerState[state["disagreement_state"]]
        self.override = bool(state["override"])
        self.fixed_in_override = bool(state["fixed_in_override"])

    # ------------------------------------------------------------------ stepping
    def observe(self, obs: Observations) -> list[Event]:
        """Feed the rate monitors and the loss monitor; the rate monitors' changes of state
        as events (the loss monitor's are judged by :meth:`react`)."""
        events: list[Event] = []
        for name in ("disagreement", "abstention"):
            x = getattr(obs, name)
            if not x.size:
                continue
            monitor: Monitor = getattr(self, name)
            monitor.update(x)
            before, st = getattr(self, f"{name}_state"), monitor.state
            if st != before:
                events.append(
                    (
                        f"{name}.trigger",
                        {"from": before.name, "to": st.name, "evidence": monitor.status.to_dict()},
                    )
                )
                setattr(self, f"{name}_state", st)
        if obs.loss.size:
            # no clipping: the terms are bounded by construction (p >= p_min, r̂ clipped in
            # the stream), so a term above the monitor's scale is a bug it must reject
            self.loss.update(obs.loss)
        return events

    def react(self, serving: Mapping[str, str], *, fallback: bool) -> tuple[list[Event], bool]:
        """Changes of the loss monitor's state -> a ``trigger`` event (with the evidence
        that fired and the serving versions), and the start of override mode. Returns the
        events and whether the state just rose to RETRAIN or above."""
        st = self.loss.state
        events: list[Event] = []
        rose = False
        if st != self.state:
            events.append(
                (
                    "trigger",
                    {
                        "from": self.state.name,
                        "to": st.name,
                        "lambda": self.config.lambda_,
                        "lambda_crit": self.config.lambda_crit,
                        "policy": serving["policy"],
                        "thresholds": serving["thresholds"],
                        "evidence": _fired(self.loss),
                        "now": monitor_status(self.loss),
                    },
                )
            )
            rose = st >= TriggerState.RETRAIN and self.state < TriggerState.RETRAIN
            self.state = st
        if st == TriggerState.OVERRIDE and not self.override and self.allow_override:
            self.override = True
            self.fixed_in_override = False
            events.append(
                (
                    "override.start",
                    {
                        "why": "evidence that the loss is above lambda_crit",
                        "serving": "fallback policy" if fallback else "people",
                        "evidence": _fired(self.loss),
                    },
                )
            )
        return events, rose

    def maybe_end_override(self, policy: str) -> list[Event]:
        """Override ends once a validated policy serves and the band clears λ."""
        if not (self.override and self.fixed_in_override and self._cleared()):
            return []
        self.override = False
        return [("override.end", {"policy": policy, "evidence": monitor_status(self.loss)})]

    def _cleared(self) -> bool:
        if self.loss.state != TriggerState.OK:
            return False
        s = self.loss.status
        if math.isfinite(s.upper):
            return s.upper < self.config.lambda_
        return s.n >= 200

    def set_override(self, on: bool, reason: str) -> list[Event]:
        """An operator switches override mode on or off (audited with ``reason``)."""
        if bool(on) == self.override:
            return []
        self.override = bool(on)
        self.fixed_in_override = False
        kind = "override.start" if on else "override.end"
        return [(kind, {"why": reason, "by": "operator", "evidence": monitor_status(self.loss)})]

    def reset_loss(self) -> None:
        """A new rule serves: the old evidence is about another rule."""
        self.loss.reset()
        self.state = self.loss.state
        if self.override:
            self.fixed_in_override = True

"""The audit log in words: the kinds of record, one plain sentence per record, and the
selection ``npo audit`` shows.

The loop writes one ``loop.decisions`` record per batch of decisions (hundreds in a
day); by default they are not counted against ``limit`` and each run of them between two
other records is summarised in one entry, so that triggers, verdicts and promotions are
not pushed out of view. Reading is bounded: at most :data:`MAX_READ` records of a store
are read, whatever its history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from npo.errors import shorten

DECISIONS = "loop.decisions"

KINDS: dict[str, str] = {
    "policy.added": "a policy version was stored",
    "policy.validation": "a candidate policy was compared with the serving one (the verdict)",
    "policy.activated": "a policy version started to serve (promotion or rollback)",
    "policy.forced_promotion": "a policy was promoted without a passing verdict (--force)",
    "thresholds.added": "a threshold version was stored",
    "thresholds.activated": "a threshold version started to serve",
    "loop.trigger": "the alignment monitor changed state (OK / RETRAIN / OVERRIDE)",
    "loop.abstention.trigger": "the abstention-rate monitor changed state",
    "loop.disagreement.trigger": "the reviewer-disagreement monitor changed state",
    "loop.candidate": "the loop trained a candidate policy",
    "loop.rejected": "a candidate was not promoted (its verdict was hold or reject)",
    "loop.override.start": "decisions were handed back to people (OVERRIDE)",
    "loop.override.end": "the policy decides again after an OVERRIDE",
    DECISIONS: "one batch of decisions the loop made (routine: summarised unless --all)",
}
"""Every kind of audit record NPO writes, with what it means."""

GROUPS: dict[str, tuple[str, ...]] = {
    "trigger": ("loop.trigger", "loop.abstention.trigger", "loop.disagreement.trigger"),
    "promotion": ("policy.activated", "policy.forced_promotion"),
    "validation": ("policy.validation",),
    "candidate": ("loop.candidate",),
    "rejected": ("loop.rejected",),
    "thresholds": ("thresholds.added", "thresholds.activated"),
    "override": ("loop.override.start", "loop.override.end"),
    "policy": ("policy.added", "policy.validation", "policy.activated", "policy.forced_promotion"),
    "decisions": (DECISIONS,),
}
"""Short names for ``--kind``: each stands for the kinds listed."""

MAX_READ = 100_000
"""Most audit records read to fill one view."""


class UnknownKind(ValueError):
    """A ``--kind`` that is neither a known kind, a group, nor a kind in the store."""


def resolve_kinds(names: Iterable[str], in_store: Callable[[str], bool]) -> tuple[str, ...]:
    """Kinds and group names -> kinds. A name that is not known here is accepted if the
    store holds records of that kind (``in_store``); otherwise :class:`UnknownKind`."""
    out: list[str] = []
    for name in names:
        kinds = GROUPS.get(name) or ((name,) if name in KINDS or in_store(name) else None)
        if kinds is None:
            raise UnknownKind(
                f"--kind: unknown kind {shorten(name, 80)!r}; use a group "
                f"({', '.join(GROUPS)}) or a kind ({', '.join(KINDS)}); "
                "npo audit --kinds lists them"
            )
        out += [k for k in kinds if k not in out]
    return tuple(out)


# --------------------------------------------------------------------------------------
# sentences
# --------------------------------------------------------------------------------------
def _num(v: Any, nd: int = 4) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return "–" if v is None else shorten(str(v), 40)
    return f"{v:.{nd}f}" if isinstance(v, float) else f"{v:,}"


def _txt(v: Any, limit: int = 160) -> str:
    return shorten(str(v), limit)


def _time(v: Any) -> str:
    return _txt(v, 40).replace("T", " ").removesuffix("+00:00")


def trigger_evidence(ev: Mapping[str, Any]) -> str:
    """What a trigger fired on, in words: the estimate and its confidence sequence, or (when
    the e-detector fired: a change detector has no point estimate) its e-value against the
    threshold beside the band; "" when the record carries neither."""
    inner = ev.get("evidence") if isinstance(ev.get("evidence"), Mapping) else {}
    conf = inner.get("delta")
    level = f"{100 * (1 - conf):.0f}% " if isinstance(conf, float) else ""
    band = (
        f"{level}confidence sequence [{_num(ev.get('lower'))}, {_num(ev.get('upper'))}] on "
        f"{_num(ev.get('n'))} decisions"
    )
    if ev.get("estimate") is not None:
        return f"estimated loss {_num(ev.get('estimate'))}, {band}"
    fired = inner.get("fired")
    if isinstance(fired, str) and fired.startswith("log_e"):
        value, limit = (
            inner.get(f"{fired}_at_alarm", inner.get(fired)),
            inner.get(f"{fired}_threshold"),
        )
        return f"e-detector fired (log e-value {_num(value)} ≥ threshold {_num(limit)}); {band}"
    if ev.get("lower") is not None or ev.get("upper") is not None:
        return band
    return ""


def _trigger(p: Mapping[str, Any], what: str) -> str:
    ev = p.get("evidence") or {}
    head = f"{what} {_txt(p.get('from'), 20)} → {_txt(p.get('to'), 20)}"
    if "step" in p:
        head += f" at step {_num(p['step'])}"
    parts = [head]
    if said := trigger_evidence(ev):
        parts.append(said)
    if "lambda" in p:
        parts.append(f"λ = {_txt(p['lambda'], 20)}, λ_crit = {_txt(p.get('lambda_crit'), 20)}")
    if p.get("policy"):
        parts.append(f"policy {_txt(p['policy'], 60)}, thresholds {_txt(p.get('thresholds'), 60)}")
    return "; ".join(parts)


def _validation(p: Mapping[str, Any]) -> str:
    level = p.get("delta")
    bound = f"{100 * (1 - level):.0f}% upper bound" if isinstance(level, float) else "upper bound"
    margin = float(p.get("margin") or 0.0)
    needed = (margin if p.get("mode") == "non_inferiority" else -margin) + 0.0  # no "-0"
    out = (
        f"{_txt(p.get('candidate'), 60)} vs {_txt(p.get('incumbent'), 60)}: "
        f"{_txt(p.get('outcome'), 20)} — Δ loss {_num(p.get('diff'))}, {bound} "
        f"{_num(p.get('diff_upper'))} (promotion needs < {needed:g}) on "
        f"{_num(p.get('n'))} reviews"
    )
    reasons = [_txt(r) for r in p.get("reasons") or []]
    return out + (": " + "; ".join(reasons) if reasons else "")


def _activated(p: Mapping[str, Any], what: str) -> str:
    ev = p.get("evidence") or {}
    was = "none before" if p.get("previous") is None else f"was {_txt(p['previous'], 60)}"
    out = f"{what} {_txt(p.get('version'), 60)} serves ({was})"
    out += f": {_txt(p.get('reason'))}"
    verdict = ev.get("verdict") if isinstance(ev, dict) else None
    if isinstance(verdict, dict) and verdict.get("diff") is not None:
        out += f" (verdict {_txt(verdict.get('outcome'), 20)}, Δ loss {_num(verdict['diff'])})"
    if isinstance(ev, dict) and ev.get("forced"):
        out += " — FORCED, without a passing verdict"
    if isinstance(ev, dict) and ev.get("rollback_from"):
        out += f" — rollback from {_txt(ev['rollback_from'], 60)}"
    if isinstance(ev, dict) and isinstance(ev.get("loss"), int | float):
        out += (
            f" (estimated loss {_num(ev['loss'])}, deferral rate {_num(ev.get('deferral_rate'))})"
        )
    return out


def _thresholds_added(p: Mapping[str, Any]) -> str:
    t = p.get("thresholds") or {}
    out = f"threshold version {_txt(p.get('version'), 60)} stored: τ = {_num(t.get('global'))}"
    if t.get("per_action"):
        out += f", {len(t['per_action'])} per-action threshold(s)"
    if t.get("per_segment"):
        out += f", thresholds for {len(t['per_segment'])} segment(s)"
    if t.get("note"):
        out += f" ({_txt(t['note'])})"
    return out


def _candidate(p: Mapping[str, Any]) -> str:
    why = p.get("why")
    why = "on schedule" if why == "schedule" else f"after {_txt(why, 30)}" if why else "trained"
    return (
        f"candidate {_txt(p.get('version'), 60)} trained at step {_num(p.get('step'))} ({why}) "
        f"from {_txt(p.get('parent'), 60)} on {_num(p.get('trained_on'))} labelled reviews "
        f"since {_time(p.get('since'))}; validated on the reviews from {_time(p.get('cutoff'))}"
    )


def _decisions(p: Mapping[str, Any]) -> str:
    steps = p.get("steps") or ["?", "?"]
    mix = p.get("policy/thresholds") or {}
    served = ", ".join(f"{_txt(k, 60)}: {_num(v)}" for k, v in list(mix.items())[:5])
    out = (
        f"steps {_num(steps[0])}–{_num(steps[-1])}: {_num(p.get('n'))} decisions, "
        f"{_num(p.get('deferred'))} deferred to people"
    )
    if served:
        out += f" (policy/thresholds {served})"
    if p.get("override"):
        out += "; in OVERRIDE"
    return out


def _generic(p: Mapping[str, Any]) -> str:
    parts = []
    for k, v in list(p.items())[:8]:
        val = v if isinstance(v, str | int | float | bool) or v is None else "{…}"
        parts.append(f"{_txt(k, 40)} = {_txt(val, 60)}")
    return ", ".join(parts) + (" …" if len(p) > 8 else "")


def describe(kind: str, payload: Mapping[str, Any]) -> str:
    """One plain sentence saying what an audit record records (values shortened)."""
    p = payload if isinstance(payload, Mapping) else {}
    try:
        if kind == "policy.added":
            parent = f" from {_txt(p['parent'], 60)}" if p.get("parent") else ""
            note = f": {_txt(p['note'])}" if p.get("note") else ""
            version, how = _txt(p.get("version"), 60), _txt(p.get("kind"), 40)
            return f"policy {version} stored ({how}{parent}){note}"
        if kind == "policy.validation":
            return _validation(p)
        if kind == "policy.activated":
            return _activated(p, "policy")
        if kind == "policy.forced_promotion":
            return (
                f"FORCED promotion of {_txt(p.get('version'), 60)} (was "
                f"{_txt(p.get('previous'), 60)}) without a passing verdict: "
                f"{_txt(p.get('reason') or 'no reason given')}"
            )
        if kind == "thresholds.added":
            return _thresholds_added(p)
        if kind == "thresholds.activated":
            return _activated(p, "threshold version")
        if kind == "loop.trigger":
            return _trigger(p, "alignment monitor")
        if kind == "loop.abstention.trigger":
            return _trigger(p, "abstention monitor")
        if kind == "loop.disagreement.trigger":
            return _trigger(p, "disagreement monitor")
        if kind == "loop.candidate":
            return _candidate(p)
        if kind == "loop.rejected":
            reasons = "; ".join(_txt(r) for r in p.get("reasons") or []) or "no reason recorded"
            return (
                f"candidate {_txt(p.get('candidate'), 60)} not promoted at step "
                f"{_num(p.get('step'))} ({_txt(p.get('outcome'), 20)}): {reasons}"
            )
        if kind == "loop.override.start":
            return (
                f"OVERRIDE starts at step {_num(p.get('step'))}: {_txt(p.get('why'))}; "
                f"{_txt(p.get('serving'), 60)} decide(s)"
            )
        if kind == "loop.override.end":
            return (
                f"OVERRIDE ends at step {_num(p.get('step'))}: policy "
                f"{_txt(p.get('policy'), 60)} decides again"
            )
        if kind == DECISIONS:
            return _decisions(p)
    except (TypeError, ValueError, KeyError, AttributeError):
        pass  # a payload of an unexpected shape: say what it holds
    return _generic(p)


# --------------------------------------------------------------------------------------
# selection
# --------------------------------------------------------------------------------------
@dataclass
class Entry:
    """One line of the view: a record, or a run of ``loop.decisions`` records."""

    seq: int
    last_seq: int
    timestamp: datetime
    last_timestamp: datetime
    kind: str
    what: str
    payload: dict[str, Any]
    hash: str | None = None
    records: int = 1

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "seq": self.seq,
            "timestamp": self.timestamp.isoformat(),
            "kind": self.kind,
            "what": self.what,
            "payload": self.payload,
            "hash": self.hash,
        }
        if self.records > 1:
            d["records"] = self.records
            d["last_seq"] = self.last_seq
            d["last_timestamp"] = self.last_timestamp.isoformat()
        return d


@dataclass
class View:
    """What ``npo audit`` shows: ``entries`` (oldest first), what was read and left out."""

    entries: list[Entry]
    kinds: tuple[str, ...] | None
    summarised: bool
    read: int
    read_all: bool
    hidden_before: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kinds": list(self.kinds) if self.kinds else None,
            "decisions_summarised": self.summarised,
            "records_read": self.read,
            "notes": self.notes,
            "entries": [e.to_dict() for e in self.entries],
        }


def _entry(r: Any) -> Entry:
    return Entry(
        r.seq, r.seq, r.timestamp, r.timestamp, r.kind, describe(r.kind, r.payload),
        dict(r.payload), r.hash,
    )  # fmt: skip


def _run_entry(run: Sequence[Any]) -> Entry:
    """A run of ``loop.decisions`` records as one entry with their totals."""
    if len(run) == 1:
        return _entry(run[0])
    steps = [s for r in run for s in (r.payload.get("steps") or [])]
    mix: dict[str, int] = {}
    for r in run:
        for k, v in (r.payload.get("policy/thresholds") or {}).items():
            mix[k] = mix.get(k, 0) + int(v)
    total = {
        "steps": [min(steps), max(steps)] if steps else None,
        "n": sum(int(r.payload.get("n") or 0) for r in run),
        "deferred": sum(int(r.payload.get("deferred") or 0) for r in run),
        "policy/thresholds": mix,
        "override": any(r.payload.get("override") for r in run),
    }
    first, last = run[0], run[-1]
    what = f"{len(run)} decision batches — " + _decisions(total)
    return Entry(
        first.seq, last.seq, first.timestamp, last.timestamp, DECISIONS, what, total,
        None, len(run),
    )  # fmt: skip


def select(
    store: Any, *, kinds: Sequence[str] | None = None, limit: int = 50, show_all: bool = False
) -> View:
    """The most recent ``limit`` entries of the audit log.

    ``kinds``: only these kinds (each record shown). Otherwise, unless ``show_all``,
    ``loop.decisions`` records do not count against ``limit`` and each run of them is one
    entry (reading back until ``limit`` other records are found, at most
    :data:`MAX_READ` records)."""
    if kinds:
        got: dict[int, Any] = {}
        for k in kinds:
            for r in store.audit(kind=k, limit=limit):
                got[r.seq] = r
        recs = [got[s] for s in sorted(got)][-limit:] if limit else []
        return View([_entry(r) for r in recs], tuple(kinds), False, len(got), True)
    if show_all:
        recs = store.audit(limit=limit)
        return View([_entry(r) for r in recs], None, False, len(recs), True)
    m = max(4 * limit, 200)
    while True:
        recs = store.audit(limit=m)
        complete = len(recs) < m
        n_other = sum(r.kind != DECISIONS for r in recs)
        if n_other >= limit or complete or m >= MAX_READ:
            break
        m = min(MAX_READ, 4 * m)
    others = [i for i, r in enumerate(recs) if r.kind != DECISIONS]
    start = others[-limit] if len(others) >= limit and limit else (0 if limit else len(recs))
    entries: list[Entry] = []
    run: list[Any] = []
    for r in recs[start:]:
        if r.kind == DECISIONS:
            run.append(r)
            continue
        if run:
            entries.append(_run_entry(run))
            run = []
        entries.append(_entry(r))
    if run:
        entries.append(_run_entry(run))
    view = View(entries, None, True, len(recs), complete, hidden_before=start > 0 or not complete)
    if not complete and len(others) < limit:
        view.notes.append(
            f"only the most recent {len(recs):,} records were read "
            f"({len(others)} of them other than decision batches)"
        )
    return view

"""What each page shows, read through the functions the API routes call (no statistics
here): ``/v1/monitor`` (:func:`npo.service.loop_gateway.status_dict`; with ``history=true``:
``Store.monitor_history``), ``/v1/alignment`` (:func:`npo.service.routes.alignment.alignment`),
``/v1/policies`` (:func:`~npo.service.routes.policies.policy_out`), ``/v1/audit`` with
:mod:`npo.report.audit`'s sentences, ``/v1/review-queue`` and ``/v1/feedback``.

Every function takes the process's :class:`~npo.service.state.ServiceState` and runs
under the store's lock (``state.run``); each returns plain JSON-able data.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from typing import Any

from npo.report import audit as audit_words
from npo.service import loop_gateway as gw
from npo.service.routes.alignment import alignment
from npo.service.routes.policies import policy_out
from npo.store import queue

#: the interval level of the tables (as ``GET /v1/alignment``'s default)
DELTA = 0.05
#: audit kinds drawn on the chart, and their labels
MARKER_KINDS = ("loop.trigger", "policy.activated", "loop.override.start", "loop.override.end")


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _count(counts: Mapping[str, Any], name: str) -> int:
    """A loop count, named ``loop.NAME`` (today's gateway) or ``NAME`` (durable loop)."""
    v = counts.get(f"loop.{name}", counts.get(name))
    return int(v or 0)


def _alignment(state: Any, by: str) -> dict[str, Any]:
    return alignment(
        state.store,
        state.config.cost_matrix,
        by=by,
        segment=None,
        since=None,
        until=None,
        window_s=86_400,
        delta=DELTA,
    )


def markers(store: Any, limit: int = 200) -> list[dict[str, Any]]:
    """Trigger changes (RETRAIN, OVERRIDE, cleared), OVERRIDE start / end and policy
    activations (promotions, rollbacks) from the audit log, oldest first."""
    out = []
    for kind in MARKER_KINDS:
        for r in store.audit(kind=kind, limit=limit):
            p = r.payload
            if kind == "loop.trigger":
                to = str(p.get("to", "?"))
                label, cls = ("cleared" if to == "OK" else to), to.lower()
            elif kind == "policy.activated":
                label, cls = f"serves {p.get('version')}", "promotion"
            else:
                label = "OVERRIDE starts" if kind.endswith("start") else "OVERRIDE ends"
                cls = "override"
            out.append(
                {
                    "seq": r.seq,
                    "at": r.timestamp.isoformat(),
                    "kind": kind,
                    "label": label,
                    "cls": cls,
                    "what": audit_words.describe(kind, p),
                }
            )
    return sorted(out, key=lambda m: m["seq"])


def overview(state: Any, max_points: int = 500) -> dict[str, Any]:
    """The overview's numbers and series (also the JSON the page polls)."""
    store, cfg = state.store, state.config
    st = gw.status_dict(state.loop)
    mon = st.get("monitor") or {}
    al = _alignment(state, "none")
    ov = al["overall"]
    counts = st.get("counts") or {}
    n_dec, n_def = _count(counts, "decisions"), _count(counts, "deferred")
    ev = mon.get("evidence") or {}
    fidelity = _num(ev.get("fidelity_bound"))
    c_max = float(cfg.cost_matrix.c_max)
    return {
        "state": mon.get("state", "OK"),
        "override": bool(st.get("override")),
        "open_triggers": st.get("open_triggers"),
        "serving": st.get("serving") or {},
        "lam": float(cfg.lambda_),
        "lam_crit": float(cfg.lambda_crit),
        "c_max": c_max,
        "monitor": {
            "estimate": _num(mon.get("estimate")),
            "lower": _num(mon.get("lower")),
            "upper": _num(mon.get("upper")),
            "n": int(mon.get("n") or 0),
            "delta": _num(mon.get("delta")) or DELTA,
            "upper_vacuous": (_num(mon.get("upper")) or 0.0) >= c_max,
            "margin": _num(mon.get("margin")),
            "epsilon": _num(mon.get("epsilon")),
            "in_ambiguity_zone": bool(mon.get("in_ambiguity_zone")),
            "fidelity_bound": fidelity,
            "fidelity_vacuous": fidelity is not None and fidelity >= 1.0,
        },
        "alignment": {
            "loss": ov.get("loss"),
            "lower": ov.get("lower"),
            "upper": ov.get("upper"),
            "n_labelled": ov.get("n_labelled"),
            "n_abstained": ov.get("n_abstained"),
            "abstention_rate": ov.get("abstention_rate"),
            "upper_vacuous": (ov.get("upper") or 0.0) >= c_max,
        },
        "decisions": n_dec,
        "deferred": n_def,
        "deferral_rate": (n_def / n_dec) if n_dec else None,
        "n_feedback": al["n_feedback"],
        "series": gw.json_safe([p.to_dict() for p in store.monitor_history(max_points)]),
        "markers": markers(store),
    }


def segments(state: Any) -> list[dict[str, Any]]:
    """Alignment loss with its interval, abstentions and agreement by segment (as
    ``GET /v1/alignment?by=segment``)."""
    return list(_alignment(state, "segment")["groups"])


def reviewers(state: Any) -> dict[str, Any]:
    """Per reviewer: loss with interval of the decisions they labelled, like / override /
    abstention rates, agreement with peers and the rubber-stamping / discordant flags (the
    statistics of ``npo report --by reviewer``)."""
    from npo.estimation import (
        alignment_breakdown_from_cells,
        fleiss_kappa_from_sums,
        reviewer_stats_from_counts,
    )

    sm = state.store.summary(by="reviewer")
    br = alignment_breakdown_from_cells(
        sm.cells, state.config.cost_matrix, by="reviewer", delta=DELTA
    )
    loss = {str(g.key): g.to_dict() for g in br.groups}
    rv = sm.reviewers
    rows = []
    for s in reviewer_stats_from_counts(rv.keys, rv.counts, rv.shared, rv.agree, delta=DELTA):
        if s.n == 0:
            continue
        d = s.to_dict()
        g = loss.get(str(d["reviewer"]), {})
        d.update({k: g.get(k) for k in ("loss", "lower", "upper", "n_labelled")})
        rows.append(d)
    kappa = fleiss_kappa_from_sums(rv.fleiss_items, rv.fleiss_sum_p, rv.fleiss_labels)
    return {"rows": rows, "fleiss_kappa": None if math.isnan(kappa) else kappa}


def policies(state: Any) -> list[dict[str, Any]]:
    """Every policy version (as ``GET /v1/policies``) with its validation verdicts and
    their evidence from the audit log, newest verdict first."""
    store = state.store
    served = gw.served_versions(store)
    verdicts: dict[str, list[dict[str, Any]]] = {}
    for r in store.audit(kind="policy.validation", limit=1000):
        verdicts.setdefault(str(r.payload.get("candidate")), []).insert(
            0,
            {
                "seq": r.seq,
                "at": r.timestamp.isoformat(),
                "outcome": r.payload.get("outcome"),
                "what": audit_words.describe(r.kind, r.payload),
            },
        )
    out = []
    for rec in store.policies():
        p = gw.json_safe(policy_out(store, rec, served, False))
        p["created_at"] = rec.created_at.isoformat()
        p["verdicts"] = verdicts.get(rec.version, [])
        out.append(p)
    return out


def audit(state: Any, kind: str | None, limit: int = 200) -> dict[str, Any]:
    """The audit timeline in sentences (``npo audit``'s selection) and the hash chain's
    verification (as ``GET /v1/audit/verify``)."""
    store = state.store
    kinds = None
    if kind:
        kinds = audit_words.resolve_kinds([kind], lambda k: bool(store.audit(kind=k, limit=1)))
    view = audit_words.select(store, kinds=kinds, limit=limit)
    v = store.verify_audit()
    return {
        "entries": [e.to_dict() for e in reversed(view.entries)],
        "notes": view.notes,
        "verify": {"ok": v.ok, "checked": v.checked, "problems": v.problems[:20], "head": v.head},
        "groups": list(audit_words.GROUPS),
        "kind": kind,
    }


def next_item(state: Any, reviewer: str) -> dict[str, Any]:
    """The next decision for ``reviewer`` from the review queue, claimed (as
    ``GET /v1/review-queue?limit=1``), and a fresh feedback id for its answer."""
    items = queue.claim(state.store, reviewer, limit=1, ttl_s=state.settings.claim_ttl_s)
    item = items[0].to_dict() if items else None
    if item is not None:
        item["feedback_id"] = f"web-{uuid.uuid4().hex}"
    return {"item": item, "pending": queue.pending(state.store)}


def answer(state: Any, reviewer: str, item: Mapping[str, Any]) -> dict[str, Any]:
    """Store one answer through the feedback path of ``POST /v1/feedback`` (idempotent by
    its id) and give back the reviewer's claim on the decision."""
    new, events = gw.receive_feedback(state.loop, [dict(item, reviewer_id=reviewer)])
    queue.release(state.store, reviewer, [str(item["decision_id"])])
    return {"new": len(new), "events": [e.to_dict() for e in events]}

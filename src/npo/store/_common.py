"""Pieces shared by the SQL backends: table layouts, the audit hash chain, (de)serialising
policy and threshold versions, and turning fetched rows into the estimator arrays."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import numpy as np

from npo.domain import ActionSpace, PolicyVersion, ThresholdSet
from npo.errors import ItemError, ValidationFailed
from npo.store.base import AuditRecord, AuditVerification, DecisionArrays, LabelledFeedback
from npo.store.validate import from_us, to_us

#: Column order of each event table (what ``ingest_*`` writes), and the columns compared
#: when an id is re-sent. ``ts`` is compared only when the re-sent item carried a time.
ORDER = {
    "scenarios": ("id", "segment", "features", "ts"),
    "decisions": (
        "id",
        "scenario_id",
        "policy_version",
        "threshold_version",
        "scores",
        "action",
        "propensity",
        "segment",
        "ts",
    ),
    "feedback": ("id", "decision_id", "reviewer_id", "kind", "action", "comment", "ts"),
}
#: Field names as users know them (the record's names), for error messages.
PUBLIC_NAME = {"ts": "timestamp"}

GENESIS = "0" * 64


def public(field: str) -> str:
    return PUBLIC_NAME.get(field, field)


# --------------------------------------------------------------------------------------
# audit chain
# --------------------------------------------------------------------------------------
def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (datetime, date)):
        return o.isoformat()
    if isinstance(o, (set, frozenset, tuple)):
        return list(o)
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    if hasattr(o, "to_dict"):
        return o.to_dict()
    raise TypeError(f"payload: value of type {type(o).__name__} is not JSON-serialisable")


def _clean(o: Any) -> Any:
    """Non-finite floats are not JSON: write them as strings so hashing stays canonical."""
    if isinstance(o, float) and not math.isfinite(o):
        return repr(o)
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def canonical_json(obj: Any) -> str:
    """Sorted keys, no whitespace, UTF-8, no NaN: the same object always hashes the same."""
    text = json.dumps(obj, default=_json_default, sort_keys=True, separators=(",", ":"))
    return json.dumps(
        _clean(json.loads(text)),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def normalise_payload(payload: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    if not isinstance(payload, Mapping):
        raise ValidationFailed(
            [ItemError(0, "payload", f"must be a mapping, got {type(payload).__name__}")],
            what="audit record",
        )
    try:
        text = canonical_json(dict(payload))
    except TypeError as e:
        raise ValidationFailed([ItemError(0, "payload", str(e))], what="audit record") from None
    return json.loads(text), text


def audit_hash(prev_hash: str, seq: int, ts_us: int, kind: str, payload_json: str) -> str:
    """``sha256(prev_hash ‖ canonical JSON of (seq, timestamp, kind, payload))``."""
    body = (
        '{"kind":'
        + json.dumps(kind, ensure_ascii=False)
        + ',"payload":'
        + payload_json
        + ',"seq":'
        + str(int(seq))
        + ',"timestamp":'
        + str(int(ts_us))
        + "}"
    )
    return hashlib.sha256((prev_hash + body).encode("utf-8")).hexdigest()


def check_kind(kind: str) -> None:
    if not isinstance(kind, str) or not kind.strip() or len(kind) > 200:
        raise ValidationFailed(
            [ItemError(0, "kind", "must be a non-empty string of at most 200 characters")],
            what="audit record",
        )


def audit_record(row: Sequence[Any]) -> AuditRecord:
    seq, ts, kind, payload, prev, h = row
    return AuditRecord(int(seq), from_us(ts), kind, json.loads(payload), prev, h)


def verify_chain(rows: Sequence[Sequence[Any]], head: tuple[int, str] | None) -> AuditVerification:
    """Check seq contiguity, each link, each hash, and the stored head (count + last hash)."""
    problems: list[str] = []
    prev = GENESIS
    expect = 1
    for seq, ts, kind, payload, prev_hash, h in rows:
        if seq != expect:
            problems.append(f"seq {expect}..{seq - 1} missing (record(s) deleted)")
            expect = seq
        if prev_hash != prev:
            problems.append(f"seq {seq}: prev_hash does not match the hash of the record before")
        want = audit_hash(prev_hash, seq, ts, kind, payload)
        if want != h:
            problems.append(f"seq {seq}: content does not match its hash (record edited)")
        prev = h
        expect = seq + 1
    count = len(rows)
    last_seq = rows[-1][0] if rows else 0
    if head is None:
        problems.append("head: the head row (seq and hash of the last record) is missing")
        head = (0, GENESIS)
    if head[0] != last_seq or head[1] != prev:
        problems.append(
            f"head: the log should end at seq {head[0]} with hash {head[1][:12]}…, "
            f"found seq {last_seq} with hash {prev[:12]}… (records deleted or appended "
            "outside the store)"
        )
    return AuditVerification(ok=not problems, checked=count, problems=problems)


# --------------------------------------------------------------------------------------
# policy / threshold versions
# --------------------------------------------------------------------------------------
def policy_row(p: PolicyVersion) -> tuple[Any, ...]:
    return (
        p.version,
        p.kind,
        canonical_json(p.params),
        p.blob,
        p.parent,
        to_us(p.created_at),
        p.note,
    )


def policy_from_row(r: Sequence[Any]) -> PolicyVersion:
    version, kind, params, blob, parent, created, note = r
    return PolicyVersion(
        version=version,
        kind=kind,
        params=json.loads(params),
        blob=bytes(blob) if blob is not None else None,
        parent=parent,
        created_at=from_us(created),
        note=note,
    )


def thresholds_row(t: ThresholdSet) -> tuple[Any, ...]:
    body = t.model_dump(mode="json", by_alias=True, exclude={"version", "created_at"})
    return (t.version, canonical_json(body), to_us(t.created_at))


def thresholds_from_row(r: Sequence[Any]) -> ThresholdSet:
    version, body, created = r
    return ThresholdSet(version=version, created_at=from_us(created), **json.loads(body))


def same_version_or_conflict(
    what: str, version: str, new: tuple[Any, ...], old: tuple[Any, ...], names: Sequence[str]
) -> None:
    """Re-adding a version is a no-op if identical; otherwise a ConflictError."""
    from npo.errors import ConflictError

    diff = [n for n, a, b in zip(names, new, old, strict=True) if _norm(a) != _norm(b)]
    if diff:
        raise ConflictError(
            [
                ItemError(
                    0,
                    diff[0],
                    f"{what} version {version!r} already exists with different "
                    f"{', '.join(diff)}; versions are immutable",
                    version,
                )
            ],
            what=what,
        )


def _norm(v: Any) -> Any:
    return bytes(v) if isinstance(v, memoryview) else v


# --------------------------------------------------------------------------------------
# rows -> arrays
# --------------------------------------------------------------------------------------
def codes(values: Sequence[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes into the sorted tuple of distinct names."""
    if len(values) == 0:
        return np.empty(0, dtype=np.int32), ()
    first: dict[Any, int] = {}
    raw = np.fromiter(
        (first.setdefault(v, len(first)) for v in values), dtype=np.int32, count=len(values)
    )
    names = sorted(first)
    remap = np.empty(len(names), dtype=np.int32)
    for new, name in enumerate(names):
        remap[first[name]] = new
    return remap[raw], tuple(str(x) for x in names)


def scores_matrix(blobs: Sequence[Any], k: int) -> np.ndarray:
    if len(blobs) == 0:
        return np.empty((0, k), dtype=np.float64)
    buf = b"".join(bytes(b) for b in blobs) if not isinstance(blobs[0], bytes) else b"".join(blobs)
    return np.frombuffer(buf, dtype="<f8").reshape(len(blobs), k).astype(np.float64)


def features_matrix(blobs: Sequence[Any]) -> np.ndarray:
    arrs = [np.frombuffer(bytes(b), dtype="<f8") if b else None for b in blobs]
    d = max((len(a) for a in arrs if a is not None), default=0)
    out = np.full((len(arrs), d), np.nan)
    for i, a in enumerate(arrs):
        if a is not None:
            out[i, : len(a)] = a
    return out


LABELLED_COLS = (
    "f.id, f.decision_id, d.action, f.kind, f.action, d.propensity, d.scores, d.segment, "
    "f.reviewer_id, d.policy_version, d.threshold_version, d.ts, f.ts, d.scenario_id"
)


def labelled_arrays(
    rows: list[Sequence[Any]], actions: ActionSpace, with_features: bool
) -> LabelledFeedback:
    k = actions.k
    n = len(rows)
    cols = list(zip(*rows, strict=True)) if n else [()] * (15 if with_features else 14)
    decision = np.asarray(cols[2], dtype=np.int16) if n else np.empty(0, np.int16)
    kind = np.asarray(cols[3], dtype=np.int8) if n else np.empty(0, np.int8)
    faction = np.asarray(cols[4], dtype=np.int16) if n else np.empty(0, np.int16)
    label = np.where(kind == 0, decision, np.where(kind == 1, faction, -1)).astype(np.int16)
    seg, segs = codes(cols[7])
    rev, revs = codes(cols[8])
    pv, pvs = codes(cols[9])
    tv, tvs = codes(cols[10])
    return LabelledFeedback(
        feedback_id=np.asarray(cols[0], dtype=object),
        decision_id=np.asarray(cols[1], dtype=object),
        decision=decision,
        label=label,
        kind=kind,
        propensity=np.asarray(cols[5], dtype=np.float64),
        scores=scores_matrix(cols[6], k),
        segment=seg,
        reviewer=rev,
        policy_version=pv,
        threshold_version=tv,
        decision_time=np.asarray(cols[11], dtype=np.int64),
        feedback_time=np.asarray(cols[12], dtype=np.int64),
        segments=segs,
        reviewers=revs,
        policy_versions=pvs,
        threshold_versions=tvs,
        features=features_matrix(cols[14]) if with_features else None,
        scenario_id=np.asarray(cols[13], dtype=object),
    )


DECISION_COLS = (
    "d.id, d.action, d.propensity, d.scores, d.segment, d.policy_version, d.threshold_version, d.ts"
)


def decision_arrays(
    rows: list[Sequence[Any]], fb: list[Sequence[Any]], actions: ActionSpace
) -> DecisionArrays:
    """``rows``: decisions (DECISION_COLS); ``fb``: (decision_id, kind, action, d.action)
    of their feedback in feedback-time order."""
    n = len(rows)
    cols = list(zip(*rows, strict=True)) if n else [()] * 8
    ids = list(cols[0])
    decision = np.asarray(cols[1], dtype=np.int16) if n else np.empty(0, np.int16)
    seg, segs = codes(cols[4])
    pv, pvs = codes(cols[5])
    tv, tvs = codes(cols[6])
    reviewed = np.zeros(n, dtype=bool)
    label = np.full(n, -1, dtype=np.int16)
    abstained = np.zeros(n, dtype=bool)
    if fb:
        pos_of = {x: i for i, x in enumerate(ids)}
        fcols = list(zip(*fb, strict=True))
        pos = np.fromiter((pos_of.get(x, -1) for x in fcols[0]), dtype=np.int64, count=len(fb))
        kind = np.asarray(fcols[1], dtype=np.int8)
        fa = np.asarray(fcols[2], dtype=np.int16)
        da = np.asarray(fcols[3], dtype=np.int16)
        lab = np.where(kind == 0, da, fa)
        ok = pos >= 0
        is_lab = ok & (kind < 2)
        lp = pos[is_lab]
        if len(lp):
            first_pos, first_idx = np.unique(lp, return_index=True)
            reviewed[first_pos] = True
            label[first_pos] = lab[is_lab][first_idx]
        ab = pos[ok & (kind == 2)]
        abstained[ab] = True
        abstained &= ~reviewed
    return DecisionArrays(
        decision_id=np.asarray(ids, dtype=object),
        decision=decision,
        propensity=np.asarray(cols[2], dtype=np.float64),
        scores=scores_matrix(cols[3], actions.k),
        segment=seg,
        policy_version=pv,
        threshold_version=tv,
        decision_time=np.asarray(cols[7], dtype=np.int64),
        reviewed=reviewed,
        label=label,
        abstained=abstained,
        segments=segs,
        policy_versions=pvs,
        threshold_versions=tvs,
    )


def window_sql(
    since: datetime | None,
    until: datetime | None,
    segment: str | None,
    policy_version: str | None,
    ph: str,
) -> tuple[str, list[Any]]:
    """``WHERE`` clause over the decision alias ``d``; ``ph`` is the placeholder style."""
    where: list[str] = []
    args: list[Any] = []
    if since is not None:
        where.append(f"d.ts >= {ph}")
        args.append(to_us(since))
    if until is not None:
        where.append(f"d.ts < {ph}")
        args.append(to_us(until))
    if segment is not None:
        where.append(f"d.segment = {ph}")
        args.append(segment)
    if policy_version is not None:
        where.append(f"d.policy_version = {ph}")
        args.append(policy_version)
    return (" WHERE " + " AND ".join(where)) if where else "", args


def actions_mismatch(stored: ActionSpace, given: ActionSpace, where: str) -> ValidationFailed:
    return ValidationFailed(
        [
            ItemError(
                0,
                "actions",
                f"the store at {where} was created with actions {list(stored.actions)}, "
                f"not {list(given.actions)}",
            )
        ],
        what="open_store",
    )


def activation_payload(version: str, reason: str, evidence: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed(
            [ItemError(0, "reason", "must be a non-empty string saying why")], what="activation"
        )
    obj, _ = normalise_payload(evidence)
    return {"version": version, "reason": reason.strip(), "evidence": obj}


def collect_errors(
    cols: Any,
    table: str,
    fetch_rows: Any,
    fetch_decision_actions: Any,
) -> list[ItemError]:
    """Every problem of a batch, for the error path (read-only; speed does not matter).

    ``cols``: the validated :class:`~npo.store.validate.Columns` (with its item errors);
    ``fetch_rows(ids) -> {id: stored row in ORDER[table]}``;
    ``fetch_decision_actions(ids) -> {decision id: action code}``.
    Adds in-batch conflicting repeats, conflicts with stored events, and (feedback)
    unknown decisions and likes on deferred decisions, for the items without own errors.
    """
    from npo.errors import ConflictError
    from npo.store import validate as V  # noqa: N812

    errors = list(cols.errors)
    bad = {e.index for e in errors}
    order = ORDER[table]
    try:
        rows, keep, _ = V.dedupe_in_batch(cols, order)
    except ConflictError as e:
        errors += [x for x in e.errors if x.index not in bad]
        bad |= {x.index for x in e.errors}
        rows = list(zip(*(V._as_list(cols.cols[c]) for c in order), strict=True))
        seen: set[str] = set()
        keep = []
        for i, r in enumerate(rows):
            if r[0] not in seen:
                seen.add(r[0])
                keep.append(i)
        rows = [rows[i] for i in keep]
    good = [j for j, i in enumerate(keep) if i not in bad]
    stored = fetch_rows([rows[j][0] for j in good])
    given = cols.cols["ts_given"]
    for j in good:
        old = stored.get(rows[j][0])
        if old is None:
            continue
        i = keep[j]
        diff = [
            public(f)
            for f, a, b in zip(order, rows[j], old, strict=True)
            if not V._same(a, b) and not (f == "ts" and not given[i])
        ]
        if diff:
            errors.append(
                ItemError(
                    i,
                    diff[0],
                    f"id {rows[j][0]!r} already stored with different {', '.join(diff)}; "
                    "an event is never overwritten",
                    rows[j][0],
                )
            )
    if table == "feedback":
        dids = cols.cols["decision_id"]
        kinds = cols.cols["kind"]
        ok = [i for i in range(cols.n) if i not in bad and isinstance(dids[i], str)]
        acts = fetch_decision_actions(sorted({dids[i] for i in ok}))
        for i in ok:
            d = dids[i]
            if d not in acts:
                errors.append(
                    ItemError(
                        i, "decision_id", f"unknown decision {d!r} (not in the store)", cols.ids[i]
                    )
                )
            elif kinds[i] == 0 and acts[d] == -1:
                errors.append(
                    ItemError(
                        i,
                        "kind",
                        f"a like on deferred decision {d!r}: there is no decision to like; "
                        "the person's own choice is an override",
                        cols.ids[i],
                    )
                )
    errors.sort(key=lambda e: (e.index, e.field))
    return errors


def raise_errors(errors: list[ItemError]) -> None:
    from npo.errors import ConflictError

    if not errors:
        return
    if all("already stored" in e.reason or "appears twice" in e.reason for e in errors):
        raise ConflictError(errors)
    raise ValidationFailed(errors)


# --------------------------------------------------------------------------------------
# Arrow tables -> arrays (PostgreSQL reads: COPY … TO STDOUT (FORMAT csv) parsed by Arrow)
# --------------------------------------------------------------------------------------
_HEX = np.zeros(256, dtype=np.uint8)
_HEX[48:58] = np.arange(10)
_HEX[97:103] = np.arange(10, 16)
_HEX[65:71] = np.arange(10, 16)


def hex_matrix(col: Any, k: int) -> np.ndarray:
    """A column of hex-encoded little-endian float64 blobs of K values each -> (n, K)."""
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], pa.string())
    n = len(col)
    if n == 0:
        return np.empty((0, k), dtype=np.float64)
    col = col.cast(pa.string())
    offsets = np.frombuffer(col.buffers()[1], dtype=np.int32)[col.offset : col.offset + n + 1]
    data = np.frombuffer(col.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    if col.null_count or data.size != n * 16 * k:
        raise ValueError("scores: every stored score vector must hold K float64 values")
    nib = _HEX[data]
    raw = (nib[0::2] << 4) | nib[1::2]
    return raw.view("<f8").reshape(n, k).astype(np.float64)


def arrow_codes(col: Any) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer codes into the sorted tuple of distinct strings, vectorised."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(col) == 0:
        return np.empty(0, dtype=np.int32), ()
    enc = pc.dictionary_encode(col)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks()
    names = enc.dictionary.to_pylist()
    order = sorted(range(len(names)), key=names.__getitem__)
    remap = np.empty(len(names), dtype=np.int32)
    remap[order] = np.arange(len(names), dtype=np.int32)
    idx = enc.indices.to_numpy(zero_copy_only=False)
    return remap[idx], tuple(str(names[i]) for i in order)


def _np(col: Any, dtype: Any) -> np.ndarray:
    return np.asarray(col.to_numpy(), dtype=dtype) if len(col) else np.empty(0, dtype)


def labelled_from_arrow(t: Any, actions: ActionSpace, with_features: bool) -> LabelledFeedback:
    """``t``: columns in :data:`LABELLED_COLS` order (scores hex-encoded), then features."""
    c = t.columns
    decision = _np(c[2], np.int16)
    kind = _np(c[3], np.int8)
    faction = _np(c[4], np.int16)
    label = np.where(kind == 0, decision, np.where(kind == 1, faction, -1)).astype(np.int16)
    seg, segs = arrow_codes(c[7])
    rev, revs = arrow_codes(c[8])
    pv, pvs = arrow_codes(c[9])
    tv, tvs = arrow_codes(c[10])
    features = None
    if with_features:
        features = features_matrix([bytes.fromhex(x) if x else None for x in c[14].to_pylist()])
    return LabelledFeedback(
        feedback_id=np.asarray(c[0].to_pylist(), dtype=object),
        decision_id=np.asarray(c[1].to_pylist(), dtype=object),
        decision=decision,
        label=label,
        kind=kind,
        propensity=_np(c[5], np.float64),
        scores=hex_matrix(c[6], actions.k),
        segment=seg,
        reviewer=rev,
        policy_version=pv,
        threshold_version=tv,
        decision_time=_np(c[11], np.int64),
        feedback_time=_np(c[12], np.int64),
        segments=segs,
        reviewers=revs,
        policy_versions=pvs,
        threshold_versions=tvs,
        features=features,
        scenario_id=np.asarray(c[13].to_pylist(), dtype=object),
    )


def decisions_from_arrow(d: Any, fb: Any, actions: ActionSpace) -> DecisionArrays:
    """``d``: :data:`DECISION_COLS` (scores hex-encoded); ``fb``: (decision_id, kind,
    action, decision action) of their feedback, in feedback-time order."""
    import pyarrow.compute as pc

    c = d.columns
    n = d.num_rows
    seg, segs = arrow_codes(c[4])
    pv, pvs = arrow_codes(c[5])
    tv, tvs = arrow_codes(c[6])
    reviewed = np.zeros(n, dtype=bool)
    label = np.full(n, -1, dtype=np.int16)
    abstained = np.zeros(n, dtype=bool)
    if fb.num_rows:
        pos = pc.index_in(fb.column(0), value_set=c[0].combine_chunks())
        pos = np.asarray(pos.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
        kind = _np(fb.column(1), np.int8)
        lab = np.where(kind == 0, _np(fb.column(3), np.int16), _np(fb.column(2), np.int16))
        ok = pos >= 0
        is_lab = ok & (kind < 2)
        lp = pos[is_lab]
        if len(lp):
            first_pos, first_idx = np.unique(lp, return_index=True)
            reviewed[first_pos] = True
            label[first_pos] = lab[is_lab][first_idx]
        abstained[pos[ok & (kind == 2)]] = True
        abstained &= ~reviewed
    return DecisionArrays(
        decision_id=np.asarray(c[0].to_pylist(), dtype=object),
        decision=_np(c[1], np.int16),
        propensity=_np(c[2], np.float64),
        scores=hex_matrix(c[3], actions.k),
        segment=seg,
        policy_version=pv,
        threshold_version=tv,
        decision_time=_np(c[7], np.int64),
        reviewed=reviewed,
        label=label,
        abstained=abstained,
        segments=segs,
        policy_versions=pvs,
        threshold_versions=tvs,
    )

"""The append-only, hash-chained audit log and its head history.

Record ``seq`` stores ``hash = H(prev_hash ‖ canonical JSON of (seq, timestamp, kind,
payload))`` with ``H = sha256``, or ``HMAC-SHA256`` under a secret key for a *keyed*
chain (a store created while ``NPO_AUDIT_KEY`` was set). Every append also adds
``(seq, hash)`` to ``audit_head`` -- the head history, append-only like the log -- in the
same transaction.

What :func:`verify` detects, and what it cannot (also in ``docs/store.md``):

- an edited field of any record, a deleted or re-ordered record: the chain breaks;
- the last records deleted, or the last record rewritten with a recomputed hash: the head
  history still names the old head;
- a rewrite of both the log and the head history (possible only to someone who can drop
  the append-only triggers): detected when the caller passes a head hash kept elsewhere
  (``expect_head``) that is no longer in the chain, or, for a keyed chain, because the
  forger cannot compute the HMAC without the key;
- not detected: a rewrite from a point before every head kept elsewhere by someone who
  holds the key (or of an unkeyed chain with no head kept elsewhere), and records never
  written (the loop not calling the store).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import numpy as np

from npo.domain.rules import from_us, now_us
from npo.errors import ItemError, StoreError, ValidationFailed
from npo.store.base import AuditRecord, AuditVerification

GENESIS = "0" * 64
KEY_ENV = "NPO_AUDIT_KEY"


# -- canonical JSON --------------------------------------------------------------------------
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


def normalise_payload(payload: Mapping[str, Any], what: str = "audit record") -> tuple[Any, str]:
    if not isinstance(payload, Mapping):
        raise ValidationFailed(
            [ItemError(0, "payload", f"must be a mapping, got {type(payload).__name__}")], what
        )
    try:
        text = canonical_json(dict(payload))
    except (TypeError, ValueError) as e:
        raise ValidationFailed([ItemError(0, "payload", str(e))], what=what) from None
    if "\\u0000" in text:
        raise ValidationFailed(
            [ItemError(0, "payload", "must not contain the NUL character (U+0000)")], what
        )
    return json.loads(text), text


# -- the chain ------------------------------------------------------------------------------
def audit_hash(
    prev_hash: str, seq: int, ts_us: int, kind: str, payload_json: str, key: bytes | None = None
) -> str:
    """``H(prev_hash ‖ {"kind","payload","seq","timestamp"})``: sha256, or HMAC-SHA256
    with ``key``."""
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
    data = (prev_hash + body).encode("utf-8")
    if key is None:
        return hashlib.sha256(data).hexdigest()
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def key_id(key: bytes) -> str:
    """A fingerprint of the key (tells a wrong key from a forged chain; reveals nothing)."""
    return hmac.new(key, b"npo audit key id", hashlib.sha256).hexdigest()[:16]


def env_key() -> bytes | None:
    v = os.environ.get(KEY_ENV)
    return v.encode("utf-8") if v else None


def check_kind(kind: str) -> None:
    if not isinstance(kind, str) or not kind.strip() or len(kind) > 200 or "\x00" in kind:
        raise ValidationFailed(
            [ItemError(0, "kind", "must be a non-empty string of at most 200 characters")],
            what="audit record",
        )


def record(row: tuple[Any, ...]) -> AuditRecord:
    seq, ts, kind, payload, prev, h = row
    return AuditRecord(int(seq), from_us(ts), kind, json.loads(payload), prev, h)


class AuditLog:
    """Appends to and verifies one store's log (``store`` runs the SQL)."""

    COLS = "seq, ts, kind, payload, prev_hash, hash"

    def __init__(self, store: Any, keyed_id: str | None, key: bytes | None) -> None:
        self.store = store
        self.keyed_id = keyed_id  # the key fingerprint stored in meta, for a keyed chain
        self.key = key if keyed_id is not None else None

    def _signing_key(self) -> bytes | None:
        if self.keyed_id is None:
            return None
        if self.key is None:
            raise StoreError(
                f"the audit log of {self.store.where} is keyed (HMAC): set {KEY_ENV} to the "
                "key it was created with to append to it"
            )
        if key_id(self.key) != self.keyed_id:
            raise StoreError(
                f"{KEY_ENV} is not the key the audit log of {self.store.where} was created with"
            )
        return self.key

    def append(self, kind: str, payload: Mapping[str, Any]) -> AuditRecord:
        """Inside the caller's transaction."""
        check_kind(kind)
        obj, text = normalise_payload(payload)
        key = self._signing_key()
        s = self.store
        s._lock_writers("audit")
        last = s._x("SELECT seq, hash, ts FROM audit_head ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev, last_ts = (0, GENESIS, 0) if last is None else last
        seq += 1
        ts = max(now_us(), int(last_ts))
        h = audit_hash(prev, seq, ts, kind, text, key)
        s._x("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?)", (seq, ts, kind, text, prev, h))
        s._x("INSERT INTO audit_head VALUES (?, ?, ?)", (seq, h, ts))
        return AuditRecord(seq, from_us(ts), kind, obj, prev, h)

    def records(self, kind: str | None, limit: int | None) -> list[AuditRecord]:
        if limit is not None and (isinstance(limit, bool) or int(limit) != limit or limit < 0):
            raise ValidationFailed(
                [ItemError(0, "limit", f"must be a whole number ≥ 0, got {limit!r}")], "query"
            )
        sql = f"SELECT {self.COLS} FROM audit"
        args: list[Any] = []
        if kind is not None:
            sql += " WHERE kind = ?"
            args.append(kind)
        sql += " ORDER BY seq DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        rows = self.store._x(sql, args).fetchall()
        return [record(r) for r in reversed(rows)]

    def verify(self, expect_head: str | None = None) -> AuditVerification:
        s = self.store
        with s._read():
            rows = s._x(f"SELECT {self.COLS} FROM audit ORDER BY seq").fetchall()
            heads = s._x("SELECT seq, hash FROM audit_head ORDER BY seq").fetchall()
        problems: list[str] = []
        key: bytes | None = None
        if self.keyed_id is not None:
            if self.key is None:
                problems.append(
                    f"keyed chain (HMAC): set {KEY_ENV} to the key it was created with to "
                    "verify the hashes; only the links and the head history were checked"
                )
            elif key_id(self.key) != self.keyed_id:
                problems.append(f"{KEY_ENV} is not the key this chain was created with")
            else:
                key = self.key
        check_hashes = self.keyed_id is None or key is not None
        prev, expect = GENESIS, 1
        for seq, ts, kind, payload, prev_hash, h in rows:
            if seq != expect:
                problems.append(f"seq {expect}..{seq - 1} missing (record(s) deleted)")
                expect = seq
            if prev_hash != prev:
                problems.append(
                    f"seq {seq}: prev_hash does not match the hash of the record before"
                )
            if check_hashes and audit_hash(prev_hash, seq, ts, kind, payload, key) != h:
                problems.append(f"seq {seq}: content does not match its hash (record edited)")
            prev, expect = h, seq + 1
        problems += _check_heads(rows, heads)
        head = rows[-1][5] if rows else None
        if expect_head is not None:
            problems += _check_expected(expect_head, [r[5] for r in rows])
        return AuditVerification(
            ok=not problems,
            checked=len(rows),
            problems=problems,
            head=head,
            keyed=self.keyed_id is not None,
        )


def _check_heads(rows: list[tuple[Any, ...]], heads: list[tuple[Any, ...]]) -> list[str]:
    """Every record has its head-history row with the same hash, and vice versa."""
    problems: list[str] = []
    logged = {int(r[0]): r[5] for r in rows}
    for seq, h in heads:
        got = logged.pop(int(seq), None)
        if got is None:
            problems.append(
                f"head: the head history names seq {seq} ({h[:12]}…), which is not in the log "
                "(records deleted)"
            )
        elif got != h:
            problems.append(
                f"head: seq {seq} has hash {got[:12]}… but the head history recorded "
                f"{h[:12]}… (record rewritten)"
            )
    for seq in sorted(logged):
        problems.append(f"head: seq {seq} is not in the head history (appended outside the store)")
    if len(problems) > 20:
        problems = [*problems[:20], f"head: … {len(problems) - 20} more head problems"]
    return problems


def _check_expected(expect: str, hashes: list[str]) -> list[str]:
    want = expect.strip().lower()
    if len(want) < 12 or any(c not in "0123456789abcdef" for c in want):
        return [f"expected head {expect!r}: give at least 12 hex characters of the head hash"]
    found = [h for h in hashes if h.startswith(want)]
    if not found:
        return [
            f"expected head {want[:12]}… is not in the chain: the log was rewritten or "
            "truncated after that head was kept"
        ]
    return []

"""The store's schema, declared once; each dialect turns it into DDL.

Event tables (scenarios, decisions, feedback) have an integer surrogate key ``seq``
(monotone in insertion order: the decision order) and the user's text ``id`` under a
unique index. Names that repeat (policy and threshold versions, segments, reviewers) are
stored once in ``names`` and referred to by small integer codes. Each feedback row
carries the immutable fields of its decision that the estimators need (``decision_seq``,
``d_action``, ``propensity``, ``policy``, ``threshold``, ``segment``, ``d_ts``), so the
labelled read is a scan of one table.

``stat_*`` tables hold the maintained sufficient statistics (:mod:`npo.store.summary`);
``state`` and ``leases`` the loop's checkpoints (:mod:`npo.store.state`),
``monitor_points`` the monitor's history the loop writes with them; ``review_queue``
and ``review_claims`` the service's review queue (:mod:`npo.store.queue`: a cache of
decisions sent for review, rebuilt from the decisions and feedback, and the claims that
expire). ``tokens`` and ``token_revocations`` (:mod:`npo.store.tokens`) hold the
service's bearer tokens, hashed. Every other table is append-only: the database refuses
``UPDATE`` and ``DELETE`` on it (triggers).

``SCHEMA_VERSION`` is written to ``meta`` when a store is created. Version 1 is the
layout of NPO 0.1 (text keys, no summary tables; it has no ``schema_version`` row).
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_VERSION = 2

#: ``names.kind`` codes
POLICY, THRESHOLD, SEGMENT, REVIEWER = 1, 2, 3, 4
NAME_KINDS = {"policy": POLICY, "threshold": THRESHOLD, "segment": SEGMENT, "reviewer": REVIEWER}


@dataclass(frozen=True)
class Column:
    """``type``: one of ``seq`` (auto-increment integer key), ``i64``, ``i32``, ``i16``,
    ``f64``, ``text``, ``blob``."""

    name: str
    type: str
    nullable: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()
    indexes: tuple[tuple[str, ...], ...] = ()
    append_only: bool = True

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def _c(spec: str) -> tuple[Column, ...]:
    """``"name type, name type?"`` -> columns (``?`` = nullable)."""
    out = []
    for part in spec.split(","):
        name, typ = part.split()
        out.append(Column(name, typ.rstrip("?"), typ.endswith("?")))
    return tuple(out)


META = Table("meta", _c("key text, value text"), ("key",), append_only=False)
NAMES = Table("names", _c("code seq, kind i16, name text"), ("code",), unique=(("kind", "name"),))
SCENARIOS = Table(
    "scenarios",
    _c("seq seq, id text, segment i32, features blob?, ts i64"),
    ("seq",),
    unique=(("id",),),
)
DECISIONS = Table(
    "decisions",
    _c(
        "seq seq, id text, scenario_id text, policy i32, threshold i32, segment i32, "
        "scores blob, action i16, shadow i16?, propensity f64, review i16?, ts i64"
    ),
    ("seq",),
    unique=(("id",),),
    indexes=(("ts",),),
)
FEEDBACK = Table(
    "feedback",
    _c(
        "seq seq, id text, decision_seq i64, reviewer i32, kind i16, action i16, "
        "comment text?, ts i64, d_action i16, propensity f64, policy i32, threshold i32, "
        "segment i32, d_ts i64"
    ),
    ("seq",),
    unique=(("id",),),
    indexes=(("decision_seq",),),
)
POLICIES = Table(
    "policies",
    _c(
        "seq seq, version text, kind text, params text, blob blob?, parent text?, "
        "created_at i64, note text?"
    ),
    ("seq",),
    unique=(("version",),),
)
THRESHOLDS = Table(
    "thresholds",
    _c("seq seq, version text, body text, created_at i64"),
    ("seq",),
    unique=(("version",),),
)
AUDIT = Table(
    "audit",
    _c("seq i64, ts i64, kind text, payload text, prev_hash text, hash text"),
    ("seq",),
    indexes=(("kind", "seq"),),
)
#: the head history: one row per audit record, under the same append-only triggers
AUDIT_HEAD = Table("audit_head", _c("seq i64, hash text, ts i64"), ("seq",))
CONFIGS = Table("configs", _c("version i64, body text, created_at i64"), ("version",))
STATE = Table(
    "state", _c("key text, version i64, value text, updated_us i64"), ("key",), append_only=False
)
LEASES = Table(
    "leases",
    _c("name text, holder text, expires_us i64, fence i64, acquired_us i64"),
    ("name",),
    append_only=False,
)
#: the loss monitor's history as the loop checkpointed it (:class:`~npo.store.base.MonitorPoint`;
#: ``seq`` is the checkpoint's version, ``changed`` = 1 where ``state`` differs from the
#: previous point's)
MONITOR_POINTS = Table(
    "monitor_points",
    _c(
        "seq i64, at i64, n_labelled i64, estimate f64?, lower f64?, upper f64?, lam f64, "
        "lam_crit f64, state text, policy_version text?, changed i16"
    ),
    ("seq",),
)

#: the service's bearer tokens: only the SHA-256 of a token is stored (tokens are 256-bit
#: random strings, so a fast hash is enough); a name is never reused
TOKENS = Table(
    "tokens",
    _c("seq seq, name text, role text, hash text, created_us i64, created_by text?"),
    ("seq",),
    unique=(("name",), ("hash",)),
)
TOKEN_REVOCATIONS = Table(
    "token_revocations", _c("name text, revoked_us i64, revoked_by text?"), ("name",)
)
#: decisions sent for review that still wait for ``wanted`` reviews (1, or 2 when
#: agreement sampling picked the decision); rows leave when they have them
REVIEW_QUEUE = Table(
    "review_queue",
    _c("decision_seq i64, decision_id text, wanted i16, enqueued_us i64"),
    ("decision_seq",),
    append_only=False,
)
#: who holds which queued decision until when (the database's clock)
REVIEW_CLAIMS = Table(
    "review_claims",
    _c("decision_seq i64, reviewer text, expires_us i64"),
    ("decision_seq", "reviewer"),
    indexes=(("reviewer",),),
    append_only=False,
)
SERVICE_TABLES = (TOKENS, TOKEN_REVOCATIONS, REVIEW_QUEUE, REVIEW_CLAIMS)

_CELL = "decision i16, label i16, kind i16, n i64, sw f64, sw2 f64"
STAT_CELL = Table(
    "stat_cell",
    _c(f"policy i32, threshold i32, segment i32, bucket i64, {_CELL}"),
    ("policy", "threshold", "segment", "bucket", "decision", "label", "kind"),
    append_only=False,
)
STAT_REVIEWER = Table(
    "stat_reviewer",
    _c(f"reviewer i32, segment i32, bucket i64, {_CELL}"),
    ("reviewer", "segment", "bucket", "decision", "label", "kind"),
    append_only=False,
)
STAT_AGREE = Table(
    "stat_agree",
    _c("reviewer i32, segment i32, bucket i64, shared i64, agree i64"),
    ("reviewer", "segment", "bucket"),
    append_only=False,
)
#: Fleiss' κ sums over decisions with ≥ 2 labelled reviews: ``label ≥ 0`` rows hold
#: ``Σ n_ij`` in ``n``; the ``label = -1`` row holds the number of such decisions in ``n``
#: and ``Σ P_i`` in ``sum_p``.
STAT_FLEISS = Table(
    "stat_fleiss",
    _c("segment i32, bucket i64, label i16, n i64, sum_p f64"),
    ("segment", "bucket", "label"),
    append_only=False,
)


def _all_time(t: Table) -> Table:
    """The same statistics summed over every time bucket: what unfiltered reads use, so
    they cost O(keys) whatever the length of history."""
    return Table(
        f"{t.name}_all",
        tuple(c for c in t.columns if c.name != "bucket"),
        tuple(c for c in t.primary_key if c != "bucket"),
        append_only=False,
    )


#: bucketed stat table -> its all-time twin
ALL_TIME = {t.name: _all_time(t) for t in (STAT_CELL, STAT_REVIEWER, STAT_AGREE, STAT_FLEISS)}
STAT_TABLES = (STAT_CELL, STAT_REVIEWER, STAT_AGREE, STAT_FLEISS, *ALL_TIME.values())

TABLES = (
    META,
    NAMES,
    SCENARIOS,
    DECISIONS,
    FEEDBACK,
    POLICIES,
    THRESHOLDS,
    AUDIT,
    AUDIT_HEAD,
    CONFIGS,
    STATE,
    LEASES,
    STAT_CELL,
    STAT_REVIEWER,
    STAT_AGREE,
    STAT_FLEISS,
    *ALL_TIME.values(),
    MONITOR_POINTS,
    *SERVICE_TABLES,
)
#: tables added after schema version 2 shipped: created when a store without them is
#: opened for writing (additive, so the schema version stays)
ADDED = (MONITOR_POINTS,)
BY_NAME = {t.name: t for t in TABLES}
#: what :meth:`Store.counts` reports
COUNTED = ("scenarios", "decisions", "feedback", "policies", "thresholds", "audit")

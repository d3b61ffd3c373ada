"""The store interface: append-only tables behind one protocol.

Every backend (SQLite, PostgreSQL) implements :class:`Store` and passes the same
contract test-suite (``tests/store/test_contract.py``). Reads for the estimators return
columnar numpy arrays (:class:`LabelledFeedback`, :class:`DecisionArrays`), never
row-by-row Python objects.

Ingestion contract (SPEC §4, §6):
- idempotent by id: re-sending an identical event is a no-op (counted as a duplicate);
  the same id with different content raises :class:`~npo.errors.ConflictError` and the
  stored event stays as it was;
- a batch is one transaction: if any item is bad, nothing of it is stored, and the
  :class:`~npo.errors.ValidationFailed` lists every bad item (index, id, field, reason).
- ``dry_run=True`` runs every check, including those against stored data, inside the
  batch's transaction and rolls it back: the report says what *would* be stored.

Units of work: ``with store.transaction(): ...`` makes ingests, audit appends, state and
configuration writes commit together or not at all; nested calls (and every ``ingest_*``)
join the outer transaction through a savepoint, so a rejected batch inside it rolls back
only itself.

Reads: the standard breakdowns come from maintained sufficient statistics
(:meth:`Store.summary`, cost O(cells), not O(history)); :meth:`Store.scan` reads chosen
columns straight into Arrow; :meth:`Store.labelled` / :meth:`Store.decisions` return the
estimators' numpy arrays. Scans read committed data on their own connection.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np

from npo.domain import ActionSpace, Decision, Feedback, PolicyVersion, Scenario, ThresholdSet
from npo.errors import ItemError

#: What ``ingest_*`` accepts: records, plain mappings, a pyarrow Table / RecordBatch,
#: or a pandas / polars DataFrame (converted through Arrow).
Batch = Sequence[Any] | Iterable[Mapping[str, Any]] | Any

EventKind = Literal["scenarios", "decisions", "feedback"]


@dataclass(frozen=True)
class IngestReport:
    """Outcome of one accepted batch; ``warnings`` name items that were stored but look
    wrong (e.g. a propensity below the configured ``p_min``)."""

    kind: EventKind
    inserted: int
    duplicates: int
    warnings: tuple[ItemError, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "inserted": self.inserted,
            "duplicates": self.duplicates,
        }
        if self.warnings:
            out["warnings"] = [w.to_dict() for w in self.warnings]
        return out


@dataclass(frozen=True)
class LabelledFeedback:
    """Feedback events joined to their decisions, as parallel arrays (one row per event).

    Codes: ``decision`` is an action index or -1 (DEFER); ``label`` an action index or
    -1 (abstain); ``kind`` 0 like / 1 override / 2 abstain. ``segment``, ``reviewer``,
    ``policy_version`` and ``threshold_version`` are integer codes into the matching
    name tuples. Times are int64 microseconds since the Unix epoch (UTC).
    """

    feedback_id: np.ndarray
    decision_id: np.ndarray
    decision: np.ndarray
    label: np.ndarray
    kind: np.ndarray
    propensity: np.ndarray
    scores: np.ndarray  # (n, K) float64
    segment: np.ndarray
    reviewer: np.ndarray
    policy_version: np.ndarray
    threshold_version: np.ndarray
    decision_time: np.ndarray
    feedback_time: np.ndarray
    segments: tuple[str, ...]
    reviewers: tuple[str, ...]
    policy_versions: tuple[str, ...]
    threshold_versions: tuple[str, ...]
    features: np.ndarray | None = None  # (n, d) when asked for with_features=True
    scenario_id: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.decision.shape[0])

    @property
    def weight(self) -> np.ndarray:
        """IPW weights ``1 / p``."""
        return 1.0 / self.propensity


@dataclass(frozen=True)
class DecisionArrays:
    """All decisions in a window (reviewed or not), as parallel arrays.

    ``reviewed`` is True where at least one labelled (like/override) feedback exists;
    ``label`` is the first such label (-1 otherwise); ``abstained`` is True where the
    only feedback is abstentions. Needed by the Horvitz–Thompson sequential estimator.
    ``seq`` is the store's monotone decision order; ``shadow`` the policy's own decision
    where a different one was served (-2 otherwise); ``review`` 1 / 0 / -1 (sent for
    review / not / not recorded).
    """

    decision_id: np.ndarray
    decision: np.ndarray
    propensity: np.ndarray
    scores: np.ndarray
    segment: np.ndarray
    policy_version: np.ndarray
    threshold_version: np.ndarray
    decision_time: np.ndarray
    reviewed: np.ndarray
    label: np.ndarray
    abstained: np.ndarray
    segments: tuple[str, ...]
    policy_versions: tuple[str, ...]
    threshold_versions: tuple[str, ...]
    seq: np.ndarray | None = None
    shadow: np.ndarray | None = None
    review: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.decision.shape[0])


@dataclass(frozen=True)
class DecisionRows:
    """Decisions read inside a unit of work (:meth:`Store.read_decisions`), in ``seq``
    order. Codes: ``action`` / ``shadow`` an action index, -1 DEFER (``shadow`` -2 when the
    policy's own decision was the served one); ``review`` 1 / 0 / -1 (sent for review /
    not / not recorded). Times are int64 µs."""

    seq: np.ndarray
    decision_id: list[str]
    scenario_id: list[str]
    policy_version: list[str]
    threshold_version: list[str]
    segment: list[str]
    scores: np.ndarray
    action: np.ndarray
    shadow: np.ndarray
    propensity: np.ndarray
    review: np.ndarray
    timestamp: np.ndarray

    def __len__(self) -> int:
        return int(self.seq.shape[0])

    @property
    def measured(self) -> np.ndarray:
        """The policy's own decision (the shadow where one was recorded, else the served)."""
        return np.where(self.shadow == -2, self.action, self.shadow).astype(np.int16)


@dataclass(frozen=True)
class FeedbackRows:
    """Feedback read inside a unit of work (:meth:`Store.read_feedback`), in ``seq`` order.

    ``kind`` 0 like / 1 override / 2 abstain; ``label`` the preferred action (a like's is
    the served ``decision``; -1 for an abstention); ``shadow`` the decision's measured
    (policy's own) decision: its recorded shadow, else the served one."""

    seq: np.ndarray
    feedback_id: list[str]
    decision_seq: np.ndarray
    reviewer: list[str]
    kind: np.ndarray
    label: np.ndarray
    decision: np.ndarray
    shadow: np.ndarray
    timestamp: np.ndarray

    def __len__(self) -> int:
        return int(self.seq.shape[0])


@dataclass(frozen=True)
class AuditRecord:
    """One append-only audit entry; ``hash = sha256(prev_hash ‖ canonical JSON)``."""

    seq: int
    timestamp: datetime
    kind: str
    payload: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditVerification:
    """``head`` is the hash of the last record (keep it elsewhere and pass it back as
    ``expect_head`` later); ``keyed`` says whether the chain is an HMAC chain."""

    ok: bool
    checked: int
    problems: list[str] = field(default_factory=list)
    head: str | None = None
    keyed: bool = False


@dataclass(frozen=True)
class StateValue:
    """A value of the loop's key-value state and its version (1, 2, … per write)."""

    key: str
    version: int
    value: Any


@dataclass(frozen=True)
class Lease:
    """A held lease: ``fence`` grows at every change of holder (pass it along with writes
    guarded by the lease); ``expires_at`` is judged by the database's clock."""

    name: str
    holder: str
    expires_at: datetime
    fence: int


@dataclass(frozen=True)
class MonitorPoint:
    """One point of the loss monitor's history, as the loop checkpointed it.

    ``seq``: the version of the loop checkpoint written with it (one point per checkpoint
    that changed the monitor); ``at``: when it was written (ISO-8601, UTC);
    ``n_labelled``: observations the monitor holds; ``estimate`` / ``lower`` / ``upper``:
    the monitor's estimate of the expected loss of the serving rule and its confidence band
    (None where the monitor has none); ``lam`` / ``lam_crit``: the tolerance λ and the
    critical level; ``state``: what the loop acts on (``"ok"``, ``"retrain"``, or
    ``"override"`` -- override mode, whether the trigger or an operator started it);
    ``policy_version``: the serving policy."""

    seq: int
    at: str
    n_labelled: int
    estimate: float | None
    lower: float | None
    upper: float | None
    lam: float
    lam_crit: float
    state: str
    policy_version: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ConfigRecord:
    """A version of the loop's configuration (a JSON-able mapping), audited."""

    version: int
    config: dict[str, Any]
    created_at: datetime


class Store(ABC):
    """Append-only storage for scenarios, decisions, feedback, policy and threshold
    versions, and the audit log. Use as a context manager or call :meth:`close`."""

    #: e.g. "sqlite" or "postgresql"
    backend: str

    # -- lifecycle -------------------------------------------------------------------
    @property
    @abstractmethod
    def actions(self) -> ActionSpace:
        """The action space fixed when the store was created."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ingestion (idempotent by id; atomic per batch) -------------------------------
    @abstractmethod
    def ingest_scenarios(
        self, batch: Batch | Iterable[Scenario], *, dry_run: bool = False
    ) -> IngestReport: ...

    @abstractmethod
    def ingest_decisions(
        self, batch: Batch | Iterable[Decision], *, dry_run: bool = False
    ) -> IngestReport: ...

    @abstractmethod
    def ingest_feedback(
        self, batch: Batch | Iterable[Feedback], *, dry_run: bool = False
    ) -> IngestReport: ...

    # -- reads for the estimators ----------------------------------------------------
    @abstractmethod
    def labelled(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        segment: str | None = None,
        policy_version: str | None = None,
        with_features: bool = False,
    ) -> LabelledFeedback:
        """Feedback joined to decisions; the time window applies to the decision time."""

    @abstractmethod
    def decisions(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        segment: str | None = None,
    ) -> DecisionArrays: ...

    @abstractmethod
    def counts(self) -> dict[str, int]:
        """Number of rows per table."""

    @abstractmethod
    def scan(
        self,
        kind: EventKind,
        columns: Sequence[str] | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        segment: str | None = None,
        policy_version: str | None = None,
        as_numpy: bool = False,
    ) -> Any:
        """Rows of ``kind`` as a ``pyarrow.Table`` of the chosen columns (all when None),
        read without per-row Python; names come dictionary-encoded. Time filters apply to
        the decision time (feedback) or the event time. ``as_numpy``: a dict of numpy
        arrays, converted one column at a time (peak memory: the Arrow result plus one
        column)."""

    @abstractmethod
    def scan_batches(
        self,
        kind: EventKind,
        columns: Sequence[str] | None = None,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        segment: str | None = None,
        policy_version: str | None = None,
    ) -> Iterator[Any]:
        """:meth:`scan` streamed as ``pyarrow.RecordBatch`` es (one batch in memory at a
        time). Feedback may also ask for its decision's ``decision_id``, ``scores``,
        ``scenario_id`` and its scenario's ``features``, and comes in decision order (the
        reviews of one decision are consecutive)."""

    @abstractmethod
    def summary(
        self,
        *,
        by: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        segment: str | None = None,
        window_us: int | None = None,
    ) -> Any:
        """The maintained sufficient statistics of the selection (decision time in
        ``[since, until)``), grouped ``by`` segment, action, policy_version,
        threshold_version, reviewer (with agreement tallies) or window (a
        :class:`~npo.store.summary.Summary`); cost O(cells), not O(feedback)."""

    @abstractmethod
    def check_summary(self) -> list[str]:
        """Compare the maintained statistics with a full scan; the differences found."""

    @abstractmethod
    def rebuild_summary(self) -> None:
        """Recompute the maintained statistics from a full scan (one transaction)."""

    # -- units of work, state and leases -------------------------------------------------
    @abstractmethod
    def transaction(self) -> AbstractContextManager[Store]:
        """``with store.transaction(): ...``: everything inside commits together or not at
        all; nested calls join the outer transaction (savepoints)."""

    @abstractmethod
    def lock(self, name: str) -> None:
        """Inside a unit of work: serialise it with every other unit that locks ``name``,
        until the transaction ends (a no-op where write transactions already exclude each
        other, as on SQLite)."""

    # -- reads inside a unit of work (they see its own writes) ---------------------------
    @abstractmethod
    def read_decisions(
        self,
        *,
        after_seq: int | None = None,
        until_seq: int | None = None,
        ids: Sequence[str] | None = None,
    ) -> DecisionRows:
        """Decisions with ``after_seq < seq <= until_seq``, or with the given ids, in
        ``seq`` order, read on the write connection (they see the current unit of work)."""

    @abstractmethod
    def read_feedback(
        self,
        *,
        after_seq: int | None = None,
        until_seq: int | None = None,
        decision_seqs: Sequence[int] | None = None,
    ) -> FeedbackRows:
        """Feedback with ``after_seq < seq <= until_seq`` (and, if given, on the decisions
        numbered ``decision_seqs``), in ``seq`` order, on the write connection."""

    @abstractmethod
    def last_seq(self, kind: EventKind) -> int:
        """The largest ``seq`` of ``kind`` (0 when empty), as the current unit sees it."""

    @abstractmethod
    def get_state(self, key: str) -> StateValue | None: ...

    @abstractmethod
    def put_state(self, key: str, value: Any, *, expect_version: int | None = None) -> int:
        """Write a JSON-able ``value``; with ``expect_version`` (0 = must not exist yet) it
        is a compare-and-set that raises :class:`~npo.errors.StateConflict` if another
        version is stored. Returns the new version."""

    @abstractmethod
    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> Lease | None:
        """Take (or extend, if already ours) lease ``name`` for ``ttl_s`` seconds of the
        database's clock; None if someone else holds it and it has not expired."""

    @abstractmethod
    def renew_lease(self, name: str, holder: str, ttl_s: float) -> Lease:
        """Extend a lease we hold; :class:`~npo.errors.LeaseLost` if we no longer do."""

    @abstractmethod
    def release_lease(self, name: str, holder: str) -> bool: ...

    @abstractmethod
    def put_config(self, config: Mapping[str, Any], *, reason: str = "configured") -> int:
        """Store a new version of the loop's configuration (audited); an identical one is
        a no-op returning the current version."""

    @abstractmethod
    def get_config(self, version: int | None = None) -> ConfigRecord | None: ...

    @abstractmethod
    def append_monitor_point(self, point: MonitorPoint) -> None:
        """Append a point of the monitor's history (``point.seq`` must be larger than any
        stored; the loop writes it in the unit of work of its checkpoint)."""

    @abstractmethod
    def monitor_history(self, max_points: int = 500) -> list[MonitorPoint]:
        """The monitor's history, oldest first, evenly thinned by ``seq`` to at most
        ``max_points``, always keeping the points where ``state`` changed (and the newest).
        Only if more than ``max_points`` state changes are stored: the newest of them."""

    # -- policy and threshold versions ------------------------------------------------
    @abstractmethod
    def add_policy(self, policy: PolicyVersion) -> None: ...

    @abstractmethod
    def get_policy(self, version: str) -> PolicyVersion: ...

    @abstractmethod
    def policies(self) -> list[PolicyVersion]: ...

    @abstractmethod
    def active_policy(self) -> str | None:
        """Version currently serving, or None."""

    @abstractmethod
    def set_active_policy(self, version: str, *, reason: str, evidence: Mapping[str, Any]) -> None:
        """Make ``version`` serve; writes an audit record (promotion / rollback)."""

    @abstractmethod
    def add_thresholds(self, thresholds: ThresholdSet) -> None: ...

    @abstractmethod
    def get_thresholds(self, version: str) -> ThresholdSet: ...

    @abstractmethod
    def active_thresholds(self) -> str | None: ...

    @abstractmethod
    def set_active_thresholds(
        self, version: str, *, reason: str, evidence: Mapping[str, Any]
    ) -> None: ...

    # -- audit log (append-only, hash-chained) ----------------------------------------
    @abstractmethod
    def append_audit(self, kind: str, payload: Mapping[str, Any]) -> AuditRecord: ...

    @abstractmethod
    def audit(self, *, kind: str | None = None, limit: int | None = None) -> list[AuditRecord]: ...

    @abstractmethod
    def verify_audit(self, *, expect_head: str | None = None) -> AuditVerification:
        """Recompute the chain and the head history; ``expect_head``: a head hash kept
        elsewhere that must still be in the chain."""

"""Storage behind one interface: SQLite (embedded default) and PostgreSQL."""

from npo.store.base import (
    AuditRecord,
    AuditVerification,
    DecisionArrays,
    IngestReport,
    LabelledFeedback,
    Store,
)

__all__ = [
    "AuditRecord",
    "AuditVerification",
    "DecisionArrays",
    "IngestReport",
    "LabelledFeedback",
    "Store",
]

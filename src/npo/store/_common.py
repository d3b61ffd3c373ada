"""Moved: the audit chain lives in :mod:`npo.store.audit`; re-exported for code written
against NPO 0.1."""

from npo.store.audit import GENESIS, audit_hash, canonical_json

__all__ = ["GENESIS", "audit_hash", "canonical_json"]

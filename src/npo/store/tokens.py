"""Bearer tokens of the service, stored hashed, with a role each.

A token is ``npo_`` followed by 43 URL-safe characters (256 random bits); the store keeps
only its SHA-256 (a fast hash is enough for a random secret of that size: there is
nothing to guess from), its name (unique for ever) and its role. Revoking appends to
``token_revocations``; both tables are append-only. Creating and revoking are audited
(``token.created`` / ``token.revoked``, with who did it).

Roles (:data:`ROLES`): ``reviewer`` (feedback, review queue), ``operator`` (decide,
record decisions, read), ``admin`` (everything, including thresholds, policies,
promotion, rollback and tokens).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from npo.domain.rules import from_us, now_us
from npo.errors import ConflictError, ItemError, NotFound, ValidationFailed
from npo.store.additive import ensure_tables, lock
from npo.store.schema import TOKEN_REVOCATIONS, TOKENS

#: role -> what it may do
ROLES: dict[str, frozenset[str]] = {
    "reviewer": frozenset({"feedback", "queue"}),
    "operator": frozenset({"decide", "read"}),
    "admin": frozenset({"feedback", "queue", "decide", "read", "admin"}),
}
PREFIX = "npo_"


@dataclass(frozen=True)
class TokenInfo:
    """A token as stored (never the secret itself)."""

    name: str
    role: str
    created_at: datetime
    created_by: str | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def may(self, permission: str) -> bool:
        return self.active and permission in ROLES[self.role]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
            "revoked_by": self.revoked_by,
            "active": self.active,
        }


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _bad(field: str, reason: str) -> ValidationFailed:
    return ValidationFailed([ItemError(0, field, reason)], what="token")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise _bad("name", f"must be a non-empty string of at most 100 characters, got {name!r}")
    if any(ord(c) < 32 for c in name):
        raise _bad("name", "must not contain control characters")
    return name.strip()


_SELECT = (
    "SELECT t.name, t.role, t.created_us, t.created_by, r.revoked_us, r.revoked_by "
    "FROM tokens t LEFT JOIN token_revocations r ON r.name = t.name"
)


def _info(row: Any) -> TokenInfo:
    name, role, created, by, revoked, rby = row
    return TokenInfo(
        name,
        role,
        from_us(int(created)),
        by,
        None if revoked is None else from_us(int(revoked)),
        rby,
    )


def create_token(
    store: Any, name: str, role: str, *, actor: str | None = None
) -> tuple[str, TokenInfo]:
    """A new token (the secret is returned once and never stored) and its record."""
    name = _check_name(name)
    if role not in ROLES:
        raise _bad("role", f"must be one of {', '.join(ROLES)}, got {role!r}")
    ensure_tables(store, (TOKENS, TOKEN_REVOCATIONS))
    secret = PREFIX + secrets.token_urlsafe(32)
    with store.transaction():
        lock(store, "tokens")
        if store._x("SELECT 1 FROM tokens WHERE name = ?", (name,)).fetchone() is not None:
            raise ConflictError(
                [
                    ItemError(
                        0,
                        "name",
                        f"a token named {name!r} exists already (names are never reused)",
                        name,
                    )
                ],
                what="token",
            )
        created = now_us()
        store._x(
            "INSERT INTO tokens (name, role, hash, created_us, created_by) VALUES (?, ?, ?, ?, ?)",
            (name, role, token_hash(secret), created, actor),
        )
        store.append_audit("token.created", {"name": name, "role": role, "by": actor})
    return secret, TokenInfo(name, role, from_us(created), actor)


def list_tokens(store: Any) -> list[TokenInfo]:
    """Every token ever created, oldest first."""
    ensure_tables(store, (TOKENS, TOKEN_REVOCATIONS))
    with store._read():
        return [_info(r) for r in store._x(f"{_SELECT} ORDER BY t.seq").fetchall()]


def get_token(store: Any, name: str) -> TokenInfo:
    ensure_tables(store, (TOKENS, TOKEN_REVOCATIONS))
    with store._read():
        row = store._x(f"{_SELECT} WHERE t.name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"no token named {name!r}")
    return _info(row)


def revoke_token(store: Any, name: str, *, actor: str | None = None) -> TokenInfo:
    """Revoke a token for ever (audited); revoking a revoked token changes nothing."""
    ensure_tables(store, (TOKENS, TOKEN_REVOCATIONS))
    with store.transaction():
        lock(store, "tokens")
        info = get_token(store, name)
        if not info.active:
            return info
        store._x(
            "INSERT INTO token_revocations (name, revoked_us, revoked_by) VALUES (?, ?, ?)",
            (name, now_us(), actor),
        )
        store.append_audit("token.revoked", {"name": name, "role": info.role, "by": actor})
    return get_token(store, name)


def authenticate(store: Any, token: str) -> TokenInfo | None:
    """The active token whose secret is ``token``, or None."""
    if not isinstance(token, str) or not token.startswith(PREFIX) or len(token) > 200:
        return None
    ensure_tables(store, (TOKENS, TOKEN_REVOCATIONS))
    with store._read():
        row = store._x(f"{_SELECT} WHERE t.hash = ?", (token_hash(token),)).fetchone()
    if row is None:
        return None
    info = _info(row)
    return info if info.active else None

"""Sign-in sessions and forgery protection of the dashboard.

- Signing in with a token (``npo token create``) sets ``npo_session``: an HTTP-only,
  ``SameSite=Strict`` cookie (``Secure`` when served over https) holding the token's
  *name* and a per-session CSRF secret, signed with :mod:`itsdangerous` under a key kept
  in the store (``web.session_key``: every worker and every restart agrees on it). The
  token's secret itself is never put in the cookie.
- Every request re-reads the token by name (:func:`npo.store.tokens.get_token`): a revoked
  token ends its sessions at once; the role is the token's current role.
- A session lasts at most :data:`MAX_AGE_S`; signing out deletes the cookie.
- Every form carries the session's CSRF secret (``csrf`` field) and a POST without it, or
  with another one, is refused with 403 before anything runs. The sign-in form, before
  any session exists, uses a double-submit cookie (``npo_login_csrf``).
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from npo.errors import NotFound, StateConflict
from npo.store.tokens import ROLES, TokenInfo, get_token

COOKIE = "npo_session"
LOGIN_CSRF_COOKIE = "npo_login_csrf"
MAX_AGE_S = 12 * 3600
KEY_STATE = "web.session_key"
_SALT = "npo.web.session"


@dataclass(frozen=True)
class Viewer:
    """Who is signed in: the token's record and the session's CSRF secret."""

    token: TokenInfo
    csrf: str

    @property
    def name(self) -> str:
        return self.token.name

    @property
    def role(self) -> str:
        return self.token.role

    def may(self, permission: str) -> bool:
        return self.token.may(permission)

    @property
    def can_read(self) -> bool:
        return self.may("read")

    @property
    def can_review(self) -> bool:
        return self.may("queue") and self.may("feedback")

    @property
    def is_admin(self) -> bool:
        return self.may("admin")


class PageError(Exception):
    """An HTTP error answered with an HTML page (or a redirect to the sign-in page)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def session_key(store: Any) -> bytes:
    """The signing key of this store's sessions (created once, shared by all workers)."""
    got = store.get_state(KEY_STATE)
    if got is None:
        with contextlib.suppress(StateConflict):  # another worker created it first
            store.put_state(KEY_STATE, secrets.token_hex(32), expect_version=0)
        got = store.get_state(KEY_STATE)
    return bytes.fromhex(str(got.value))


def _serializer(key: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(key, salt=_SALT)


def new_session(key: bytes, token_name: str) -> str:
    """The cookie value of a new session of ``token_name``."""
    return _serializer(key).dumps({"n": token_name, "c": secrets.token_urlsafe(24)})


def read_session(key: bytes, value: str | None) -> tuple[str, str] | None:
    """(token name, CSRF secret) of a valid, unexpired cookie value; else None."""
    if not value:
        return None
    try:
        data = _serializer(key).loads(value, max_age=MAX_AGE_S)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("n"), str):
        return None
    return data["n"], str(data.get("c", ""))


def resolve(store: Any, key: bytes, value: str | None) -> Viewer | None:
    """The viewer of a session cookie: None if the cookie is missing, forged, expired, or
    its token no longer exists or was revoked."""
    got = read_session(key, value)
    if got is None:
        return None
    try:
        info = get_token(store, got[0])
    except NotFound:
        return None
    if not info.active or info.role not in ROLES:
        return None
    return Viewer(info, got[1])


def same_secret(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two CSRF secrets (both non-empty)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


def set_cookie(response: Any, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )

"""A small Python client of ``npo serve`` (on httpx).

>>> from npo.client import Client                              # doctest: +SKIP
>>> with Client("http://127.0.0.1:8000", token) as npo:        # doctest: +SKIP
...     out = npo.decide(X, scenario_ids=["s1", "s2"])
...     npo.send_feedback([{"id": "f1", "decision_id": "d-s1", "kind": "like"}])

Every call that writes is idempotent by id (decision ids default to ``d-<scenario id>``;
feedback and recorded decisions carry their own ids), so the client retries it on a lost
connection, a timeout or a 502/503/504: a re-sent request changes nothing that was
already stored. Errors are NPO's own exception tree (:mod:`npo.errors`), with the
server's items (index, id, field, reason): 422 -> :class:`~npo.errors.ValidationFailed`,
409 -> :class:`~npo.errors.ConflictError`, 404 -> :class:`~npo.errors.NotFound`; any
other status -> :class:`ServiceError` (``status``, ``errors``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from npo.errors import ConflictError, ItemError, NotFound, NPOError, ValidationFailed, require

__all__ = ["Client", "ServiceError"]

_RETRY_STATUS = (502, 503, 504)


class ServiceError(NPOError):
    """The service answered with an error status other than 404 / 409 / 422."""

    def __init__(self, status: int, message: str, errors: list[ItemError] | None = None) -> None:
        self.status = status
        self.errors = list(errors or [])
        super().__init__(f"HTTP {status}: {message}")


def _raise_for(resp: Any) -> None:
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
    except ValueError:
        body = {"error": resp.text[:500]}
    message = str(body.get("error", resp.reason_phrase))
    items = [
        ItemError(int(e.get("index", 0)), str(e.get("field", "")), str(e.get("reason", "")),
                  e.get("id"))
        for e in body.get("errors") or []
    ]  # fmt: skip
    if resp.status_code == 422:
        raise ValidationFailed(items or [ItemError(0, "request", message)], what=message)
    if resp.status_code == 409:
        raise ConflictError(items or [ItemError(0, "id", message)], what=message)
    if resp.status_code == 404:
        raise NotFound(message)
    raise ServiceError(resp.status_code, message, items)


def _rows(X: Any) -> list[list[float]]:
    if hasattr(X, "tolist"):
        X = X.tolist()
    return [[float(v) for v in row] for row in X]


class Client:
    """``Client(url, token)``: ``timeout`` seconds per request; ``retries``: how often an
    idempotent call is re-sent after a transport error or 502/503/504 (with a short
    exponential back-off)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        transport: Any = None,
    ) -> None:
        httpx = require("httpx", "client", "npo.client")
        self.url = url.rstrip("/")
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )
        self._transport_errors = (httpx.TransportError,)

    # -- plumbing ------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, retry: bool = True, **kw: Any) -> Any:
        attempts = 1 + (self.retries if retry else 0)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                resp = self._http.request(method, path, **kw)
            except self._transport_errors:
                if last:
                    raise
            else:
                if resp.status_code not in _RETRY_STATUS or last:
                    _raise_for(resp)
                    return resp.json()
            time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop --------------------------------------------------------------------------
    def decide(
        self,
        X: Any,
        *,
        scenario_ids: Sequence[str],
        segments: Sequence[str] | None = None,
        decision_ids: Sequence[str] | None = None,
        review_capacity: int | None = None,
    ) -> dict[str, Any]:
        """Decide each row of ``X`` (features): ``{"decisions": [{decision_id, action (or
        DEFER), review, propensity, scores, ...}], "override": bool, "events": [...]}``."""
        rows = _rows(X)
        scen = []
        for i, (sid, x) in enumerate(zip(scenario_ids, rows, strict=True)):
            item: dict[str, Any] = {"id": str(sid), "features": x}
            if segments is not None:
                item["segment"] = str(segments[i])
            if decision_ids is not None:
                item["decision_id"] = str(decision_ids[i])
            scen.append(item)
        body: dict[str, Any] = {"scenarios": scen}
        if review_capacity is not None:
            body["review_capacity"] = int(review_capacity)
        return self._call("POST", "/v1/decide", json=body)  # type: ignore[no-any-return]

    def record_decisions(self, decisions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Store decisions made by your own system (``npo.domain.Decision`` fields)."""
        return self._call(  # type: ignore[no-any-return]
            "POST", "/v1/decisions", json={"decisions": [_jsonable(d) for d in decisions]}
        )

    def send_feedback(self, feedback: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Send a batch of feedback (``npo.domain.Feedback`` fields); safe to retry."""
        return self._call(  # type: ignore[no-any-return]
            "POST", "/v1/feedback", json={"feedback": [_jsonable(f) for f in feedback]}
        )

    def review_queue(self, reviewer: str | None = None, limit: int = 10) -> dict[str, Any]:
        """Claim up to ``limit`` decisions to review (the claim expires)."""
        params: dict[str, Any] = {"limit": limit}
        if reviewer is not None:
            params["reviewer"] = reviewer
        return self._call("GET", "/v1/review-queue", params=params)  # type: ignore[no-any-return]

    def alignment(self, by: str = "segment", **filters: Any) -> dict[str, Any]:
        """The alignment loss with its interval, overall and ``by`` group."""
        params = {"by": by, **{k: v for k, v in filters.items() if v is not None}}
        return self._call("GET", "/v1/alignment", params=params)  # type: ignore[no-any-return]

    def monitor(self) -> dict[str, Any]:
        """Monitor state, band, λ, triggers, what serves."""
        return self._call("GET", "/v1/monitor")  # type: ignore[no-any-return]


def _jsonable(item: Any) -> dict[str, Any]:
    if hasattr(item, "model_dump"):
        item = item.model_dump(mode="json", exclude_none=True)
    out = {}
    for k, v in dict(item).items():
        if hasattr(v, "isoformat"):
            v = v.isoformat()
        elif hasattr(v, "tolist"):
            v = v.tolist()
        elif isinstance(v, tuple):
            v = list(v)
        out[k] = v
    return out

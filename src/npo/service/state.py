"""What one service process holds: the store, the loop (through
:mod:`npo.service.loop_gateway`), a short cache of checked tokens and the decide batcher.

Every store call of a process is serialised by the store's own lock (one connection per
process); parallelism comes from worker processes (PostgreSQL). Nothing here is state that
could diverge between workers: the loop keeps its state in the store and reloads it when
another worker moved it on.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from starlette.concurrency import run_in_threadpool

from npo.errors import NPOError
from npo.loop import LoopConfig
from npo.service import loop_gateway as gw
from npo.service.settings import Settings
from npo.store import open_store, queue
from npo.store.tokens import TokenInfo, authenticate

T = TypeVar("T")


@dataclass
class DecideCall:
    """One ``/v1/decide`` request, ready for the loop."""

    X: np.ndarray
    scenario_ids: list[str]
    segments: list[str]
    decision_ids: list[str]
    timestamps: np.ndarray | None  # None: stamped by the loop
    review_capacity: int | None


class ServiceState:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        config = LoopConfig.from_file(settings.config) if settings.config else None
        self.store = open_store(settings.db, config.action_space if config else None)
        try:
            # one seed for every worker: a decision's review coin depends on its id only,
            # so a re-sent (or re-run after a crash) decision is sampled as before
            self.loop = gw.open_loop(
                self.store,
                config,
                seed=settings.seed,
                trusted=settings.trusted,
                worker=gw.default_worker(),
            )
        except BaseException:
            self.store.close()
            raise
        self.config = self.loop.config
        self._tokens: dict[str, tuple[TokenInfo | None, float]] = {}
        self._tokens_lock = threading.Lock()
        self.batcher = DecideBatcher(self.loop, settings.decide_batch, self.enqueue)

    def enqueue(self, decision_ids: list[str]) -> None:
        """Put decisions sent for review into the review queue (idempotent)."""
        if decision_ids:
            queue.enqueue(self.store, decision_ids, agreement=self.settings.agreement)

    @property
    def lock(self) -> Any:
        return self.store._lock

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in a thread, holding the store's lock."""

        def call() -> T:
            with self.lock:
                return fn(*args, **kwargs)

        return await run_in_threadpool(call)

    async def token(self, secret: str) -> TokenInfo | None:
        """The active token for ``secret`` (trusted for ``token_cache_s`` seconds; a
        look-up in the store otherwise, off the event loop)."""
        now = time.monotonic()
        hit = self._tokens.get(secret)
        if hit is not None and hit[1] > now:
            return hit[0]
        info = await self.run(authenticate, self.store, secret)
        with self._tokens_lock:
            if len(self._tokens) > 10_000:
                self._tokens.clear()
            self._tokens[secret] = (info, now + self.settings.token_cache_s)
        return info

    def forget_tokens(self) -> None:
        with self._tokens_lock:
            self._tokens.clear()

    def close(self) -> None:
        try:
            with self.lock:
                self.loop.close()
        finally:
            self.store.close()


class DecideBatcher:
    """Decides concurrent ``/v1/decide`` requests together: while the loop works on one
    batch, the requests that arrive wait and form the next (up to ``max_items``
    scenarios). A merged batch that the loop rejects is re-run request by request, so
    an error only ever answers the request that caused it. ``max_items = 1``: one loop
    call per request."""

    def __init__(self, loop: Any, max_items: int, enqueue: Callable[[list[str]], None]) -> None:
        self.loop = loop
        self.enqueue = enqueue
        self.max_items = max_items
        self._waiting: list[tuple[DecideCall, asyncio.Future[Any]]] = []
        self._busy = False

    async def submit(self, call: DecideCall) -> gw.Decided:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((call, fut))
        if not self._busy:
            self._busy = True
            asyncio.get_running_loop().create_task(self._drain())
        return await fut  # type: ignore[no-any-return]

    async def _drain(self) -> None:
        try:
            while self._waiting:
                await asyncio.sleep(0)
                batch, n = [], 0
                while self._waiting and (
                    not batch or n + len(self._waiting[0][0].scenario_ids) <= self.max_items
                ):
                    item = self._waiting.pop(0)
                    batch.append(item)
                    n += len(item[0].scenario_ids)
                results = await run_in_threadpool(self._decide, [c for c, _ in batch])
                for (_, fut), res in zip(batch, results, strict=True):
                    if fut.done():
                        continue
                    if isinstance(res, BaseException):
                        fut.set_exception(res)
                    else:
                        fut.set_result(res)
        finally:
            self._busy = False

    def _one(self, c: DecideCall) -> Any:
        try:
            return self.loop.decide(
                c.X,
                scenario_ids=c.scenario_ids,
                segments=c.segments,
                decision_ids=c.decision_ids,
                timestamps=c.timestamps,
                review_capacity=c.review_capacity,
            )
        except Exception as exc:  # answered to that request (mapped by the error handlers)
            return exc

    def _decide(self, calls: list[DecideCall]) -> list[Any]:
        results = self._decide_all(calls)
        reviewed = [
            d
            for r in results
            if isinstance(r, gw.Decided)
            for d, sent in zip(r.decision_id, r.review, strict=True)
            if sent
        ]
        try:
            self.enqueue(reviewed)
        except Exception as exc:  # the decisions are stored; a retry re-queues them
            return [exc] * len(calls)
        return results

    def _decide_all(self, calls: list[DecideCall]) -> list[Any]:
        mergeable = (
            len(calls) > 1
            and all(c.review_capacity is None for c in calls)
            and len({c.X.shape[1] for c in calls}) == 1
            and len({d for c in calls for d in c.decision_ids})
            == sum(len(c.decision_ids) for c in calls)
        )
        if not mergeable:
            return [self._one(c) for c in calls]
        merged = DecideCall(
            np.concatenate([c.X for c in calls]),
            [s for c in calls for s in c.scenario_ids],
            [g for c in calls for g in c.segments],
            [d for c in calls for d in c.decision_ids],
            _timestamps(calls),
            None,
        )
        res = self._one(merged)
        if isinstance(res, NPOError):
            return [self._one(c) for c in calls]
        if isinstance(res, BaseException):
            return [res] * len(calls)
        out, at = [], 0
        for c in calls:
            n = len(c.scenario_ids)
            out.append(_slice(res, at, at + n))
            at += n
        return out


def _timestamps(calls: list[DecideCall]) -> np.ndarray | None:
    """The merged batch's times: None when no request gave any (the loop stamps them)."""
    if all(c.timestamps is None for c in calls):
        return None
    from npo.domain.rules import now_us

    now = now_us()
    return np.concatenate(
        [
            np.full(len(c.scenario_ids), now, np.int64) if c.timestamps is None else c.timestamps
            for c in calls
        ]
    )


def _slice(b: gw.Decided, lo: int, hi: int) -> gw.Decided:
    import dataclasses

    return dataclasses.replace(
        b,
        decision_id=b.decision_id[lo:hi],
        scenario_id=b.scenario_id[lo:hi],
        action=b.action[lo:hi],
        shadow_action=b.shadow_action[lo:hi],
        propensity=b.propensity[lo:hi],
        review=b.review[lo:hi],
        scores=b.scores[lo:hi],
        decision=b.decision[lo:hi],
        shadow=b.shadow[lo:hi],
        events=b.events if lo == 0 else (),
    )

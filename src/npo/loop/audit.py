"""The audit writer: every event of the loop, as a :class:`~npo.loop.LoopEvent` for the
caller and (by default) as an audit record ``loop.<kind>`` in the store.

Events are written inside the caller's unit of work, so they commit with the data and the
checkpoint that caused them, or not at all: a unit that fails leaves no record and returns
no event. ``worker`` (who wrote it) goes into each record; the content of the log
otherwise depends only on the stream of calls (the restart-equivalence tests compare
records modulo their time and ``worker``). The most recent events are kept in memory
(bounded); the log itself is the store's.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from npo.loop.results import LoopEvent

if TYPE_CHECKING:
    from npo.store.base import Store

__all__ = ["AuditWriter"]


class AuditWriter:
    """Emits events; ``recent`` keeps the last ``keep`` committed ones."""

    def __init__(self, store: Store, worker: str, *, keep: int = 500) -> None:
        self.store = store
        self.worker = worker
        self.recent: deque[LoopEvent] = deque(maxlen=keep)
        self._open: list[LoopEvent] | None = None
        self.committed: list[LoopEvent] = []  # events of the current call, committed

    def begin(self) -> None:
        """A unit of work starts: its events are held until it commits."""
        self._open = []

    def commit(self) -> None:
        events = self._open or []
        self._open = None
        self.recent.extend(events)
        self.committed.extend(events)

    def discard(self) -> None:
        self._open = None

    def take(self) -> list[LoopEvent]:
        """The committed events since the last call of ``take``."""
        out, self.committed = self.committed, []
        return out

    def emit(
        self, kind: str, step: int, payload: dict[str, Any], *, audit: bool = True
    ) -> LoopEvent:
        """An event (and its audit record ``loop.<kind>`` unless ``audit=False``: for events
        whose evidence another record already holds, e.g. a promotion's activation)."""
        ev = LoopEvent(kind, step, payload)
        if audit:
            self.store.append_audit(
                f"loop.{kind}", {"step": step, **payload, "worker": self.worker}
            )
        if self._open is not None:
            self._open.append(ev)
        else:  # outside a unit (cannot be rolled back)
            self.recent.append(ev)
            self.committed.append(ev)
        return ev

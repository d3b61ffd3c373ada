"""The loop's checkpoint and its units of work.

Everything the loop keeps between calls -- the monitors' evidence, trigger state and
override mode, the observation stream's watermarks and response counts, the retraining
cadence, the pending attempt, the validation alpha spent, the counts -- is one JSON document
in the store's state (key ``npo.loop``), written by compare-and-set **in the same
transaction as the decisions and feedback that changed it**. A unit of work:

1. opens a transaction and takes the store lock ``npo.loop`` (several processes: one at a
   time; SQLite's write transaction already excludes the others);
2. reads the checkpoint's version; if another process (or a restart) moved it on, every
   part reloads its state from it (a cache rebuilt from the store);
3. runs the call: its writes, then a catch-up with the store;
4. writes the new checkpoint with ``expect_version`` = the version read (only when it
   changed) -- and, if what ``watch()`` returns changed during the call, calls
   ``on_change(version)`` (the loop appends a point of the monitor's history, so there is
   exactly one per checkpoint that moved the monitor) -- and commits.

The document is stored as one canonical JSON text under ``{"doc": …}`` (sorted keys, no
NaN: the parts write non-finite numbers as strings), so writing it costs one encoding.

A process killed at any moment leaves the call's data *and* checkpoint, or neither. A
call that fails rolls back both, and the process forgets its cache (the next unit reloads
it): any error leaves the loop exactly as it was before the call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from npo.loop.audit import AuditWriter
    from npo.store.base import Store

__all__ = ["KEY", "Checkpoint", "Part"]

KEY = "npo.loop"


class Part(Protocol):
    """A part of the loop with a checkpointed state."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class Checkpoint:
    """Units of work over the loop's checkpoint (module docstring): ``dump()`` the state to
    write, ``load(state)`` to take another's, ``start()`` to begin on a store without one."""

    def __init__(
        self,
        store: Store,
        writer: AuditWriter,
        *,
        dump: Callable[[], dict[str, Any]],
        load: Callable[[Mapping[str, Any]], None],
        start: Callable[[], None],
        watch: Callable[[], Any] | None = None,
        on_change: Callable[[int], None] | None = None,
    ) -> None:
        self.store = store
        self.writer = writer
        self.dump = dump
        self._load = load
        self._start = start
        self._watch = watch
        self._on_change = on_change
        self.version: int | None = None
        self._text: str | None = None
        self._depth = 0

    def forget(self) -> None:
        """Drop the cache: the next unit reloads every part from the store."""
        self.version = None
        self._text = None

    @contextmanager
    def unit(self) -> Iterator[None]:
        """One unit of work (module docstring); nested calls join the outer one."""
        if self._depth:
            yield
            return
        self._depth += 1
        self.writer.begin()
        try:
            with self.store.transaction():
                self.store.lock(KEY)
                found = self.store.get_state(KEY)
                expect = 0 if found is None else found.version
                if found is None:
                    self._start()
                    self._text = None
                elif found.version != self.version:
                    self._load(json.loads(found.value["doc"]))
                    self._text = found.value["doc"]  # a load that changed a part writes
                before = None if self._watch is None else self._watch()
                yield
                text = _text(self.dump())
                if text != self._text:
                    self.version = self.store.put_state(KEY, {"doc": text}, expect_version=expect)
                    self._text = text
                    if self._on_change is not None and self._watch() != before:  # type: ignore[misc]
                        self._on_change(self.version)
                else:
                    self.version = expect
        except BaseException:
            self.forget()
            self.writer.discard()
            raise
        else:
            self.writer.commit()
        finally:
            self._depth -= 1

    def refresh(self) -> bool:
        """Outside a unit: reload the parts if the stored checkpoint moved on (a read, no
        lock). True if there is a checkpoint."""
        found = self.store.get_state(KEY)
        if found is None:
            return False
        if found.version != self.version:
            try:
                self._load(json.loads(found.value["doc"]))
            except BaseException:
                self.forget()
                raise
            self.version = found.version
            self._text = found.value["doc"]
        return True

    def stored(self) -> dict[str, Any] | None:
        """The stored document (for inspection and tests), or None."""
        found = self.store.get_state(KEY)
        return None if found is None else json.loads(found.value["doc"])


def _text(state: Mapping[str, Any]) -> str:
    return json.dumps(state, sort_keys=True, separators=(",", ":"), allow_nan=False)

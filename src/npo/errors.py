"""Errors raised by NPO. Every error names the item, the field and the reason.

The tree (catch :class:`NPOError` for all of them; the CLI maps each to exit code 2)::

    NPOError
     ├── ValidationFailed (ValueError)   a batch or item was rejected; lists every bad item
     │    └── ConflictError               an id re-sent with different content
     ├── NotFound (KeyError)              a referenced version does not exist
     ├── MissingExtra (ImportError)       an optional dependency is missing
     ├── StoreError                       the database cannot be used as asked
     │    ├── StoreUnavailable            cannot open / connect (no such folder, a folder,
     │    │                               server down, permissions)
     │    ├── NotAStore                   not an NPO store, or one of another schema version
     │    ├── StoreCorrupt                the database file is damaged
     │    └── StoreReadOnly               the database (file or folder) cannot be written
     ├── StateConflict                    compare-and-set of a state key lost a race
     └── LeaseLost                        a lease is held by someone else (or expired)
"""

from __future__ import annotations

from dataclasses import dataclass


class NPOError(Exception):
    """Base class of every error NPO raises on purpose."""


@dataclass(frozen=True)
class ItemError:
    """One problem with one input item.

    ``index`` is the 0-based position in the batch (or the 1-based line of a file when
    ``line`` is set), ``item_id`` the item's id when known, ``field`` the offending field.
    """

    index: int
    field: str
    reason: str
    item_id: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else f"item {self.index}"
        ident = f" (id={self.item_id!r})" if self.item_id is not None else ""
        return f"{where}{ident}: {self.field}: {self.reason}"

    def to_dict(self) -> dict[str, object]:
        return {
            "index": self.index,
            "line": self.line,
            "id": self.item_id,
            "field": self.field,
            "reason": self.reason,
        }


class ValidationFailed(NPOError, ValueError):
    """A batch (or a single item) was rejected; ``errors`` lists every bad item.

    When this is raised by a store, nothing of the batch was stored.
    """

    def __init__(self, errors: list[ItemError], what: str = "batch") -> None:
        self.errors = list(errors)
        head = "; ".join(str(e) for e in self.errors[:10])
        more = f" (+{len(self.errors) - 10} more)" if len(self.errors) > 10 else ""
        super().__init__(f"{what} rejected, {len(self.errors)} bad item(s): {head}{more}")


class ConflictError(ValidationFailed):
    """An id was re-sent with content different from the stored event."""


class NotFound(NPOError, KeyError):
    """A referenced object (policy version, threshold version, …) does not exist."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "not found"


class StoreError(NPOError):
    """The database cannot be used as asked; the message names the database and the reason
    (and, where there is one, what to do)."""


class StoreUnavailable(StoreError):
    """The database cannot be opened or reached."""


class NotAStore(StoreError):
    """The database is not an NPO store (NPO refuses to change it), or an NPO store of a
    schema version this NPO does not read."""


class StoreCorrupt(StoreError):
    """The database file is damaged."""


class StoreReadOnly(StoreError):
    """The database (or its folder) cannot be written."""


class StateConflict(NPOError):
    """``put_state(..., expect_version=v)`` found another version: someone else wrote it."""

    def __init__(self, key: str, expected: int | None, found: int | None) -> None:
        self.key, self.expected, self.found = key, expected, found
        exp = "absent" if not expected else f"version {expected}"
        got = "absent" if found is None else f"version {found}"
        super().__init__(
            f"state {key!r}: expected {exp}, found {got} (written by someone else "
            "meanwhile); read it again and retry"
        )


class LeaseLost(NPOError):
    """A lease is held by another holder, or has expired and been taken over."""


class MissingExtra(NPOError, ImportError):
    """An optional dependency is needed; the message says which extra installs it."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the optional package {module!r}: "
            f"install it with  pip install 'npo[{extra}]'"
        )


def require(module: str, extra: str, purpose: str):  # type: ignore[no-untyped-def]
    """Import an optional module or raise :class:`MissingExtra` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtra(module, extra, purpose) from exc


def shorten(text: str, limit: int = 200) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and end around a
    note saying how long it was: an error never echoes a huge value back whole."""
    if len(text) <= limit:
        return text
    head = max(1, limit * 2 // 3)
    tail = max(1, limit - head)
    return (
        f"{text[:head]}…[{len(text) - head - tail:,} more characters; {len(text):,} in all]…"
        f"{text[-tail:]}"
    )

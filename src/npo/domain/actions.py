"""The action space ``A = {a_1..a_K}`` and the integer codes used on the hot path.

In arrays a decision is an action index ``0..K-1`` or :data:`DEFER_CODE` (``-1``); a
label is an action index or :data:`NO_LABEL` (``-1``, an abstention). ``-1`` indexes the
last row of a ``(K+1, K)`` cost matrix, which is the DEFER row, so ``C[d, y]`` works
directly on decision codes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator

DEFER = "DEFER"
DEFER_CODE = -1
NO_LABEL = -1


class ActionSpace(BaseModel):
    """An ordered, finite set of action names (K ≥ 2). ``DEFER`` is not an action."""

    model_config = ConfigDict(frozen=True)

    actions: tuple[str, ...]

    def __init__(self, actions: Iterable[str] | None = None, /, **data: object) -> None:
        if actions is not None:
            data["actions"] = tuple(actions)
        super().__init__(**data)

    @field_validator("actions")
    @classmethod
    def _check(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(v) < 2:
            raise ValueError(f"needs at least 2 actions, got {len(v)}")
        for a in v:
            if not isinstance(a, str) or not a.strip():
                raise ValueError(f"action names must be non-empty strings, got {a!r}")
            if a == DEFER:
                raise ValueError(f"{DEFER!r} is reserved for deferring to a person")
        if len(set(v)) != len(v):
            dup = sorted({a for a in v if v.count(a) > 1})
            raise ValueError(f"duplicate action names: {dup}")
        return v

    @classmethod
    def binary(cls, act: str = "act", dont: str = "dont") -> ActionSpace:
        """The binary case: K=2, ``act`` vs ``don't``."""
        return cls((dont, act))

    @property
    def k(self) -> int:
        return len(self.actions)

    def __len__(self) -> int:
        return len(self.actions)

    def __contains__(self, name: object) -> bool:
        return name in self.actions

    def index(self, name: str) -> int:
        """Code of an action name; ``DEFER`` gives :data:`DEFER_CODE`."""
        if name == DEFER:
            return DEFER_CODE
        try:
            return self.actions.index(name)
        except ValueError:
            raise ValueError(
                f"unknown action {name!r}; the action space is {list(self.actions)}"
            ) from None

    def name(self, code: int) -> str:
        if code == DEFER_CODE:
            return DEFER
        if not 0 <= code < self.k:
            raise ValueError(f"action code {code} outside 0..{self.k - 1}")
        return self.actions[code]

    def encode(self, names: Sequence[str] | np.ndarray, *, allow_defer: bool = True) -> np.ndarray:
        """Vectorised :meth:`index`; raises ``ValueError`` naming the first unknown name."""
        lookup = {a: i for i, a in enumerate(self.actions)}
        if allow_defer:
            lookup[DEFER] = DEFER_CODE
        out = np.empty(len(names), dtype=np.int16)
        for i, n in enumerate(names):
            code = lookup.get(n)
            if code is None:
                raise ValueError(f"unknown action {n!r} at position {i}")
            out[i] = code
        return out

    def decode(self, codes: np.ndarray) -> list[str]:
        names = [*self.actions, DEFER]  # index -1 is DEFER
        return [names[int(c)] for c in codes]

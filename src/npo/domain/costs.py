"""The cost matrix ``C[d, y]``: cost of decision ``d ∈ A ∪ {DEFER}`` when the person's
preferred action is ``y``. ``C[y, y] = 0``, ``C[DEFER, y] = c_defer``, all entries ≥ 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from npo.domain.actions import DEFER, ActionSpace


class CostMatrix(BaseModel):
    """A ``(K+1) × K`` cost matrix; row ``K`` (also row ``-1``) is DEFER.

    The default is 0/1 with ``c_defer = 0.1``. Build one with :meth:`zero_one` or from a
    nested mapping ``{decision: {preferred: cost}}`` with :meth:`from_mapping`.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    actions: ActionSpace
    matrix: tuple[tuple[float, ...], ...]

    @model_validator(mode="after")
    def _check(self) -> CostMatrix:
        k = self.actions.k
        m = np.asarray(self.matrix, dtype=float)
        if m.shape != (k + 1, k):
            raise ValueError(
                f"matrix: shape must be (K+1, K) = ({k + 1}, {k}) with the DEFER row last, "
                f"got {m.shape}"
            )
        if not np.all(np.isfinite(m)):
            raise ValueError("matrix: every cost must be finite")
        if np.any(m < 0):
            r, c = np.argwhere(m < 0)[0]
            raise ValueError(f"matrix[{self._row(r)}][{self.actions.actions[c]}]: cost must be ≥ 0")
        diag = m[np.arange(k), np.arange(k)]
        if np.any(diag != 0):
            i = int(np.flatnonzero(diag != 0)[0])
            a = self.actions.actions[i]
            raise ValueError(f"matrix[{a}][{a}]: the right action must cost 0, got {diag[i]}")
        return self

    def _row(self, r: int) -> str:
        return DEFER if r == self.actions.k else self.actions.actions[r]

    @classmethod
    def zero_one(cls, actions: ActionSpace, c_defer: float = 0.1) -> CostMatrix:
        k = actions.k
        m = 1.0 - np.eye(k)
        m = np.vstack([m, np.full((1, k), float(c_defer))])
        return cls(actions=actions, matrix=tuple(map(tuple, m.tolist())))

    @classmethod
    def from_mapping(
        cls,
        actions: ActionSpace,
        costs: dict[str, dict[str, float]],
        *,
        c_defer: float = 0.1,
        default: float = 1.0,
    ) -> CostMatrix:
        """Off-diagonal costs default to ``default``; ``DEFER`` row to ``c_defer``."""
        names = [*actions.actions, DEFER]
        base = cls.zero_one(actions, c_defer).array.copy()
        base[: actions.k][base[: actions.k] > 0] = default
        for d, row in costs.items():
            if d not in names:
                raise ValueError(f"costs: unknown decision {d!r}; expected one of {names}")
            for y, c in row.items():
                if y not in actions:
                    raise ValueError(f"costs[{d}]: unknown preferred action {y!r}")
                base[names.index(d), actions.index(y)] = float(c)
        return cls(actions=actions, matrix=tuple(map(tuple, base.tolist())))

    @property
    def array(self) -> np.ndarray:
        """The matrix as a read-only float64 array (row -1 = DEFER)."""
        a = np.asarray(self.matrix, dtype=np.float64)
        a.setflags(write=False)
        return a

    @property
    def c_max(self) -> float:
        return float(np.max(self.matrix))

    @property
    def c_defer(self) -> np.ndarray:
        return self.array[-1]

    def cost(self, decisions: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Vectorised ``C[d_i, y_i]``; decisions may hold ``-1`` for DEFER."""
        return self.array[np.asarray(decisions, dtype=np.intp), np.asarray(labels, dtype=np.intp)]

    def to_dict(self) -> dict[str, Any]:
        return {"actions": list(self.actions.actions), "matrix": [list(r) for r in self.matrix]}

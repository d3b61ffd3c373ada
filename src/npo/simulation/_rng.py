"""Seeded random streams.

Every random draw of the simulation comes from a :class:`numpy.random.Generator` over a
counter-based Philox bit generator keyed by ``(seed, stream, step)``. Draws for step ``t``
therefore do not depend on how (or whether) earlier steps were generated: the scenario
stream can be read in any order, in blocks or one step at a time, and two runs with the
same seed but different policies (ablation arms) see the same scenarios (common random
numbers) until a closed-loop effect makes them diverge. (Scenarios are drawn in pages of
steps keyed by the page number, see :data:`npo.simulation.world.PAGE_STEPS`.)
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# stream ids
STRUCTURE = 0  # world structure: segment means, preference parameters
EVAL = 1  # the fixed evaluation sample
SCENARIOS = 2  # arrivals at a step
LOOP = 3  # closed-loop follow-ups at a step
REVIEWERS = 4  # reviewer pool
DRIVER = 5  # review sampling in the reference driver
FOLLOW_UPS = 6  # features of closed-loop follow-up scenarios at a step

_MASK64 = (1 << 64) - 1


@lru_cache(maxsize=256)
def key_for(seed: int) -> int:
    """A 128-bit Philox key derived from ``seed`` (any Python int, negative allowed)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    state = np.random.SeedSequence(abs(int(seed)) * 2 + (int(seed) < 0)).generate_state(
        2, np.uint64
    )
    return int(state[0]) | (int(state[1]) << 64)


def generator(seed: int, stream: int, step: int = 0) -> np.random.Generator:
    """The generator for ``(seed, stream, step)``; independent across distinct triples."""
    counter = [0, 0, stream & _MASK64, int(step) & _MASK64]
    return np.random.Generator(np.random.Philox(key=key_for(seed), counter=counter))


def categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One draw per row of ``probs`` (rows sum to 1), vectorised by inverse CDF."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0]) * cdf[:, -1]
    out = (cdf < u[:, None]).sum(axis=1)
    return np.minimum(out, probs.shape[1] - 1)

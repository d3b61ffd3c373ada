"""Simulation throughput: npo.simulation (vectorised, paged keyed streams) vs a per-item
Python loop peer doing the same work (scenario draw, preference probs, decision, review).

Full size: 20,000 steps × 100 scenarios/step (the issue's bar: "generates in seconds")."""

from __future__ import annotations

import time

import numpy as np

from _bench import comparison
from npo.simulation import SCENARIOS, run_fixed_rule


def _npo(name: str, steps: int) -> dict:
    spec = SCENARIOS[name].model_copy(update={"steps": steps})
    setup = spec.build(seed=1)
    rule = setup.world.bayes_rule(0, setup.cost)
    t = time.perf_counter()
    log = run_fixed_rule(
        setup.world,
        setup.reviewers,
        rule,
        steps=steps,
        review_prob=spec.review_rate,
        cost=setup.cost,
    )
    dt = time.perf_counter() - t
    n = len(log.scenarios)
    return {
        "system": f"npo.simulation ({name})",
        "steps": steps,
        "scenarios": n,
        "feedback": len(log.feedback),
        "seconds": dt,
        "scenarios_per_s": n / dt,
    }


def _peer(steps: int) -> dict:
    """Per-item loop: the obvious implementation without vectorisation."""
    rng = np.random.default_rng(1)
    k, d, per = 3, 20, 100
    W = rng.normal(size=(k, d)) / np.sqrt(d) * 4
    n = fb = 0
    t = time.perf_counter()
    for _step in range(steps):
        for _ in range(per):
            x = rng.standard_normal(d)
            z = W @ x
            p = np.exp(z - z.max())
            p /= p.sum()
            a = int(p.argmax())
            dec = a if p[a] >= 0.9 else -1
            if dec == -1 or rng.random() < 0.1:
                y = int(rng.choice(k, p=p))
                if rng.random() >= 0.02:
                    fb += 1 + 0 * y
            n += 1
    dt = time.perf_counter() - t
    return {
        "system": "per-item Python loop (peer)",
        "steps": steps,
        "scenarios": n,
        "feedback": fb,
        "seconds": dt,
        "scenarios_per_s": n / dt,
    }


def run(quick: bool) -> dict:
    steps = 500 if quick else 20_000
    peer_steps = 50 if quick else 500  # the peer is ~100× slower: compare throughput
    rows = [
        _npo("stationary", steps),
        _npo("incident-remediation", steps),
        _npo("closed-loop", steps),
        _peer(peer_steps),
    ]
    return {
        "title": "Simulation: scenario + review generation throughput",
        "rows": rows,
        "comparisons": [
            comparison(
                f"npo.simulation ({r['system'].split('(')[1].rstrip(')')})",
                r["scenarios_per_s"],
                "per-item Python loop",
                rows[-1]["scenarios_per_s"],
                unit="scenarios/s",
            )
            for r in rows[:-1]
        ],
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=1))

"""A seeded store served by a real ``npo serve``, and what the dashboard tests read back
from the store."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parents[1] / "service"))

from server import Server, client, prepare, scenarios

from npo.store import open_store

ACTIONS = ("reboot", "reimage", "repair")
KIND_NAMES = ("like", "override", "abstain")


@dataclass
class Site:
    server: Server
    tokens: dict[str, str]
    db: str

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, role: str = "admin") -> httpx.Client:
        return client(self.server, self.tokens[role])


def decide(api: httpx.Client, prefix: str, n: int, seed: int) -> list[dict[str, Any]]:
    import numpy as np

    body = {"scenarios": scenarios(prefix, n, np.random.default_rng(seed))}
    r = api.post("/v1/decide", json=body)
    r.raise_for_status()
    return list(r.json()["decisions"])


def answer_all(api: httpx.Client, decisions: list[dict[str, Any]], tag: str) -> int:
    """Feedback on every decision sent for review: mostly overrides with ``repair`` (so
    the loss rises above λ and the monitor triggers), some likes, a few abstentions."""
    items = []
    for i, d in enumerate(x for x in decisions if x["review"]):
        item = {"id": f"{tag}-{i}", "decision_id": d["decision_id"],
                "reviewer_id": f"seed-{'ab'[i % 2]}"}  # fmt: skip
        if i % 7 == 6:
            item["kind"] = "abstain"
        elif d["action"] != "DEFER" and (i % 4 == 3 or d["action"] == "repair"):
            item["kind"] = "like"
        else:
            item.update(kind="override", action="repair")
        items.append(item)
    if items:
        r = api.post("/v1/feedback", json={"feedback": items})
        assert r.status_code == 200, r.text
    return len(items)


def seed(folder: Path, rounds: int = 10, per_round: int = 120) -> Site:
    """A SQLite store (configuration, policy v1, a token per role) served by ``npo serve``
    on 127.0.0.1, fed through the API: ``rounds`` batches of decisions, every reviewed
    one answered except those of the last batch (they wait in the review queue)."""
    db = str(folder / "npo.db")
    cfg, tokens = prepare(db, folder)
    srv = Server(db, cfg, log=folder / "serve.log").start()
    site = Site(srv, tokens, db)
    try:
        with site.api() as api:
            for r in range(rounds):
                ds = decide(api, f"s{r}-", per_round, seed=r)
                if r < rounds - 1:
                    answer_all(api, ds, f"seed{r}")
    except BaseException:
        srv.kill()
        raise
    return site


def feedback_rows(db: str) -> list[dict[str, Any]]:
    """Every feedback event in the store: id, decision id, reviewer, kind and action names,
    comment."""
    with open_store(db) as store:
        dec = store.scan("decisions", ["seq", "id"]).to_pylist()
        fb = store.scan("feedback", ["id", "decision_seq", "reviewer", "kind", "action",
                                     "comment"]).to_pylist()  # fmt: skip
        names = list(store.actions.actions)
    ids = {d["seq"]: d["id"] for d in dec}
    return [
        {
            "id": f["id"],
            "decision_id": ids[f["decision_seq"]],
            "reviewer": f["reviewer"],
            "kind": KIND_NAMES[int(f["kind"])],
            "action": None if f["action"] is None or f["action"] < 0 else names[int(f["action"])],
            "comment": f["comment"] or None,
        }
        for f in fb
    ]

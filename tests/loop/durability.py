"""Drive a loop in a child process that may be killed with SIGKILL at any moment, and read
what a store holds in comparable form. Shared by the restart and several-workers tests.

A :class:`LoopProcess` runs ``AlignmentLoop.open(...)`` in a forked child and serves calls
sent over a pipe (``decide`` / ``receive`` / ``status``); :meth:`LoopProcess.call` re-sends a
call that was not acknowledged after restarting a child that died -- what a client of a
crashed service does. :func:`content` is what "the same" means: the audit log's kinds and
payloads (without their times and the ``worker`` that wrote them), every policy and
threshold version (without creation times), the serving versions and the loop's
checkpoint document (monitor state, trigger state, counts, cadence, alpha spending) and the
monitor's history (without write times).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import stream_world as world

from npo.domain import ActionSpace
from npo.loop import AlignmentLoop
from npo.loop.candidates import default_learner
from npo.store import open_store

CTX = mp.get_context("fork")


class SlowLearner:
    """NPO's default learner, but calibration takes ``pause`` seconds: a window in which a
    test can kill the process mid-retraining. The model is the default one."""

    def __init__(self, incumbent: Any, k: int, d: int, pause: float = 0.3) -> None:
        self.inner = default_learner(incumbent, k, d)
        self.pause = pause

    def partial_fit(self, X: np.ndarray, y: np.ndarray, w: np.ndarray) -> None:
        self.inner.partial_fit(X, y, w)

    def calibrate(self) -> None:
        time.sleep(self.pause)
        self.inner.calibrate()

    def to_policy(self, version: str, **kw: Any) -> Any:
        return self.inner.to_policy(version, **kw)


def open_loop(
    db: str, worker: str, *, slow: bool = True, pause: float = 0.3, **kw: Any
) -> AlignmentLoop:
    store = open_store(db, ActionSpace(world.ACTIONS))
    return AlignmentLoop.open(
        store,
        world.config(**kw.pop("config", {})),
        policy=world.policy(),
        thresholds=world.thresholds(),
        worker=worker,
        seed=7,
        learner=partial(SlowLearner, pause=pause) if slow else None,
        **kw,
    )


def serve(loop: AlignmentLoop, msg: tuple[Any, ...]) -> Any:
    """One call of the protocol, on a loop object (in this process or a child)."""
    what = msg[0]
    if what == "decide":
        _, X, ids, ts = msg
        b = loop.decide(X, scenario_ids=ids, timestamps=ts)
        return {"decision_id": b.decision_id, "action": b.action, "review": b.review.tolist()}
    if what == "receive":
        return [e.kind for e in loop.receive(msg[1])]
    if what == "status":
        return loop.status().to_dict()
    raise ValueError(what)


def _child(conn: Any, db: str, worker: str, kw: dict[str, Any]) -> None:
    loop = open_loop(db, worker, **kw)
    conn.send(("ready", os.getpid()))
    while True:
        msg = conn.recv()
        if msg[0] == "stop":
            loop.close()
            loop.store.close()
            conn.send(("stopped",))
            return
        conn.send(("ok", serve(loop, msg)))


class LoopProcess:
    """A loop in a child process, restarted (and the unacknowledged call re-sent) whenever
    the child dies."""

    def __init__(self, db: str, worker: str = "w", *, rename: bool = False, **kw: Any) -> None:
        self.db, self.name, self.kw = db, worker, kw
        self.rename = rename  # a restarted process gets a new name (a new pod)
        self.proc: Any = None
        self.conn: Any = None
        self.restarts = 0
        self.lock = threading.Lock()
        self._start()

    @property
    def worker(self) -> str:
        return f"{self.name}.{self.restarts}" if self.rename and self.restarts else self.name

    def _start(self) -> None:
        while True:
            parent, child = CTX.Pipe()
            proc = CTX.Process(target=_child, args=(child, self.db, self.worker, self.kw))
            proc.start()
            child.close()
            try:
                if parent.poll(60) and parent.recv()[0] == "ready":
                    self.proc, self.conn = proc, parent
                    return
            except (EOFError, OSError):
                pass
            proc.join(5)  # killed while opening: open again
            self.restarts += 1

    @property
    def pid(self) -> int | None:
        p = self.proc
        return p.pid if p is not None and p.is_alive() else None

    def kill(self) -> bool:
        pid = self.pid
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        return True

    def call(self, msg: tuple[Any, ...]) -> Any:
        with self.lock:
            return self._call(msg)

    def _call(self, msg: tuple[Any, ...]) -> Any:
        while True:
            try:
                self.conn.send(msg)
                if not self.conn.poll(120):
                    raise TimeoutError(f"no answer to {msg[0]} in 120 s")
                reply = self.conn.recv()
                return reply[1]
            except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
                self.proc.join(5)
                self.restarts += 1
                self._start()

    def stop(self) -> None:
        try:
            self.conn.send(("stop",))
            self.conn.poll(30)
            self.conn.recv()
        except (EOFError, BrokenPipeError, OSError):
            pass
        self.proc.join(10)


def drive(call: Callable[[tuple[Any, ...]], Any], stream: world.Stream) -> None:
    """The fixed stream of calls: per step one decision batch, then the feedback due."""
    for t in range(stream.steps):
        X, ids, ts = stream.scenarios(t)
        decided = call(("decide", X, ids, ts))
        stream.answer(t, X, decided)
        call(("receive", stream.due(t)))
    call(("receive", stream.rest()))


_VOLATILE = {"worker"}


def _strip(o: Any) -> Any:
    if isinstance(o, dict):
        return {k: _strip(v) for k, v in o.items() if k not in _VOLATILE}
    if isinstance(o, list):
        return [_strip(v) for v in o]
    return o


def content(db: str) -> dict[str, Any]:
    """What a store holds, in comparable form (module docstring)."""
    from npo.loop.checkpoint import KEY

    with open_store(db) as store:
        import json

        doc = store.get_state(KEY)
        return {
            "audit": [(r.kind, _strip(r.payload)) for r in store.audit()],
            "policies": [
                (p.version, p.kind, p.params, p.parent, p.note, p.blob) for p in store.policies()
            ],
            "thresholds": [
                store.get_thresholds(v).model_dump(exclude={"created_at"})
                for v in sorted(
                    {r.payload["version"] for r in store.audit(kind="thresholds.added")}
                )
            ],
            "serving": (store.active_policy(), store.active_thresholds()),
            "checkpoint": None if doc is None else json.loads(doc.value["doc"]),
            "counts": store.counts(),
            "audit_ok": store.verify_audit().ok,
            # the monitor's history without when it was written (and the checkpoint version)
            "monitor_history": [
                {k: v for k, v in p.to_dict().items() if k not in ("seq", "at")}
                for p in store.monitor_history(10**9)
            ],
        }

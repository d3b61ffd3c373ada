"""HTTP load on loopback: ``npo serve`` beside a bare FastAPI endpoint that only validates
the same body, under the same server settings (uvicorn, uvloop, httptools, one process),
measured in the same run.

- ``POST /v1/decide``, one scenario per request: requests/s and p99 latency, NPO vs the
  bare endpoint (target: NPO ≥ 50% of the bare requests/s, p99 ≤ 20 ms, zero errors).
  Load generator: ``wrk`` (Debian's; installed by this benchmark when missing and root),
  one thread, 16 connections -- not the bottleneck (it uses a fraction of a core);
  without wrk, an httpx loader in another process (said in the results).
- ``POST /v1/feedback`` in batches of 1,000 events on decisions the loop made: events/s
  stored, vs the bare endpoint's events/s (target ≥ 20,000 events/s). Loader: httpx,
  4 connections, in another process.
- Afterwards every acknowledged decision and feedback id is looked up in the store.
- RSS of the server process after 1M and 5M decisions (``--quick``: 0.1M and 0.5M),
  decided in batches of 5,000 scenarios.

Run alone: ``python benchmarks/bench_http.py [--quick]`` (writes
``benchmarks/results.json`` and ``docs/benchmarks.md``), or ``python benchmarks/run.py http``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

CONFIG = """\
actions = ["reboot", "reimage", "repair"]
lambda = 0.15
lambda_crit = 0.30
p_min = 0.05
deferral_budget = 0.3
"""

BARE_APP = """\
from fastapi import FastAPI

from npo.service.models import DecideRequest, FeedbackRequest

app = FastAPI()


@app.post("/v1/decide")
async def decide(body: DecideRequest) -> dict:
    return {"n": len(body.scenarios)}


@app.post("/v1/feedback")
async def feedback(body: FeedbackRequest) -> dict:
    return {"received": len(body.feedback)}
"""

WRK_SCRIPT = """\
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  n = 0
  acked = 0
  out = io.open(args[1] .. "/acked-" .. tid .. ".txt", "w")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if args[2] ~= "" then wrk.headers["Authorization"] = "Bearer " .. args[2] end
end
function request()
  n = n + 1
  local sid = args_prefix or "w"
  local body = string.format(
    '{"scenarios":[{"id":"w%d-%d","features":[%.3f,%.3f]}]}',
    tid, n, (n %% 7) / 7.0, (n %% 5) / 5.0)
  return wrk.format(nil, "/v1/decide", nil, body)
end
function response(status, headers, body)
  if status == 200 then
    local id = body:match('"decision_id":"([^"]+)"')
    if id then
      out:write(id, "\\n")
      acked = acked + 1
      if acked %% 200 == 0 then out:flush() end
    end
  end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nRESULT {"requests": %d, "duration_us": %d, "socket_errors": %d, "non2xx": %d, '
    .. '"p50_us": %d, "p99_us": %d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""

FEEDBACK_LOADER = """\
import json, sys, threading, time
import httpx

url, token, ids_file, out_file, seconds, conc, batch = sys.argv[1:8]
seconds, conc, batch = float(seconds), int(conc), int(batch)
ids = open(ids_file).read().split()
headers = {"Authorization": f"Bearer {token}"} if token else {}
acked, errors, lock = [], [], threading.Lock()
stop_at = [0.0]

def worker(w):
    k = 0
    with httpx.Client(base_url=url, headers=headers, timeout=60) as c:
        while time.perf_counter() < stop_at[0]:
            fb = []
            for j in range(batch):
                d = ids[(w * 7919 + k * batch + j) % len(ids)]
                fid = f"f{w}-{k}-{j}"
                if j % 10 < 7:
                    fb.append({"id": fid, "decision_id": d, "reviewer_id": f"r{w}",
                               "kind": "override", "action": "reboot"})
                else:
                    fb.append({"id": fid, "decision_id": d, "reviewer_id": f"r{w}",
                               "kind": "abstain"})
            k += 1
            r = c.post("/v1/feedback", json={"feedback": fb})
            with lock:
                if r.status_code == 200:
                    acked.extend(f["id"] for f in fb)
                else:
                    errors.append(r.status_code)

t0 = time.perf_counter()
stop_at[0] = t0 + seconds
ts = [threading.Thread(target=worker, args=(w,)) for w in range(conc)]
for t in ts: t.start()
for t in ts: t.join()
dt = time.perf_counter() - t0
open(out_file, "w").write("\\n".join(acked))
print(json.dumps({"events": len(acked), "seconds": dt, "errors": len(errors)}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/openapi.json", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"server at {url} did not start")


class Proc:
    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None):
        self.p = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.p.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(10)


def _uvicorn_bare(tmp: Path, port: int) -> Proc:
    (tmp / "bare_app.py").write_text(BARE_APP)
    return Proc(
        [sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(tmp), "--port",
         str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
         "--log-level", "warning"],
        tmp,
    )  # fmt: skip


def _npo_server(tmp: Path, db: str, port: int) -> Proc:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    return Proc(
        [sys.executable, "-c", "from npo.cli.main import main; main()", "serve", "--db", db,
         "--port", str(port)],
        tmp,
        env,
    )  # fmt: skip


def _prepare(db: str, tmp: Path) -> str:
    import numpy as np

    from npo.loop import LoopConfig
    from npo.policy import SoftmaxLinearPolicy
    from npo.store import open_store
    from npo.store.tokens import create_token

    (tmp / "npo.toml").write_text(CONFIG)
    cfg = LoopConfig.from_file(tmp / "npo.toml")
    with open_store(db, cfg.action_space) as store:
        store.put_config(cfg.model_dump(by_alias=True, mode="json"))
        w = np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
        store.add_policy(SoftmaxLinearPolicy(w, np.zeros(3), version="v1").to_record())
        store.set_active_policy("v1", reason="benchmark policy", evidence={})
        token, _ = create_token(store, "bench", "admin")
    return token


def _wrk() -> str | None:
    path = shutil.which("wrk")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], capture_output=True, check=False,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )  # fmt: skip
        path = shutil.which("wrk")
    return path


def _decide_load(url: str, token: str, tmp: Path, seconds: float, tag: str) -> dict[str, Any]:
    wrk = _wrk()
    folder = tmp / f"acked-{tag}"
    folder.mkdir()
    if wrk is None:
        return _decide_load_httpx(url, token, folder, seconds)
    script = tmp / "decide.lua"
    script.write_text(WRK_SCRIPT.replace("%%", "%"))
    out = subprocess.run(
        [wrk, "-t1", "-c16", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script), url,
         "--", str(folder), token],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    res = json.loads(out.split("RESULT", 1)[1])
    acked = [x for f in folder.glob("*.txt") for x in f.read_text().split()]
    return {
        "generator": "wrk (1 thread, 16 connections)",
        "requests_per_s": res["requests"] / (res["duration_us"] / 1e6),
        "p50_ms": res["p50_us"] / 1000,
        "p99_ms": res["p99_us"] / 1000,
        "errors": res["socket_errors"] + res["non2xx"],
        "acked": acked,
    }


def _decide_load_httpx(url: str, token: str, folder: Path, seconds: float) -> dict[str, Any]:
    code = textwrap.dedent(
        """
        import asyncio, json, sys, time
        import httpx
        url, token, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
        lat, acked, errors = [], [], [0]
        async def worker(w, c, stop):
            n = 0
            while time.perf_counter() < stop:
                n += 1
                body = {"scenarios": [{"id": f"h{w}-{n}", "features": [n % 7 / 7, n % 5 / 5]}]}
                t = time.perf_counter()
                r = await c.post("/v1/decide", json=body)
                lat.append(time.perf_counter() - t)
                if r.status_code == 200 and "decisions" in r.json():
                    acked.append(r.json()["decisions"][0]["decision_id"])
                elif r.status_code != 200:
                    errors[0] += 1
        async def main():
            h = {"Authorization": f"Bearer {token}"} if token else {}
            async with httpx.AsyncClient(base_url=url, headers=h, timeout=10) as c:
                t0 = time.perf_counter()
                await asyncio.gather(*(worker(w, c, t0 + seconds) for w in range(16)))
                return time.perf_counter() - t0
        dt = asyncio.run(main())
        lat.sort()
        print(json.dumps({"n": len(lat), "dt": dt, "p50": lat[len(lat) // 2],
                          "p99": lat[int(len(lat) * 0.99)], "errors": errors[0],
                          "acked": acked}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code, url, token, str(seconds)], capture_output=True, text=True,
        check=True,
    ).stdout  # fmt: skip
    r = json.loads(out)
    return {
        "generator": "httpx (asyncio, 16 connections, another process)",
        "requests_per_s": r["n"] / r["dt"],
        "p50_ms": r["p50"] * 1000,
        "p99_ms": r["p99"] * 1000,
        "errors": r["errors"],
        "acked": r["acked"],
    }


def _feedback_load(
    url: str, token: str, ids_file: Path, tmp: Path, seconds: float, tag: str
) -> dict[str, Any]:
    loader = tmp / "feedback_loader.py"
    loader.write_text(FEEDBACK_LOADER)
    out_file = tmp / f"feedback-acked-{tag}.txt"
    out = subprocess.run(
        [sys.executable, str(loader), url, token, str(ids_file), str(out_file), str(seconds),
         "4", "1000"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    r = json.loads(out)
    return {
        "events_per_s": r["events"] / r["seconds"],
        "errors": r["errors"],
        "acked": out_file.read_text().split() if r["events"] else [],
    }


def _decide_many(url: str, token: str, n: int, prefix: str, batch: int = 5000) -> list[str]:
    import httpx

    ids: list[str] = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      timeout=300) as c:  # fmt: skip
        for start in range(0, n, batch):
            m = min(batch, n - start)
            sc = [{"id": f"{prefix}{start + i}", "features": [(i % 7) / 7, (i % 5) / 5]}
                  for i in range(m)]  # fmt: skip
            r = c.post("/v1/decide", json={"scenarios": sc})
            r.raise_for_status()
            ids += [d["decision_id"] for d in r.json()["decisions"]]
    return ids


def _all_stored(db: str, kind: str, ids: list[str]) -> bool:
    from npo.store import open_store
    from npo.store.lookup import existing_ids

    with open_store(db) as store:
        return existing_ids(store, kind, ids) == set(ids)


def run(quick: bool) -> dict[str, Any]:
    seconds = 4.0 if quick else 8.0
    n_feedback_decisions = 20_000 if quick else 100_000
    marks = (100_000, 500_000) if quick else (1_000_000, 5_000_000)
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="npo-bench-http-") as t:
        tmp = Path(t)
        db = str(tmp / "npo.db")
        token = _prepare(db, tmp)
        # -- the bare endpoint ---------------------------------------------------------
        port = _free_port()
        bare = _uvicorn_bare(tmp, port)
        try:
            _wait(f"http://127.0.0.1:{port}")
            bare_decide = _decide_load(f"http://127.0.0.1:{port}", "", tmp, seconds, "bare")
            (tmp / "bare-ids.txt").write_text("\n".join(f"d{i}" for i in range(1000)))
            bare_fb = _feedback_load(
                f"http://127.0.0.1:{port}", "", tmp / "bare-ids.txt", tmp, seconds, "bare"
            )
        finally:
            bare.stop()
        # -- npo serve -----------------------------------------------------------------
        port = _free_port()
        srv = _npo_server(tmp, db, port)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait(url)
            npo_decide = _decide_load(url, token, tmp, seconds, "npo")
            ids = _decide_many(url, token, n_feedback_decisions, "fbd-")
            (tmp / "fb-ids.txt").write_text("\n".join(ids))
            npo_fb = _feedback_load(url, token, tmp / "fb-ids.txt", tmp, seconds, "npo")
        finally:
            srv.stop()
        decided_ok = _all_stored(db, "decisions", npo_decide["acked"])
        feedback_ok = _all_stored(db, "feedback", npo_fb["acked"])
        gen = npo_decide["generator"]
        for name, r in (("bare FastAPI endpoint (validates the body only)", bare_decide),
                        ("npo serve (SQLite, 1 process)", npo_decide)):  # fmt: skip
            rows.append({
                "part": "POST /v1/decide, 1 scenario per request", "system": name,
                "requests_per_s": r["requests_per_s"], "p50_ms": r["p50_ms"],
                "p99_ms": r["p99_ms"], "errors": r["errors"],
            })  # fmt: skip
        for name, r in (("bare FastAPI endpoint (validates the body only)", bare_fb),
                        ("npo serve (SQLite, 1 process)", npo_fb)):  # fmt: skip
            rows.append({
                "part": "POST /v1/feedback, batches of 1,000", "system": name,
                "events_per_s": r["events_per_s"], "errors": r["errors"],
            })  # fmt: skip
        summary.update({
            "decide: npo / bare requests/s": npo_decide["requests_per_s"]
            / bare_decide["requests_per_s"],
            "decide: npo p99 ms": npo_decide["p99_ms"],
            "feedback: npo events/s stored": npo_fb["events_per_s"],
            "every acknowledged decision is in the store": decided_ok,
            "every acknowledged feedback event is in the store": feedback_ok,
            "acknowledged decisions / feedback events checked": (
                f"{len(npo_decide['acked']):,} / {len(npo_fb['acked']):,}"
            ),
            "load generator (decide)": gen,
        })  # fmt: skip
        # -- RSS after many decisions ------------------------------------------------------
        db2 = str(tmp / "rss.db")
        (tmp / "rss").mkdir()
        token2 = _prepare(db2, tmp / "rss")
        port = _free_port()
        srv = _npo_server(tmp, db2, port)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait(url)
            done = 0
            t0 = time.perf_counter()
            for mark in marks:
                _decide_many(url, token2, mark - done, f"rss{done}-")
                done = mark
                rows.append({
                    "part": "server RSS after decisions (batches of 5,000)",
                    "system": "npo serve (SQLite, 1 process)", "decisions": mark,
                    "rss_mb": srv.rss_mb(), "seconds": time.perf_counter() - t0,
                })  # fmt: skip
        finally:
            srv.stop()
    return {
        "title": "HTTP service on loopback: npo serve vs a bare FastAPI endpoint",
        "rows": rows,
        "summary": summary,
        "notes": "Same uvicorn settings for both servers (uvloop, httptools, 1 process, no "
        "access log); the bare endpoint validates the same request body with the same "
        "pydantic model and answers. npo serve authenticates the bearer token, decides with "
        "the loop (store writes committed before the answer) and puts reviewed decisions "
        "in the review queue; concurrent /v1/decide requests are decided together. The "
        "loop is the durable one (issue 10): each call is a unit of work over its "
        "checkpoint in the store; a process keeps only bounded caches.",
    }


if __name__ == "__main__":  # the suite's runner: results.json and the page
    import run as suite

    raise SystemExit(suite.main(["http", *sys.argv[1:]]))

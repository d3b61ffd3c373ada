"""The dashboard's overview on a large store: page load beside a bare endpoint.

A SQLite store with 1M decisions (``--quick``: 20k) is built in process by the durable
loop (decisions in batches of 10,000, every decision sent for review answered, so the
monitor has its history: one point per checkpoint); then ``npo serve`` serves it and,
under the same uvicorn settings in the same run, a bare FastAPI app serves a static HTML
page and a static JSON body of the same sizes as the overview and its poll.

Measured (loopback, httpx keep-alive client, the session cookie of a signed-in operator):
- ``GET /ui/`` -- the overview rendered by the server (monitor status, alignment from the
  maintained statistics, monitor history, audit markers, SVG chart);
- ``GET /ui/overview.json`` -- what the page polls every 5 s;
- the bare endpoints' static bodies of equal size (the floor: HTTP, uvicorn, transfer);
- with Debian's chromium present: the browser's navigation time of the overview
  (``PerformanceNavigationTiming.duration``: request to load event, chart drawn) beside
  the same for the bare static page.

Each figure: median and 90th percentile of ``REPEAT`` requests after one warm-up. Run alone:
``nice -n 19 python benchmarks/bench_dashboard.py [--quick]`` (writes
``benchmarks/results.json`` and ``docs/benchmarks.md``), or ``python benchmarks/run.py dashboard``.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_http import CONFIG, Proc, _free_port, _wait  # as in the HTTP benchmark

REPEAT = 30

BARE_APP = """\
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

import npo.web

HERE = Path(__file__).parent
PAGE = (HERE / "page.html").read_text()
POLL = (HERE / "poll.json").read_bytes()
app = FastAPI()
# the same stylesheet and script as the dashboard's page
app.mount("/ui/static", StaticFiles(directory=Path(npo.web.__file__).parent / "static"))


@app.get("/page")
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE)


@app.get("/poll")
async def poll() -> Response:
    return Response(POLL, media_type="application/json")
"""


def build(db: str, folder: Path, n: int, batch: int = 10_000) -> dict[str, Any]:
    """The store: configuration, policy v1, an operator token, ``n`` decisions by the
    loop and an answer to every decision it sent for review (70% like, 20% override,
    10% abstain)."""
    import numpy as np

    from npo.loop import LoopConfig
    from npo.policy import SoftmaxLinearPolicy
    from npo.service.loop_gateway import open_loop, receive_feedback
    from npo.store import open_store
    from npo.store.tokens import create_token

    (folder / "npo.toml").write_text(CONFIG)
    cfg = LoopConfig.from_file(folder / "npo.toml")
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    n_fb = 0
    with open_store(db, cfg.action_space) as store:
        store.put_config(cfg.model_dump(by_alias=True, mode="json"))
        w = np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])
        store.add_policy(SoftmaxLinearPolicy(w, np.zeros(3), version="v1").to_record())
        store.set_active_policy("v1", reason="benchmark policy", evidence={})
        token, _ = create_token(store, "bench-operator", "operator")
        loop = open_loop(store, cfg, worker="bench")
        for start in range(0, n, batch):
            m = min(batch, n - start)
            X = rng.normal(size=(m, 2))
            ids = [f"s{start + i}" for i in range(m)]
            segs = [("east", "west", "north")[i % 3] for i in range(m)]
            b = loop.decide(X, scenario_ids=ids, segments=segs)
            fb = []
            for j in np.flatnonzero(b.review):
                u = rng.random()
                item = {"id": f"f{start + j}", "decision_id": b.decision_id[j],
                        "reviewer_id": f"r{j % 7}"}  # fmt: skip
                if u < 0.1:
                    item["kind"] = "abstain"
                elif u < 0.3 or b.action[j] == "DEFER":
                    item.update(kind="override", action=("reboot", "reimage", "repair")[j % 3])
                else:
                    item["kind"] = "like"
                fb.append(item)
            if fb:
                receive_feedback(loop, fb)
                n_fb += len(fb)
        loop.close()
        counts = store.counts()
        points = len(store.monitor_history(500))
    return {"token": token, "seconds": time.perf_counter() - t0, "feedback": n_fb,
            "counts": counts, "points": points}  # fmt: skip


def _times(client: Any, path: str) -> tuple[list[float], int]:
    client.get(path).raise_for_status()  # warm-up
    out, size = [], 0
    for _ in range(REPEAT):
        t = time.perf_counter()
        r = client.get(path)
        r.raise_for_status()
        size = len(r.content)
        out.append(1000 * (time.perf_counter() - t))
    return out, size


def _row(part: str, system: str, ms: list[float], size: int, **extra: Any) -> dict[str, Any]:
    q = statistics.quantiles(ms, n=10)
    return {"part": part, "system": system, "median_ms": round(statistics.median(ms), 2),
            "p90_ms": round(q[-1], 2), "bytes": size, **extra}  # fmt: skip


def _sign_in(client: Any, token: str) -> None:
    page = client.get("/ui/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    r = client.post("/ui/login", data={"csrf": csrf, "token": token})
    assert r.status_code == 303, r.text


def _browser_times(url: str, bare: str, token: str) -> list[dict[str, Any]] | None:
    """Navigation time in headless chromium (None without Debian's chromium)."""
    binary = shutil.which("chromium")
    if binary is None or not Path("/usr/bin/chromedriver").exists():
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    rows = []
    try:
        d.get(url + "/ui/login")
        d.find_element(By.ID, "token").send_keys(token)
        d.find_element(By.ID, "sign-in").click()
        js = "return performance.getEntriesByType('navigation')[0].duration;"
        for system, target in (("npo overview /ui/ (rendered, chart drawn)", url + "/ui/"),
                               ("bare static page of equal size", bare + "/page")):  # fmt: skip
            d.get(target)
            ms = []
            for _ in range(10):
                d.get(target)
                ms.append(float(d.execute_script(js)))
            row = _row("browser navigation (request to load event)", system, ms, 0)
            row.pop("bytes")
            rows.append(row)
    finally:
        d.quit()
    return rows


def run(quick: bool) -> dict[str, Any]:
    import httpx

    n = 20_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="npo-bench-dash-") as tmp_s:
        tmp = Path(tmp_s)
        db = str(tmp / "npo.db")
        built = build(db, tmp, n)
        port, bport = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        npo = Proc([sys.executable, "-c", "from npo.cli.main import main; main()", "serve",
                    "--db", db, "--port", str(port)], tmp, env)  # fmt: skip
        bare = None
        try:
            url, burl = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{bport}"
            _wait(url)
            rows = []
            with httpx.Client(base_url=url, timeout=120) as c:
                _sign_in(c, built["token"])
                page_ms, page_size = _times(c, "/ui/")
                poll_ms, poll_size = _times(c, "/ui/overview.json")
                (tmp / "page.html").write_text(c.get("/ui/").text)
                (tmp / "poll.json").write_bytes(c.get("/ui/overview.json").content)
            (tmp / "bare_app.py").write_text(BARE_APP)
            bare = Proc([sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(tmp),
                         "--port", str(bport), "--loop", "uvloop", "--http", "httptools",
                         "--no-access-log", "--log-level", "warning"], tmp)  # fmt: skip
            _wait(burl)
            with httpx.Client(base_url=burl, timeout=120) as b:
                bpage_ms, bpage_size = _times(b, "/page")
                bpoll_ms, bpoll_size = _times(b, "/poll")
            label = f"{n:,} decisions"
            rows += [
                _row("overview page GET /ui/", f"npo serve ({label})", page_ms, page_size),
                _row("overview page GET /ui/", "bare FastAPI, static HTML of equal size",
                     bpage_ms, bpage_size),
                _row("overview poll GET /ui/overview.json", f"npo serve ({label})", poll_ms,
                     poll_size),
                _row("overview poll GET /ui/overview.json",
                     "bare FastAPI, static JSON of equal size", bpoll_ms, bpoll_size),
            ]  # fmt: skip
            browser = _browser_times(url, burl, built["token"])
            rows += browser or []
        finally:
            npo.stop()
            if bare is not None:
                bare.stop()
    med = {r["system"] + " " + r["part"]: r["median_ms"] for r in rows}
    page = med[f"npo serve ({label}) overview page GET /ui/"]
    poll = med[f"npo serve ({label}) overview poll GET /ui/overview.json"]
    summary = {
        "decisions": built["counts"]["decisions"],
        "feedback events": built["counts"]["feedback"],
        "monitor history points shown": built["points"],
        "store build seconds (loop in process)": round(built["seconds"], 1),
        "overview page + poll, median ms (npo)": round(page + poll, 1),
        "overview page load under 1 s": page + poll < 1000,
    }
    if browser:
        summary["browser navigation median ms (npo overview)"] = browser[0]["median_ms"]
    return {
        "title": "Dashboard overview on a large store: npo serve vs a bare endpoint",
        "rows": rows,
        "summary": summary,
        "notes": "Same uvicorn settings for both servers (uvloop, httptools, 1 process, no "
        "access log); each figure: median / p90 of 30 sequential requests after a warm-up "
        "on one keep-alive connection, loopback. The bare app answers a static body of the "
        "same size: the floor of serving the page. Measured on a shared 2-core machine: "
        "figures are noisy.",
    }


if __name__ == "__main__":  # the suite's runner: results.json and the page
    import run as suite

    raise SystemExit(suite.main(["dashboard", *sys.argv[1:]]))

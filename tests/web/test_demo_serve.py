"""``npo demo --serve``: the demo's store opened in the dashboard with one command."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from server import free_port


def test_demo_serve_prints_url_and_tokens_and_serves_the_store(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "demo.log"
    args = [sys.executable, "-c", "from npo.cli.main import main; main()", "demo", "--steps",
            "40", "--per-step", "50", "--out", str(tmp_path / "demo"), "--serve", "--port",
            str(port)]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # fmt: skip
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        text = log.read_text()
        assert f"{url}/ui/" in text
        admin = re.search(r"admin token:\s+(npo_\S+)", text).group(1)  # type: ignore[union-attr]
        reviewer = re.search(r"reviewer token:\s+(npo_\S+)", text).group(1)  # type: ignore[union-attr]
        with httpx.Client(base_url=url, follow_redirects=False) as b:
            page = b.get("/ui/login").text
            csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
            assert b.post("/ui/login", data={"csrf": csrf, "token": admin}).status_code == 303
            ov = b.get("/ui/")
            assert ov.status_code == 200 and 'class="pt"' in ov.text  # the band has points
        q = httpx.get(url + "/v1/review-queue", params={"limit": 1},
                      headers={"Authorization": f"Bearer {reviewer}"}).json()  # fmt: skip
        assert q["items"], "the demo's unanswered reviews wait in the queue"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)

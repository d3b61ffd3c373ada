"""The README's "Connect your system" example, run as written against a real server:
its train.py, its npo.toml, its shell commands (``npo serve`` on a free port through
``NPO_PORT``) and its client script."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from server import free_port

README = Path(__file__).parents[2] / "README.md"


def blocks() -> list[tuple[str, str]]:
    text = README.read_text()
    section = text.split("## Connect your system", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.S)


def test_connect_your_system_runs_as_written(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    kinds = [k for k, _ in blocks()]
    assert kinds == ["python", "toml", "bash", "python"], kinds
    (_, train), (_, toml), (_, shell), (_, connect) = blocks()
    (tmp_path / "train.py").write_text(train)
    (tmp_path / "npo.toml").write_text(toml)
    port = free_port()
    env = {**os.environ, "NPO_PORT": str(port), "NPO_URL": f"http://127.0.0.1:{port}"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("NPO_DB", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    lines = shell.strip().splitlines()
    assert lines[-1].startswith("npo serve &")
    setup = "\n".join(lines[:-1])
    # the setup lines as written; then what they exported
    out = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", setup + "\nenv -0"],
        cwd=tmp_path, env=env, capture_output=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr.decode()
    env = dict(kv.split("=", 1) for kv in out.stdout.decode().split("\0") if "=" in kv)
    assert env["NPO_OPERATOR"].startswith("npo_") and env["NPO_REVIEWER"].startswith("npo_")
    serve = subprocess.Popen(
        ["bash", "-c", lines[-1].split("&")[0]], cwd=tmp_path, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        (tmp_path / "connect.py").write_text(connect)
        run = subprocess.run(
            [sys.executable, "connect.py"], cwd=tmp_path, env=env, capture_output=True,
            timeout=300, text=True,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        printed = run.stdout
        assert re.search(r"\d+ of 169 deferred; \d+ sent for review", printed), printed
        m = re.search(r"alignment loss \(IPW, vs reviewers\) (\S+), 95% interval", printed)
        assert m and 0.0 <= float(m.group(1)) < 0.2, printed
        assert "monitor OK" in printed or "monitor RETRAIN" in printed, printed
    finally:
        import signal

        os.killpg(serve.pid, signal.SIGKILL)
        serve.wait(10)
    # every reviewed case got its feedback, the audit chain verifies
    from npo.store import open_store

    with open_store(str(tmp_path / "npo.db")) as store:
        assert store.counts()["feedback"] > 0 and store.verify_audit().ok

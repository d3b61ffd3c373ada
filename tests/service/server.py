"""Real servers for the service tests: ``npo serve`` in a subprocess on 127.0.0.1, a store
prepared with a configuration, a policy and one token per role."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from npo.domain import ActionSpace
from npo.loop import LoopConfig
from npo.policy import SoftmaxLinearPolicy
from npo.store import open_store
from npo.store.tokens import create_token

ACTIONS = ActionSpace(["reboot", "reimage", "repair"])
CONFIG = """\
actions = ["reboot", "reimage", "repair"]
lambda = 0.15
lambda_crit = 0.30
p_min = 0.1
deferral_budget = 0.3
"""
#: features (d = 2) -> scores: x0 favours reboot, x1 reimage
WEIGHTS = np.array([[3.0, 0.0, 0.0], [0.0, 3.0, 0.0]])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(db: str, folder: Path) -> tuple[Path, dict[str, str]]:
    """A store with the configuration, policy v1 serving, and tokens admin / operator /
    reviewer; returns the config file and the tokens by role."""
    cfg_path = folder / "npo.toml"
    cfg_path.write_text(CONFIG)
    cfg = LoopConfig.from_file(cfg_path)
    tokens = {}
    with open_store(db, cfg.action_space) as store:
        store.put_config(cfg.model_dump(by_alias=True, mode="json"))
        store.add_policy(SoftmaxLinearPolicy(WEIGHTS, np.zeros(3), version="v1").to_record())
        store.set_active_policy("v1", reason="initial policy", evidence={})
        for role in ("admin", "operator", "reviewer"):
            tokens[role], _ = create_token(store, f"{role}-1", role)
    return cfg_path, tokens


@dataclass
class Server:
    """``npo serve`` as a subprocess (one process group: SIGKILL reaches the workers)."""

    db: str
    config: Path | None = None
    workers: int = 1
    extra: tuple[str, ...] = ()
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Server:
        args = [sys.executable, "-c", "from npo.cli.main import main; main()", "serve",
                "--db", self.db, "--port", str(self.port), "--workers", str(self.workers),
                *self.extra]  # fmt: skip
        if self.config is not None:
            args += ["--config", str(self.config)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"npo serve exited with {self.proc.returncode}: {self.tail()}")
            try:
                ready = httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200
                if ready and (self.workers == 1 or self._all_workers_up()):
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"npo serve did not become ready: {self.tail()}")

    def _all_workers_up(self) -> bool:
        # each worker answers /readyz once its lifespan ran; a handful of calls reach all
        pids = set()
        for _ in range(20 * self.workers):
            r = httpx.get(self.url + "/readyz", timeout=2.0)
            if r.status_code != 200:
                return False
            pids.add(r.json()["worker"])
            if len(pids) >= self.workers:
                return True
        return False

    def tail(self) -> str:
        if self.log and self.log.exists():
            return self.log.read_text(errors="replace")[-3000:]
        return ""

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (graceful) and wait; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the whole process group (the server and its workers)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        elif self.proc is not None:  # workers left behind by a dead supervisor
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)


def client(server: Server, token: str | None) -> httpx.Client:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30.0)


def scenarios(prefix: str, n: int, rng: Any = None, d: int = 2) -> list[dict[str, Any]]:
    rng = rng or np.random.default_rng(0)
    X = rng.normal(size=(n, d))
    return [
        {"id": f"{prefix}{i}", "features": X[i].tolist(), "segment": "east" if i % 2 else "west"}
        for i in range(n)
    ]

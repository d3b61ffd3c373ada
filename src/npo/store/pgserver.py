"""A throw-away local PostgreSQL server, for tests and benchmarks (never for production).

``PostgresServer.start()`` finds ``initdb`` / ``pg_ctl`` (PATH, then
``/usr/lib/postgresql/*/bin``), initialises a cluster in a temporary directory, starts
it on a free port on 127.0.0.1 with its Unix socket in that directory, and returns an
object with the server's ``url``. ``initdb`` refuses to run as root: as root, commands
run as the ``postgres`` user (created by Debian's package) through ``runuser``.
``scripts/ensure-postgres.sh`` installs the binaries when they are missing.

``durable=False`` (the default, for tests) turns off ``fsync`` and synchronous commit;
pass ``durable=True`` when measuring, so PostgreSQL pays for durability like a real
deployment.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the server could not be started."""


def find_bindir() -> Path:
    exe = shutil.which("pg_ctl")
    if exe and shutil.which("initdb"):
        return Path(os.path.realpath(exe)).parent
    cands = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.split("/")[4].split(".")],
    )
    if cands:
        return Path(cands[-1]).parent
    raise PostgresUnavailable(
        "initdb/pg_ctl not found on PATH or in /usr/lib/postgresql/*/bin; "
        "run scripts/ensure-postgres.sh (installs Debian's postgresql package)"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int
    as_user: str | None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if self.as_user:
            cmd = ["runuser", "-u", self.as_user, "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)

    @classmethod
    def start(cls, *, durable: bool = False) -> PostgresServer:
        bindir = find_bindir()
        as_user: str | None = None
        root = Path(tempfile.mkdtemp(prefix="npo-pg-"))
        if os.geteuid() == 0:
            import pwd

            try:
                pw = pwd.getpwnam("postgres")
            except KeyError as e:
                raise PostgresUnavailable("running as root and no 'postgres' user exists") from e
            if shutil.which("runuser") is None:
                raise PostgresUnavailable("running as root and 'runuser' is missing")
            os.chown(root, pw.pw_uid, pw.pw_gid)
            as_user = "postgres"
        server = cls(bindir, root, _free_port(), as_user)
        data = root / "data"
        try:
            server._run(
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            )
        except subprocess.CalledProcessError as e:
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresUnavailable(f"initdb failed: {e.stderr.strip()[-500:]}") from e
        opts = [
            f"-p {server.port}",
            f"-k {root}",
            "-c listen_addresses=127.0.0.1",
            "-c max_connections=50",
            "-c shared_buffers=128MB",
        ]
        if not durable:
            opts += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        for _attempt in range(3):
            r = server._run(
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-o",
                " ".join(opts),
                "-w",
                "-t",
                "60",
                "start",
                check=False,
            )
            if r.returncode == 0:
                return server
            log = (root / "log").read_text(errors="replace") if (root / "log").exists() else ""
            if "already in use" not in log:
                break
            server.port = _free_port()
            opts[0] = f"-p {server.port}"
            time.sleep(0.2)
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresUnavailable(f"pg_ctl start failed: {r.stderr.strip()[-500:]} {log[-500:]}")

    def stop(self) -> None:
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.root / "data"),
            "-m",
            "immediate",
            "stop",
            check=False,
        )
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """``CREATE DATABASE name`` (name: letters, digits, underscore); returns its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name must be alphanumeric/underscore, got {name!r}")
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Servers shared by the service tests: one SQLite server (one process) and one
PostgreSQL server with two workers per test module, each on a store of its own."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from server import Server, prepare


@dataclass
class Live:
    server: Server
    tokens: dict[str, str]
    db: str
    backend: str

    @property
    def url(self) -> str:
        return self.server.url


def _live(db: str, folder: Path, workers: int, backend: str) -> Iterator[Live]:
    cfg, tokens = prepare(db, folder)
    srv = Server(db, cfg, workers=workers, extra=("--max-body-mb", "1"), log=folder / "serve.log")
    srv.start()
    try:
        yield Live(srv, tokens, db, backend)
    finally:
        srv.kill()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """A running server: SQLite (1 process) or PostgreSQL (2 workers)."""
    folder = tmp_path_factory.mktemp("live")
    if request.param == "sqlite":
        yield from _live(str(folder / "npo.db"), folder, 1, "sqlite")
        return
    request.applymarker(pytest.mark.postgres)
    pg = request.getfixturevalue("postgres_server")
    db = pg.create_database(f"s_{uuid.uuid4().hex[:12]}")
    yield from _live(db, folder, 2, "postgresql")


@pytest.fixture(scope="module")
def live_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("live1")
    yield from _live(str(folder / "npo.db"), folder, 1, "sqlite")

"""Shared fixtures: a real throw-away PostgreSQL server, and a fresh store per backend.

The server is started once per test session (``initdb`` into a temporary directory,
``pg_ctl start`` on a free port on 127.0.0.1, Unix socket inside the temporary directory)
and stopped at the end. Binaries are looked up on PATH and in
``/usr/lib/postgresql/*/bin``; ``scripts/ensure-postgres.sh`` installs them when missing.
Without them the PostgreSQL tests are skipped, unless ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from npo.domain import ActionSpace
from npo.store.pgserver import PostgresServer, PostgresUnavailable

ACTIONS = ActionSpace(["reboot", "reimage", "repair"])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as e:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required on CI: {e}")
        pytest.skip(f"PostgreSQL server binaries not available: {e}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of the session's PostgreSQL database (shared: use ``fresh_postgres_url``)."""
    return postgres_server.url


@pytest.fixture
def fresh_postgres_url(postgres_server: PostgresServer) -> str:
    """URL of a brand-new empty database on the session's server."""
    return postgres_server.create_database(f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """A URL for a not-yet-created store, one per backend."""
    if request.param == "sqlite":
        return str(tmp_path / "npo.db")
    request.applymarker(pytest.mark.postgres)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database(f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def store(store_url: str):  # type: ignore[no-untyped-def]
    """A fresh, empty store (actions reboot/reimage/repair) for every backend."""
    from npo.store import open_store

    s = open_store(store_url, ACTIONS)
    try:
        yield s
    finally:
        s.close()

"""Shared fixtures: each test gets its own SQLite file and a clean logging setup."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchline import SQLiteStateStore

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _private_run_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """`batchline run` remembers state files in the user's state folder; the tests (and
    their subprocesses) use a list of their own instead."""
    previous = os.environ.get("BATCHLINE_REGISTRY")
    os.environ["BATCHLINE_REGISTRY"] = str(tmp_path_factory.mktemp("registry") / "state-files")
    yield
    if previous is None:
        os.environ.pop("BATCHLINE_REGISTRY", None)
    else:
        os.environ["BATCHLINE_REGISTRY"] = previous


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh state file path."""
    return tmp_path / "state" / "runs.db"


@pytest.fixture
def sqlite_store(db_path: Path) -> Iterator[SQLiteStateStore]:
    """A SQLite store on a fresh file, closed after the test."""
    store = SQLiteStateStore(db_path)
    yield store
    store.close()


@pytest.fixture
def python() -> str:
    """The interpreter running the tests, for subprocesses."""
    return sys.executable


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A real PostgreSQL server for the whole session (initdb in a temp dir, local port)."""
    from batchline.testing.postgres import LocalPostgres, find_postgres_bin

    if find_postgres_bin() is None:
        pytest.skip(
            "PostgreSQL is not installed (no initdb/pg_ctl): `make test` installs it with "
            "scripts/install-system-deps.sh when run as root; elsewhere install the "
            "`postgresql` package"
        )
    server = LocalPostgres().start()
    yield server
    server.stop()


@pytest.fixture
def postgres_dsn(postgres_server: Any) -> str:
    """A DSN whose tables live in a fresh, empty schema of the session's server."""
    dsn: str = postgres_server.new_schema()
    return dsn

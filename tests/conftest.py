"""Shared fixtures: each test gets its own SQLite file and a clean logging setup."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchline import SQLiteStateStore

ROOT = Path(__file__).resolve().parent.parent


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

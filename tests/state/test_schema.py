"""The SQLite schema: versioned, migrated one tested step at a time, never downgraded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from batchline import SQLiteStateStore, StateError, run_batches
from batchline.state.schema import CURRENT_VERSION, migrate, read_version


def test_new_file_gets_current_version_and_wal(db_path: Path) -> None:
    SQLiteStateStore(db_path).close()
    with sqlite3.connect(db_path) as db:
        assert read_version(db) == CURRENT_VERSION
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_newer_schema_is_refused_with_advice(db_path: Path) -> None:
    SQLiteStateStore(db_path).close()
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StateError, match=r"schema version 99.*Upgrade batchline"):
        SQLiteStateStore(db_path)


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("hello, I am a text file" * 100)
    with pytest.raises(StateError, match="cannot open state file"):
        SQLiteStateStore(path)


def test_migrations_run_step_by_step_and_keep_data(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    db = sqlite3.connect(path, isolation_level=None)

    def v1(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE t (a INTEGER)")
        conn.execute("INSERT INTO t VALUES (1)")

    def v2(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE t ADD COLUMN b TEXT DEFAULT 'x'")

    assert migrate(db, str(path), {1: v1}) == 1
    assert migrate(db, str(path), {1: v1, 2: v2}) == 2
    assert db.execute("SELECT a, b FROM t").fetchall() == [(1, "x")]
    assert read_version(db) == 2


def test_failed_migration_rolls_back(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    db = sqlite3.connect(path, isolation_level=None)

    def v1(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE t (a INTEGER)")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE u (a INTEGER)")
        raise RuntimeError("half way")

    migrate(db, str(path), {1: v1})
    with pytest.raises(RuntimeError):
        migrate(db, str(path), {1: v1, 2: broken})
    assert read_version(db) == 1
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "u" not in tables


def test_two_stores_on_one_file_drive_different_runs(db_path: Path) -> None:
    a, b = SQLiteStateStore(db_path), SQLiteStateStore(db_path)
    assert run_batches(range(50), lambda x: list(x.items), chunk_size=5, store=a, run_id="a").ok
    assert run_batches(range(50), lambda x: list(x.items), chunk_size=5, store=b, run_id="b").ok
    assert {r.run_id for r in a.list_runs()} == {"a", "b"}

"""The SQLite schema, its version, and the migrations that bring old files up to date.

``MIGRATIONS[n]`` turns a version ``n - 1`` database into version ``n``; each runs in
the same transaction as the version bump, so a file is never half-migrated. A file
written by a newer batchline (a higher version) is refused rather than damaged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from batchline.errors import StateError

Migration = Callable[[sqlite3.Connection], None]


def _v1(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            status TEXT NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}',
            total_items INTEGER,
            lease_token TEXT,
            lease_pid INTEGER,
            lease_host TEXT,
            lease_started TEXT,
            heartbeat_at REAL
        )
        """
    )
    # One row per committed batch attempt: the succeeded items' keys, positions and
    # results as JSON arrays, encoded and decoded once per batch rather than per item.
    db.execute(
        """
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            batch INTEGER NOT NULL,
            size INTEGER NOT NULL,
            failed INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            started_at REAL NOT NULL,
            duration REAL NOT NULL,
            keys TEXT NOT NULL,
            positions TEXT NOT NULL,
            results TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX chunks_by_run ON chunks (run, batch)")
    # One narrow row per item: which chunk holds it. Keys keep their type (no column
    # affinity), so 1 and '1' are different keys.
    db.execute(
        """
        CREATE TABLE items (
            run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            key NOT NULL,
            chunk INTEGER NOT NULL,
            status TEXT NOT NULL,
            PRIMARY KEY (run, key)
        ) WITHOUT ROWID
        """
    )
    db.execute(
        """
        CREATE TABLE failures (
            run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            key NOT NULL,
            position INTEGER NOT NULL,
            batch INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            error_type TEXT NOT NULL,
            message TEXT NOT NULL,
            PRIMARY KEY (run, key)
        ) WITHOUT ROWID
        """
    )


def _v2(db: sqlite3.Connection) -> None:
    # A run's first session writes its done items' keys only into `chunks` and indexes
    # them into `items` once, sorted, when the session ends (or when a resume starts
    # after a crash): `items` rows inserted batch by batch in hash order touch a random
    # page of the index per item. `index_from`: the smallest `chunks.id` of the run whose
    # keys are not in `items` yet; NULL when every key is indexed (all v1 runs).
    db.execute("ALTER TABLE runs ADD COLUMN index_from INTEGER")


MIGRATIONS: dict[int, Migration] = {1: _v1, 2: _v2}
CURRENT_VERSION = max(MIGRATIONS)


def read_version(db: sqlite3.Connection) -> int:
    """The schema version of an open database (0 for a new, empty file)."""
    exists = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if not exists:
        return 0
    row = db.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def check_version(db: sqlite3.Connection, path: str) -> int:
    """The file's schema version; ``StateError`` if a newer batchline wrote it (no writes)."""
    version = read_version(db)
    if version > CURRENT_VERSION:
        raise StateError(
            f"state file {path} has schema version {version}, but this batchline knows up to "
            f"version {CURRENT_VERSION}. Upgrade batchline (pip install -U batchline) to open it."
        )
    return version


def migrate(
    db: sqlite3.Connection, path: str, migrations: dict[int, Migration] | None = None
) -> int:
    """Bring ``db`` to the latest version, one transaction per step; return that version.

    Raises:
        StateError: the file was written by a newer batchline.
    """
    steps = MIGRATIONS if migrations is None else migrations
    target = max(steps)
    db.execute("BEGIN IMMEDIATE")
    try:
        version = read_version(db)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    if version > target:
        raise StateError(
            f"state file {path} has schema version {version}, but this batchline knows up to "
            f"version {target}. Upgrade batchline (pip install -U batchline) to open it."
        )
    while version < target:
        db.execute("BEGIN IMMEDIATE")
        try:
            current = read_version(db)  # another process may have migrated meanwhile
            if current != version:
                db.execute("COMMIT")
                version = current
                continue
            steps[version + 1](db)
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        version += 1
    return version

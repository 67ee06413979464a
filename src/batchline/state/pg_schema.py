"""The PostgreSQL schema, its version, and the migrations that bring a database up to date.

The same shape as the SQLite schema (``batchline.state.schema``): ``MIGRATIONS[n]`` turns a
version ``n - 1`` database into version ``n``, each step in one transaction with the
version bump, so a database is never half-migrated. Several drivers starting at once
serialise on an advisory lock; a database written by a newer batchline is refused.

Tables carry a ``batchline_`` prefix so the store can share a database (and a schema,
chosen with ``options=-csearch_path=...`` in the DSN) with other applications. Item keys
are stored as JSON text, so the int key ``1`` and the str key ``"1"`` stay different.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batchline.errors import StateError

Migration = Callable[[Any], None]
"""A step: takes a psycopg cursor inside the migration's transaction."""

VERSION_TABLE = "batchline_schema_version"
_LOCK_ID = 0x6261_7463_686C  # "batchl": one advisory lock for every batchline migration


def _v1(cur: Any) -> None:
    cur.execute(
        """
        CREATE TABLE batchline_runs (
            id BIGSERIAL PRIMARY KEY,
            run_id TEXT NOT NULL UNIQUE,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            status TEXT NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}',
            total_items BIGINT,
            lease_token TEXT,
            lease_pid BIGINT,
            lease_host TEXT,
            lease_started TEXT,
            heartbeat_at DOUBLE PRECISION
        )
        """
    )
    # One row per committed batch attempt; keys, positions and results are JSON arrays,
    # encoded and decoded once per batch rather than per item (as in SQLite).
    cur.execute(
        """
        CREATE TABLE batchline_chunks (
            id BIGSERIAL PRIMARY KEY,
            run BIGINT NOT NULL REFERENCES batchline_runs(id) ON DELETE CASCADE,
            batch BIGINT NOT NULL,
            size BIGINT NOT NULL,
            failed BIGINT NOT NULL,
            attempts BIGINT NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            duration DOUBLE PRECISION NOT NULL,
            keys TEXT NOT NULL,
            positions TEXT NOT NULL,
            results TEXT NOT NULL
        )
        """
    )
    cur.execute("CREATE INDEX batchline_chunks_by_run ON batchline_chunks (run, batch)")
    cur.execute(
        """
        CREATE TABLE batchline_items (
            run BIGINT NOT NULL REFERENCES batchline_runs(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            chunk BIGINT NOT NULL,
            status TEXT NOT NULL,
            PRIMARY KEY (run, key)
        )
        """
    )
    cur.execute("CREATE INDEX batchline_items_by_chunk ON batchline_items (chunk)")
    cur.execute(
        """
        CREATE TABLE batchline_failures (
            run BIGINT NOT NULL REFERENCES batchline_runs(id) ON DELETE CASCADE,
            key TEXT NOT NULL,
            position BIGINT NOT NULL,
            batch BIGINT NOT NULL,
            attempts BIGINT NOT NULL,
            error_type TEXT NOT NULL,
            message TEXT NOT NULL,
            PRIMARY KEY (run, key)
        )
        """
    )


MIGRATIONS: dict[int, Migration] = {1: _v1}
CURRENT_VERSION = max(MIGRATIONS)


def read_version(cur: Any) -> int:
    """The schema version of a database (0 when batchline never wrote to it)."""
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,))
    row = cur.fetchone()
    if not row or not row[0]:
        return 0
    cur.execute(f"SELECT version FROM {VERSION_TABLE}")  # noqa: S608 - a constant name
    found = cur.fetchone()
    return int(found[0]) if found else 0


def migrate(conn: Any, where: str, migrations: dict[int, Migration] | None = None) -> int:
    """Bring the database behind ``conn`` to the latest version; return that version.

    Args:
        conn: an open psycopg connection (not in a transaction).
        where: the database, for messages (no password).
        migrations: the steps (tests pass their own).

    Raises:
        StateError: the database was written by a newer batchline.
    """
    steps = MIGRATIONS if migrations is None else migrations
    target = max(steps)
    while True:  # one transaction per step, each under the advisory lock
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
            version = read_version(cur)  # another process may have migrated meanwhile
            if version > target:
                raise StateError(
                    f"state database {where} has schema version {version}, but this batchline "
                    f"knows up to version {target}. Upgrade batchline (pip install -U "
                    "batchline) to open it."
                )
            if version == target:
                return version
            steps[version + 1](cur)
            cur.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL)")
            cur.execute(f"DELETE FROM {VERSION_TABLE}")  # noqa: S608 - a constant name
            cur.execute(
                f"INSERT INTO {VERSION_TABLE} (version) VALUES (%s)",  # noqa: S608 - a constant name
                (version + 1,),
            )

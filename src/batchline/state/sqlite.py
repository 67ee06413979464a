"""The default durable store: one SQLite file in WAL mode, one transaction per batch."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from batchline.engine.keys import Key
from batchline.errors import RunActiveError, StateError
from batchline.state.base import BatchCommit, ItemRecord, ItemStatus, Lease, RunInfo, RunStatus
from batchline.state.codec import decode, encode_each
from batchline.state.lease import (
    DEFAULT_TTL,
    Holder,
    host_name,
    new_token,
    process_start,
    takeover_refusal,
)
from batchline.state.schema import migrate

_LOOKUP_CHUNK = 500
_ITEM_COLUMNS = "key, position, batch, status, attempts, result, error_type, message"


class SQLiteStateStore:
    """Run state in a SQLite file that survives crashes and can be shared by processes.

    Every batch is one transaction (WAL, ``synchronous=NORMAL``: a committed batch
    survives the process being killed). Several processes may open the same file; a
    run is driven by one process at a time, guarded by a lease with a heartbeat.

    Args:
        path: the database file; its folder is created if needed.
        lease_ttl: seconds of heartbeat silence after which a lease held from another
            host may be taken over (a dead holder on this host is taken over at once).
        timeout: seconds to wait for another process's write to finish.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, lease_ttl: float = DEFAULT_TTL, timeout: float = 30.0
    ) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lease_ttl = lease_ttl
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            migrate(self._db, str(self.path))
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"cannot open state file {self.path}: {exc}. Is it a batchline state file? "
                "Point `store=` at another path, or move the file away."
            ) from exc
        self._run_pks: dict[str, int] = {}

    @property
    def location(self) -> str:
        """The database path."""
        return str(self.path)

    def __repr__(self) -> str:
        return f"SQLiteStateStore({str(self.path)!r})"

    def __enter__(self) -> SQLiteStateStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Commit on success, roll back on any exception; never half-written."""
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def acquire(self, run_id: str, *, meta: Mapping[str, Any] | None = None) -> Lease:
        """Create or resume ``run_id`` and take its lease.

        Raises:
            RunActiveError: a live process holds the lease.
        """
        now = time.time()
        token = new_token()
        pid = os.getpid()
        holder = (token, pid, host_name(), process_start(pid), now)
        with self._transaction() as db:
            row = db.execute(
                "SELECT id, meta, lease_token, lease_pid, lease_host, lease_started, heartbeat_at"
                " FROM runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            if row is None:
                cursor = db.execute(
                    "INSERT INTO runs (run_id, created_at, updated_at, status, meta, lease_token,"
                    " lease_pid, lease_host, lease_started, heartbeat_at)"
                    " VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?)",
                    (run_id, now, now, json.dumps(dict(meta or {})), *holder),
                )
                pk = int(cursor.lastrowid or 0)
                committed = 0
            else:
                pk = int(row[0])
                if row[2] is not None:
                    current = Holder(row[2], int(row[3]), row[4], row[5], float(row[6] or 0))
                    refusal = takeover_refusal(current, now, self.lease_ttl)
                    if refusal is not None:
                        raise RunActiveError(run_id, current.pid, current.host, refusal)
                merged = {**json.loads(row[1] or "{}"), **dict(meta or {})}
                db.execute(
                    "UPDATE runs SET status = 'running', updated_at = ?, meta = ?, lease_token = ?,"
                    " lease_pid = ?, lease_host = ?, lease_started = ?, heartbeat_at = ?"
                    " WHERE id = ?",
                    (now, json.dumps(merged), *holder, pk),
                )
                committed = int(
                    db.execute("SELECT COUNT(*) FROM items WHERE run = ?", (pk,)).fetchone()[0]
                )
        self._run_pks[run_id] = pk
        return Lease(run_id, token, committed, row is not None)

    def heartbeat(self, lease: Lease) -> None:
        """Refresh the lease's heartbeat; ``StateError`` if it was taken over."""
        with self._transaction() as db:
            self._touch(db, lease, time.time())

    def _touch(self, db: sqlite3.Connection, lease: Lease, now: float) -> int:
        pk = self._pk(lease.run_id)
        cursor = db.execute(
            "UPDATE runs SET heartbeat_at = ?, updated_at = ? WHERE id = ? AND lease_token = ?",
            (now, now, pk, lease.token),
        )
        if cursor.rowcount != 1:
            raise StateError(
                f"the lease on run {lease.run_id!r} in {self.path} was taken over by another "
                "process; this process stops writing to it. Resume the run again to continue."
            )
        return pk

    def release(self, lease: Lease, status: RunStatus, *, total_items: int | None = None) -> None:
        """Record the final status and give up the lease."""
        with self._transaction() as db:
            pk = self._pk(lease.run_id)
            db.execute(
                "UPDATE runs SET status = ?, updated_at = ?,"
                " total_items = COALESCE(?, total_items), lease_token = NULL, lease_pid = NULL,"
                " lease_host = NULL, lease_started = NULL"
                " WHERE id = ? AND lease_token = ?",
                (status, time.time(), total_items, pk, lease.token),
            )

    def lookup(self, run_id: str, keys: Sequence[Key]) -> dict[Key, ItemRecord]:
        """Committed records among ``keys``."""
        pk = self._run_pks.get(run_id) or self._find_pk(run_id)
        if pk is None:
            return {}
        found: dict[Key, ItemRecord] = {}
        with self._lock:
            for start in range(0, len(keys), _LOOKUP_CHUNK):
                part = keys[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(part))
                rows = self._db.execute(
                    f"SELECT {_ITEM_COLUMNS} FROM items WHERE run = ? AND key IN ({marks})",  # noqa: S608 - only placeholders are interpolated
                    (pk, *part),
                ).fetchall()
                for row in rows:
                    found[row[0]] = _record(row)
        return found

    def commit_batch(self, lease: Lease, commit: BatchCommit) -> None:
        """Write one batch atomically, after checking the lease is still ours."""
        encoded = encode_each(commit.batch_number, commit.keys, commit.results)
        number = commit.batch_number
        attempts = commit.attempts
        now = time.time()
        with self._transaction() as db:
            pk = self._touch(db, lease, now)
            if encoded:
                db.executemany(
                    "INSERT OR REPLACE INTO items (run, key, position, batch, status, attempts,"
                    " result) VALUES (?, ?, ?, ?, 'done', ?, ?)",
                    [
                        (pk, key, position, number, attempts, text)
                        for key, position, text in zip(
                            commit.keys, commit.positions, encoded, strict=True
                        )
                    ],
                )
            if commit.failed:
                db.executemany(
                    "INSERT OR REPLACE INTO items (run, key, position, batch, status, attempts,"
                    " error_type, message) VALUES (?, ?, ?, ?, 'failed', ?, ?, ?)",
                    [
                        (pk, key, position, number, attempts, error_type, message)
                        for key, position, error_type, message in commit.failed
                    ],
                )
            db.execute(
                "INSERT OR REPLACE INTO batches (run, number, size, failed, attempts, started_at,"
                " duration) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    pk,
                    number,
                    len(encoded) + len(commit.failed),
                    len(commit.failed),
                    attempts,
                    commit.started_at,
                    commit.duration,
                ),
            )

    def list_runs(self) -> list[RunInfo]:
        """Every run, newest first, with item counts."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, run_id, created_at, updated_at, status, meta, total_items, lease_pid,"
                " lease_host FROM runs ORDER BY created_at DESC, id DESC"
            ).fetchall()
            counts = self._counts()
        return [_info(row, counts.get(row[0], {})) for row in rows]

    def get_run(self, run_id: str) -> RunInfo:
        """One run, or ``StateError`` naming the runs there are."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, run_id, created_at, updated_at, status, meta, total_items, lease_pid,"
                " lease_host FROM runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            if row is None:
                raise StateError(self._unknown(run_id))
            counts = self._counts(int(row[0]))
        return _info(row, counts.get(row[0], {}))

    def iter_items(self, run_id: str, status: ItemStatus | None = None) -> Iterator[ItemRecord]:
        """Committed items in input order, read in pages (memory stays small)."""
        pk = self._find_pk(run_id)
        if pk is None:
            raise StateError(self._unknown(run_id))
        last = -1
        while True:
            with self._lock:
                query = (
                    f"SELECT {_ITEM_COLUMNS} FROM items WHERE run = ? AND position > ?"  # noqa: S608 - constant columns
                    + (" AND status = ?" if status else "")
                    + " ORDER BY position LIMIT 1000"
                )
                args: tuple[Any, ...] = (pk, last, status) if status else (pk, last)
                rows = self._db.execute(query, args).fetchall()
            if not rows:
                return
            for row in rows:
                yield _record(row)
            last = int(rows[-1][1])

    def delete_run(self, run_id: str) -> None:
        """Forget a run, its items and batches."""
        with self._transaction() as db:
            pk = self._find_pk(run_id)
            if pk is not None:
                db.execute("DELETE FROM items WHERE run = ?", (pk,))
                db.execute("DELETE FROM batches WHERE run = ?", (pk,))
                db.execute("DELETE FROM runs WHERE id = ?", (pk,))
        self._run_pks.pop(run_id, None)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def _pk(self, run_id: str) -> int:
        pk = self._run_pks.get(run_id) or self._find_pk(run_id)
        if pk is None:
            raise StateError(self._unknown(run_id))
        return pk

    def _find_pk(self, run_id: str) -> int | None:
        with self._lock:
            row = self._db.execute("SELECT id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        self._run_pks[run_id] = int(row[0])
        return int(row[0])

    def _counts(self, pk: int | None = None) -> dict[int, dict[str, int]]:
        query = "SELECT run, status, COUNT(*) FROM items"
        args: tuple[int, ...] = ()
        if pk is not None:
            query += " WHERE run = ?"
            args = (pk,)
        counts: dict[int, dict[str, int]] = {}
        for run, status, count in self._db.execute(query + " GROUP BY run, status", args):
            counts.setdefault(run, {})[status] = int(count)
        return counts

    def _unknown(self, run_id: str) -> str:
        with self._lock:
            names = [r[0] for r in self._db.execute("SELECT run_id FROM runs LIMIT 10")]
        listed = ", ".join(repr(n) for n in names) or "none"
        return (
            f"no run {run_id!r} in {self.path} (runs here: {listed}). "
            "Check the run id, or list runs with `batchline runs --state PATH`."
        )


def _record(row: tuple[Any, ...]) -> ItemRecord:
    key, position, batch, status, attempts, result, error_type, message = row
    return ItemRecord(
        key=key,
        position=int(position),
        batch_number=int(batch),
        status=status,
        attempts=int(attempts),
        result=decode(result) if result is not None else None,
        error_type=error_type,
        message=message,
    )


def _info(row: tuple[Any, ...], counts: Mapping[str, int]) -> RunInfo:
    _, run_id, created, updated, status, meta, total, pid, host = row
    return RunInfo(
        run_id=run_id,
        created_at=float(created),
        updated_at=float(updated),
        status=status,
        succeeded=counts.get("done", 0),
        failed=counts.get("failed", 0),
        total_items=None if total is None else int(total),
        meta=json.loads(meta or "{}"),
        active_pid=None if pid is None else int(pid),
        active_host=host,
    )

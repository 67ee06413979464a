"""The default durable store: one SQLite file in WAL mode, one transaction per batch."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from batchline.errors import RunActiveError, StateError
from batchline.state.base import BatchCommit, ItemRecord, ItemStatus, Lease, RunInfo, RunStatus
from batchline.state.codec import (
    decode,
    decode_positions,
    decode_results,
    encode_batch,
    encode_keys,
    encode_positions,
)
from batchline.state.faults import damaged_row, foreign_file, state_error
from batchline.state.jobdir import check_state_path
from batchline.state.keys import Key
from batchline.state.lease import (
    DEFAULT_TTL,
    Holder,
    host_name,
    new_token,
    process_start,
    takeover_refusal,
)
from batchline.state.schema import check_version, migrate
from batchline.state.sessions import close_session, open_session

_LOOKUP_CHUNK = 500
_CHUNK_COLUMNS = "batch, attempts, keys, positions, results"
_FAILURE_COLUMNS = "key, position, batch, attempts, error_type, message"


class SQLiteStateStore:
    """Run state in a SQLite file that survives crashes and can be shared by processes.

    Every batch is one transaction (WAL, ``synchronous=NORMAL``: a committed batch
    survives the process being killed). Several processes may open the same file; a
    run is driven by one process at a time, guarded by a lease with a heartbeat.

    Storage faults (disk full, a read-only file, a lock held by a stopped writer, a
    damaged file or row, a foreign database) raise ``StateFileError`` naming the file,
    the run and the remedy; nothing committed before the fault is lost.

    Args:
        path: the database file; its folder is created if needed.
        lease_ttl: seconds of heartbeat silence after which a lease held from another
            host may be taken over (a dead holder on this host is taken over at once).
        timeout: seconds to wait for another process's write transaction to finish
            before giving up with an error that says so.
        read_only: open for reading only (listing and showing runs), which also works on
            a read-only file or file system; writing raises ``StateFileError``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lease_ttl: float = DEFAULT_TTL,
        timeout: float = 30.0,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        check_state_path(self.path)
        self.read_only = read_only
        self.timeout = timeout
        if not read_only and self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lease_ttl = lease_ttl
        self._lock = threading.RLock()
        self._db = self._connect()
        self._run_pks: dict[str, int] = {}
        # Runs whose first session this store drives: their done keys go into `chunks`
        # only, and into the `items` index once, sorted, when the session ends.
        self._deferred: set[int] = set()
        self._has_index_from = self.read_only is False or _has_column(
            self._db, "runs", "index_from"
        )

    def _connect(self) -> sqlite3.Connection:
        path = str(self.path)
        db: sqlite3.Connection | None = None
        try:
            if self.read_only:
                db = _open_read_only(self.path, self.timeout)
            else:
                db = sqlite3.connect(
                    self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
                )
            tables = _tables(db)
            if tables and "schema_version" not in tables:
                raise foreign_file(path, sorted(tables))
            if self.read_only:
                if not tables:
                    raise StateError(f"{path} holds no batchline runs (it is empty)")
                check_version(db, path)
                return db
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            migrate(db, path)
        except sqlite3.Error as exc:
            if db is not None:
                db.close()
            raise state_error(exc, path, doing="open", timeout=self.timeout) from exc
        except BaseException:
            if db is not None:
                db.close()
            raise
        return db

    @contextmanager
    def _reading(self, doing: str, run_id: str | None = None) -> Iterator[sqlite3.Connection]:
        """Reads under the lock; a SQLite fault becomes a ``StateFileError``."""
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise state_error(
                    exc, str(self.path), doing=doing, run_id=run_id, timeout=self.timeout
                ) from exc

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
    def _transaction(
        self, doing: str = "write", run_id: str | None = None
    ) -> Iterator[sqlite3.Connection]:
        """Commit on success, roll back on any exception; never half-written.

        A SQLite fault (disk full, read-only, locked, damaged) becomes a
        ``StateFileError`` naming the file, the run and the remedy.
        """
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    with suppress(sqlite3.Error):  # a failed COMMIT may have rolled back
                        db.execute("ROLLBACK")
                    raise
                try:
                    db.execute("COMMIT")
                except sqlite3.Error:
                    with suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise state_error(
                    exc, str(self.path), doing=doing, run_id=run_id, timeout=self.timeout
                ) from exc

    def acquire(self, run_id: str, *, meta: Mapping[str, Any] | None = None) -> Lease:
        """Create or resume ``run_id`` and take its lease.

        Raises:
            RunActiveError: a live process holds the lease.
        """
        now = time.time()
        token = new_token()
        pid = os.getpid()
        holder = (token, pid, host_name(), process_start(pid), now)
        with self._transaction("start or resume the run", run_id) as db:
            row = db.execute(
                "SELECT id, meta, lease_token, lease_pid, lease_host, lease_started, heartbeat_at"
                " FROM runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
            if row is None:
                fresh = open_session(meta or {}, now=now, pid=pid, host=holder[2], committed=0)
                cursor = db.execute(
                    "INSERT INTO runs (run_id, created_at, updated_at, status, meta, lease_token,"
                    " lease_pid, lease_host, lease_started, heartbeat_at, index_from)"
                    " VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, 0)",
                    (run_id, now, now, json.dumps(fresh), *holder),
                )
                pk = int(cursor.lastrowid or 0)
                committed = 0
                self._deferred.add(pk)
            else:
                pk = int(row[0])
                if row[2] is not None:
                    current = Holder(row[2], int(row[3]), row[4], row[5], float(row[6] or 0))
                    refusal = takeover_refusal(current, now, self.lease_ttl)
                    if refusal is not None:
                        raise RunActiveError(run_id, current.pid, current.host, refusal)
                _index_keys(db, pk)  # a first session that ended without indexing (a crash)
                self._deferred.discard(pk)
                committed = int(
                    db.execute("SELECT COUNT(*) FROM items WHERE run = ?", (pk,)).fetchone()[0]
                )
                merged = open_session(
                    {**json.loads(row[1] or "{}"), **dict(meta or {})},
                    now=now,
                    pid=pid,
                    host=holder[2],
                    committed=committed,
                )
                db.execute(
                    "UPDATE runs SET status = 'running', updated_at = ?, meta = ?, lease_token = ?,"
                    " lease_pid = ?, lease_host = ?, lease_started = ?, heartbeat_at = ?"
                    " WHERE id = ?",
                    (now, json.dumps(merged), *holder, pk),
                )
        self._run_pks[run_id] = pk
        return Lease(run_id, token, committed, row is not None)

    def heartbeat(self, lease: Lease) -> None:
        """Refresh the lease's heartbeat; ``StateError`` if it was taken over."""
        with self._transaction("refresh the run's lease", lease.run_id) as db:
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
        now = time.time()
        with self._transaction("record the run's final status", lease.run_id) as db:
            pk = self._pk(lease.run_id)
            row = db.execute(
                "SELECT meta FROM runs WHERE id = ? AND lease_token = ?", (pk, lease.token)
            ).fetchone()
            if row is None:  # taken over meanwhile: the new holder owns the record
                return
            if pk in self._deferred:
                _index_keys(db, pk)
                self._deferred.discard(pk)
            meta = close_session(json.loads(row[0] or "{}"), now=now, status=status)
            db.execute(
                "UPDATE runs SET status = ?, updated_at = ?, meta = ?,"
                " total_items = COALESCE(?, total_items), lease_token = NULL, lease_pid = NULL,"
                " lease_host = NULL, lease_started = NULL"
                " WHERE id = ? AND lease_token = ?",
                (status, now, json.dumps(meta), total_items, pk, lease.token),
            )

    def lookup(self, run_id: str, keys: Sequence[Key]) -> dict[Key, ItemRecord]:
        """Committed records among ``keys`` (each batch's results decoded once)."""
        pk = self._run_pks.get(run_id) or self._find_pk(run_id)
        if pk is None or not keys:
            return {}
        found: dict[Key, ItemRecord] = {}
        with self._reading("look up committed items", run_id):
            rows: list[tuple[Any, ...]] = []
            for start in range(0, len(keys), _LOOKUP_CHUNK):
                part = keys[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(part))
                rows += self._db.execute(
                    f"SELECT key, chunk, status FROM items WHERE run = ? AND key IN ({marks})",  # noqa: S608 - only placeholders are interpolated
                    (pk, *part),
                ).fetchall()
            done_chunks = {chunk for _, chunk, status in rows if status == "done"}
            for chunk in self._load_chunks(done_chunks, run_id):
                found.update(chunk.records())
            failed = [key for key, _, status in rows if status == "failed"]
            for start in range(0, len(failed), _LOOKUP_CHUNK):
                part = failed[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(part))
                for row in self._db.execute(
                    f"SELECT {_FAILURE_COLUMNS} FROM failures WHERE run = ? AND key IN ({marks})",  # noqa: S608 - only placeholders are interpolated
                    (pk, *part),
                ):
                    found[row[0]] = _failure(row)
            current = {key: status for key, _, status in rows}
            found = {k: r for k, r in found.items() if current.get(k) == r.status}
            wanted = set(keys) - set(found)
            if wanted:  # keys of a first session not indexed yet (read while it runs)
                for chunk in self._unindexed_chunks(pk, run_id):
                    found.update(
                        (key, record) for key, record in chunk.records().items() if key in wanted
                    )
        return found

    def _load_chunks(self, ids: set[int], run_id: str) -> list[_Chunk]:
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        chunks: list[_Chunk] = []
        for row in self._db.execute(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE id IN ({marks})",  # noqa: S608 - only placeholders are interpolated
            tuple(ids),
        ):
            try:
                chunks.append(_Chunk(*row))
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                raise damaged_row(str(self.path), run_id, int(row[0]), exc) from exc
        return chunks

    def commit_batch(self, lease: Lease, commit: BatchCommit) -> None:
        """Write one batch atomically, after checking the lease is still ours."""
        keys = commit.keys
        number = commit.batch_number
        results = encode_batch(number, keys, commit.results) if keys else "[]"
        key_text = encode_keys(keys)
        position_text = encode_positions(commit.positions)
        failed = commit.failed
        with self._transaction(f"commit batch {number}", lease.run_id) as db:
            pk = self._touch(db, lease, time.time())
            chunk = db.execute(
                "INSERT INTO chunks (run, batch, size, failed, attempts, started_at, duration,"
                " keys, positions, results) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    pk,
                    number,
                    len(keys) + len(failed),
                    len(failed),
                    commit.attempts,
                    commit.started_at,
                    commit.duration,
                    key_text,
                    position_text,
                    results,
                ),
            ).lastrowid
            if keys and pk not in self._deferred:
                db.executemany(
                    "INSERT OR REPLACE INTO items (run, key, chunk, status)"
                    " VALUES (?, ?, ?, 'done')",
                    [(pk, key, chunk) for key in keys],
                )
                if lease.resumed:  # items that failed before and succeed now
                    self._forget_failures(db, pk, keys)
            if failed:
                db.executemany(
                    "INSERT OR REPLACE INTO items (run, key, chunk, status)"
                    " VALUES (?, ?, ?, 'failed')",
                    [(pk, row[0], chunk) for row in failed],
                )
                db.executemany(
                    "INSERT OR REPLACE INTO failures (run, key, position, batch, attempts,"
                    " error_type, message) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (pk, key, position, number, attempts, error_type, message)
                        for key, position, error_type, message, attempts in failed
                    ],
                )

    @staticmethod
    def _forget_failures(db: sqlite3.Connection, pk: int, keys: Sequence[Key]) -> None:
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            part = keys[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(part))
            db.execute(
                f"DELETE FROM failures WHERE run = ? AND key IN ({marks})",  # noqa: S608 - only placeholders are interpolated
                (pk, *part),
            )

    def list_runs(self) -> list[RunInfo]:
        """Every run, newest first, with item counts."""
        with self._reading("list the runs"):
            rows = self._db.execute(
                "SELECT id, run_id, created_at, updated_at, status, meta, total_items, lease_pid,"
                " lease_host FROM runs ORDER BY created_at DESC, id DESC"
            ).fetchall()
            counts = self._counts()
        return [_info(row, counts.get(row[0], {})) for row in rows]

    def get_run(self, run_id: str) -> RunInfo:
        """One run, or ``StateError`` naming the runs there are."""
        with self._reading("read the run", run_id):
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
        """Committed items in input order, read a page of batches at a time."""
        pk = self._find_pk(run_id)
        if pk is None:
            raise StateError(self._unknown(run_id))
        last = 0
        while True:
            with self._reading("read the run's items", run_id):
                numbers = [
                    int(row[0])
                    for row in self._db.execute(
                        "SELECT DISTINCT batch FROM chunks WHERE run = ? AND batch > ?"
                        " ORDER BY batch LIMIT 50",
                        (pk, last),
                    )
                ]
                if not numbers:
                    return
                page = self._page(pk, numbers[0], numbers[-1], status, run_id)
            yield from sorted(page, key=lambda record: record.position)
            last = numbers[-1]

    def _page(
        self, pk: int, first: int, last: int, status: ItemStatus | None, run_id: str
    ) -> list[ItemRecord]:
        """Current records of batches ``first``..``last`` (latest state of each item)."""
        current: dict[Key, str] = {}
        chunk_ids: set[int] = set()
        for key, chunk, item_status in self._db.execute(
            "SELECT i.key, i.chunk, i.status FROM items AS i JOIN chunks AS c ON c.id = i.chunk"
            " WHERE i.run = ? AND c.batch BETWEEN ? AND ?",
            (pk, first, last),
        ):
            current[key] = item_status
            if item_status == "done":
                chunk_ids.add(chunk)
        records: list[ItemRecord] = []
        if status in (None, "done"):
            for chunk in self._load_chunks(chunk_ids, run_id):
                records.extend(
                    record for key, record in chunk.records().items() if current.get(key) == "done"
                )
            for chunk in self._unindexed_chunks(pk, run_id, first, last):
                records.extend(chunk.records().values())
        if status in (None, "failed"):
            records.extend(
                _failure(row)
                for row in self._db.execute(
                    f"SELECT {_FAILURE_COLUMNS} FROM failures"  # noqa: S608 - constant columns
                    " WHERE run = ? AND batch BETWEEN ? AND ?",
                    (pk, first, last),
                )
            )
        return records

    def delete_run(self, run_id: str) -> None:
        """Forget a run, its items and batches."""
        with self._transaction("delete the run", run_id) as db:
            pk = self._find_pk(run_id)
            if pk is not None:
                for table in ("items", "failures", "chunks"):
                    db.execute(f"DELETE FROM {table} WHERE run = ?", (pk,))  # noqa: S608 - constant names
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
        with self._reading("find the run", run_id):
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
        if self._has_index_from:  # done items of first sessions, not indexed yet
            pending = (
                "SELECT c.run, SUM(c.size - c.failed) FROM chunks AS c JOIN runs AS r"
                " ON r.id = c.run WHERE r.index_from IS NOT NULL AND c.id >= r.index_from"
            )
            if pk is not None:
                pending += " AND c.run = ?"
            for run, count in self._db.execute(pending + " GROUP BY c.run", args):
                done = counts.setdefault(run, {})
                done["done"] = done.get("done", 0) + int(count or 0)
        return counts

    def _unindexed_chunks(
        self, pk: int, run_id: str, first: int | None = None, last: int | None = None
    ) -> Iterator[_Chunk]:
        """Chunks of a first session whose keys are not in ``items`` yet (batches
        ``first``..``last`` when given), decoded a page at a time."""
        if not self._has_index_from:
            return
        row = self._db.execute("SELECT index_from FROM runs WHERE id = ?", (pk,)).fetchone()
        if row is None or row[0] is None:
            return
        query = f"SELECT id, {_CHUNK_COLUMNS} FROM chunks WHERE run = ? AND id >= ?"  # noqa: S608 - constant columns
        args: tuple[int, ...] = (pk, int(row[0]))
        if first is not None and last is not None:
            query += " AND batch BETWEEN ? AND ?"
            args += (first, last)
        after = 0
        while True:
            page = self._db.execute(
                query + " AND id > ? ORDER BY id LIMIT 200", (*args, after)
            ).fetchall()
            if not page:
                return
            for chunk_id, *columns in page:
                try:
                    yield _Chunk(*columns)
                except (ValueError, TypeError, KeyError, IndexError) as exc:
                    raise damaged_row(str(self.path), run_id, int(chunk_id), exc) from exc
            after = int(page[-1][0])

    def _unknown(self, run_id: str) -> str:
        with self._reading("list the runs"):
            names = [r[0] for r in self._db.execute("SELECT run_id FROM runs LIMIT 10")]
        listed = ", ".join(repr(n) for n in names) or "none"
        return (
            f"no run {run_id!r} in {self.path} (runs here: {listed}). "
            "Check the run id, or list runs with `batchline runs --state PATH`."
        )


class _Chunk:
    """One committed batch attempt, decoded."""

    __slots__ = ("attempts", "batch", "keys", "positions", "results")

    def __init__(self, batch: int, attempts: int, keys: str, positions: str, results: str) -> None:
        self.batch = int(batch)
        self.attempts = int(attempts)
        self.keys: list[Key] = decode(keys)
        self.positions = decode_positions(positions)
        self.results: list[Any] = decode_results(results)

    def records(self) -> dict[Key, ItemRecord]:
        batch, attempts = self.batch, self.attempts
        return {
            key: ItemRecord(key, position, batch, "done", attempts, result)
            for key, position, result in zip(self.keys, self.positions, self.results, strict=True)
        }


def _failure(row: tuple[Any, ...]) -> ItemRecord:
    key, position, batch, attempts, error_type, message = row
    return ItemRecord(
        key, int(position), int(batch), "failed", int(attempts), None, error_type, message
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


def _index_keys(db: sqlite3.Connection, pk: int) -> None:
    """Index the done keys of run ``pk``'s unindexed chunks into ``items``, in key order
    (sequential B-tree inserts), inside the caller's transaction. A key already in
    ``items`` from a later chunk (it failed there) keeps that newer state."""
    row = db.execute("SELECT index_from FROM runs WHERE id = ?", (pk,)).fetchone()
    if row is None or row[0] is None:
        return
    db.execute(
        "INSERT INTO items (run, key, chunk, status)"
        " SELECT ?, j.value, c.id, 'done' FROM chunks AS c, json_each(c.keys) AS j"
        " WHERE c.run = ? AND c.id >= ? ORDER BY j.value, c.id"
        " ON CONFLICT (run, key) DO UPDATE SET chunk = excluded.chunk, status = 'done'"
        " WHERE excluded.chunk > items.chunk",
        (pk, pk, int(row[0])),
    )
    db.execute("UPDATE runs SET index_from = NULL WHERE id = ?", (pk,))


def _has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})"))


def _tables(db: sqlite3.Connection) -> set[str]:
    return {
        row[0]
        for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }


def _open_read_only(path: Path, timeout: float) -> sqlite3.Connection:
    """A read-only connection; on a read-only file system, an immutable one."""
    if not path.exists():
        raise StateError(f"no state file at {path}; check the path (--state / store=)")
    uri = f"{path.resolve().as_uri()}?mode=ro"
    db = sqlite3.connect(
        uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False
    )
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        # WAL on a read-only folder: SQLite cannot create the -shm file. Read the file
        # as it is (what a checkpoint wrote; recent batches may sit in the -wal file).
        db.close()
        db = sqlite3.connect(
            f"{path.resolve().as_uri()}?immutable=1",
            uri=True,
            timeout=timeout,
            isolation_level=None,
            check_same_thread=False,
        )
    return db

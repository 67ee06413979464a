"""A state store in PostgreSQL: state that outlives the driver machine.

The same contract as ``SQLiteStateStore``: one transaction per batch (the lease check in
the same transaction as the writes), a lease per run with a heartbeat, a versioned schema
with migrations. Because the database is reached over the network, a run can be resumed
from another machine, and several drivers (and dashboards) share one store. Heartbeats and
lease expiry use the database server's clock, so drivers whose clocks disagree still agree
on when a lease has expired.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from batchline.errors import ConfigurationError, RunActiveError, StateError
from batchline.state.base import BatchCommit, ItemRecord, ItemStatus, Lease, RunInfo, RunStatus
from batchline.state.codec import (
    decode,
    decode_positions,
    decode_results,
    encode,
    encode_batch,
    encode_keys,
    encode_positions,
)
from batchline.state.keys import Key
from batchline.state.lease import (
    DEFAULT_TTL,
    Holder,
    host_name,
    new_token,
    process_start,
    takeover_refusal,
)
from batchline.state.pg_schema import migrate

PSYCOPG_MISSING = (
    'the PostgreSQL state store needs psycopg 3: pip install "batchline[postgres]" '
    '(or pip install "psycopg[binary]>=3.1"), or use SQLiteStateStore(PATH)'
)
_NOW = "extract(epoch from clock_timestamp())::double precision"
_CHUNK_COLUMNS = "batch, attempts, keys, positions, results"
_FAILURE_COLUMNS = "key, position, batch, attempts, error_type, message"
_RUN_COLUMNS = (
    "id, run_id, created_at, updated_at, status, meta, total_items, lease_pid, lease_host"
)


def is_postgres_url(text: str) -> bool:
    """Whether ``text`` names a PostgreSQL database (``postgresql://`` or ``postgres://``)."""
    return text.startswith(("postgresql://", "postgres://"))


def redact_dsn(dsn: str) -> str:
    """The DSN without its password, for messages and logs."""
    if not is_postgres_url(dsn):
        return " ".join(
            "password=***" if part.lower().startswith("password=") else part for part in dsn.split()
        )
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name = user.split(":", 1)[0]
        netloc = f"{name}@{host}" if name else host
    query = "&".join(
        "password=***" if piece.lower().startswith("password=") else piece
        for piece in parts.query.split("&")
        if piece
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


class PostgresStateStore:
    """Run state in a PostgreSQL database, shared by drivers on any machine.

    Args:
        dsn: a libpq connection string or URL, e.g.
            ``postgresql://batch@db.internal:5432/runs`` (a password may come from
            ``PGPASSWORD`` or ``~/.pgpass``; it never appears in messages). Tables are
            created (and migrated) on first use, prefixed ``batchline_``; choose a schema
            with ``?options=-csearch_path%3Dmyschema``.
        lease_ttl: seconds of heartbeat silence after which a lease held from another
            host may be taken over (a dead holder on this host is taken over at once).
        connect_timeout: seconds to wait for the server before giving up.
    """

    def __init__(
        self, dsn: str, *, lease_ttl: float = DEFAULT_TTL, connect_timeout: float = 10.0
    ) -> None:
        try:
            import psycopg  # noqa: PLC0415 - optional dependency, imported on use
        except ImportError:  # pragma: no cover - psycopg is a dependency of the dev extra
            raise ConfigurationError(PSYCOPG_MISSING) from None
        if not isinstance(dsn, str) or not dsn.strip():
            raise ConfigurationError(
                f"`dsn` is {dsn!r}; expected a PostgreSQL connection string such as "
                "'postgresql://user@host:5432/dbname'."
            )
        self._psycopg = psycopg
        self.dsn = dsn
        self.lease_ttl = lease_ttl
        self.connect_timeout = connect_timeout
        self._where = redact_dsn(dsn)
        self._lock = threading.RLock()
        self._run_pks: dict[str, int] = {}
        self._closed = False
        self._conn: Any = None
        with self._lock:
            conn = self._connection()
            try:
                migrate(conn, self._where)
            except psycopg.Error as exc:
                raise self._error("prepare the schema of", exc) from exc

    # -- connection -------------------------------------------------------------------

    def _connection(self) -> Any:
        """The open connection, reconnecting after the server dropped it."""
        if self._closed:
            raise StateError(f"the state store {self._where} is closed; open a new one.")
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        try:
            self._conn = self._psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=max(1, round(self.connect_timeout)),
                application_name=f"batchline pid {os.getpid()}",
            )
        except self._psycopg.Error as exc:
            raise StateError(
                f"cannot connect to the state database {self._where}: "
                f"{str(exc).strip() or type(exc).__name__}. Check that the server runs and the "
                "DSN (host, port, user, database) is right; the password comes from the DSN, "
                "PGPASSWORD or ~/.pgpass."
            ) from exc
        return self._conn

    def _error(self, doing: str, exc: Exception) -> StateError:
        return StateError(
            f"cannot {doing} the state database {self._where}: "
            f"{type(exc).__name__}: {str(exc).strip()}. Nothing of this operation was written; "
            "check the server, then resume the run with the same run id."
        )

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[Any]:
        """A cursor in one transaction: commit on success, roll back on any exception."""
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
            except self._psycopg.Error as exc:
                raise self._error(doing, exc) from exc

    @contextmanager
    def _read(self, doing: str) -> Iterator[Any]:
        """A cursor for reads (each statement sees committed data)."""
        with self._lock:
            conn = self._connection()
            try:
                with conn.cursor() as cur:
                    yield cur
            except self._psycopg.Error as exc:
                raise self._error(doing, exc) from exc

    @property
    def location(self) -> str:
        """The database, without its password."""
        return self._where

    def __repr__(self) -> str:
        return f"PostgresStateStore({self._where!r})"

    def __enter__(self) -> PostgresStateStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- leases -----------------------------------------------------------------------

    def acquire(self, run_id: str, *, meta: Mapping[str, Any] | None = None) -> Lease:
        """Create or resume ``run_id`` and take its lease.

        Raises:
            RunActiveError: a live process holds the lease.
        """
        token = new_token()
        pid = os.getpid()
        holder = (token, pid, host_name(), process_start(pid))
        meta_text = json.dumps(dict(meta or {}))
        with self._transaction("take the lease in") as cur:
            cur.execute(
                "INSERT INTO batchline_runs (run_id, created_at, updated_at, status, meta,"  # noqa: S608 - only the constant clock expression is interpolated
                " lease_token, lease_pid, lease_host, lease_started, heartbeat_at)"
                f" VALUES (%s, {_NOW}, {_NOW}, 'running', %s, %s, %s, %s, %s, {_NOW})"
                " ON CONFLICT (run_id) DO NOTHING RETURNING id",
                (run_id, meta_text, *holder),
            )
            created = cur.fetchone()
            if created is not None:
                self._run_pks[run_id] = int(created[0])
                return Lease(run_id, token, 0, False)
            cur.execute(
                "SELECT id, meta, lease_token, lease_pid, lease_host, lease_started,"  # noqa: S608 - only the constant clock expression is interpolated
                f" heartbeat_at, {_NOW} FROM batchline_runs WHERE run_id = %s FOR UPDATE",
                (run_id,),
            )
            row = cur.fetchone()
            pk = int(row[0])
            if row[2] is not None:
                current = Holder(row[2], int(row[3]), row[4], row[5], float(row[6] or 0))
                refusal = takeover_refusal(current, float(row[7]), self.lease_ttl)
                if refusal is not None:
                    raise RunActiveError(run_id, current.pid, current.host, refusal)
            merged = {**json.loads(row[1] or "{}"), **dict(meta or {})}
            cur.execute(
                f"UPDATE batchline_runs SET status = 'running', updated_at = {_NOW}, meta = %s,"  # noqa: S608 - only the constant clock expression is interpolated
                " lease_token = %s, lease_pid = %s, lease_host = %s, lease_started = %s,"
                f" heartbeat_at = {_NOW} WHERE id = %s",
                (json.dumps(merged), *holder, pk),
            )
            cur.execute("SELECT COUNT(*) FROM batchline_items WHERE run = %s", (pk,))
            committed = int(cur.fetchone()[0])
        self._run_pks[run_id] = pk
        return Lease(run_id, token, committed, True)

    def heartbeat(self, lease: Lease) -> None:
        """Refresh the lease's heartbeat; ``StateError`` if it was taken over."""
        with self._transaction("send a heartbeat to") as cur:
            self._touch(cur, lease)

    def _touch(self, cur: Any, lease: Lease) -> int:
        pk = self._pk(lease.run_id)
        cur.execute(
            f"UPDATE batchline_runs SET heartbeat_at = {_NOW}, updated_at = {_NOW}"  # noqa: S608 - only the constant clock expression is interpolated
            " WHERE id = %s AND lease_token = %s",
            (pk, lease.token),
        )
        if cur.rowcount != 1:
            raise StateError(
                f"the lease on run {lease.run_id!r} in {self._where} was taken over by another "
                "process; this process stops writing to it. Resume the run again to continue."
            )
        return pk

    def release(self, lease: Lease, status: RunStatus, *, total_items: int | None = None) -> None:
        """Record the final status and give up the lease."""
        with self._transaction("release the lease in") as cur:
            cur.execute(
                f"UPDATE batchline_runs SET status = %s, updated_at = {_NOW},"  # noqa: S608 - only the constant clock expression is interpolated
                " total_items = COALESCE(%s, total_items), lease_token = NULL, lease_pid = NULL,"
                " lease_host = NULL, lease_started = NULL WHERE id = %s AND lease_token = %s",
                (status, total_items, self._pk(lease.run_id), lease.token),
            )

    # -- items ------------------------------------------------------------------------

    def lookup(self, run_id: str, keys: Sequence[Key]) -> dict[Key, ItemRecord]:
        """Committed records among ``keys`` (each batch's results decoded once)."""
        pk = self._run_pks.get(run_id) or self._find_pk(run_id)
        if pk is None or not keys:
            return {}
        wanted = {encode(key): key for key in keys}
        found: dict[Key, ItemRecord] = {}
        with self._read("look items up in") as cur:
            cur.execute(
                "SELECT key, chunk, status FROM batchline_items WHERE run = %s AND key = ANY(%s)",
                (pk, list(wanted)),
            )
            rows = [(wanted[key], chunk, status) for key, chunk, status in cur.fetchall()]
            if not rows:
                return found
            done_chunks = {chunk for _, chunk, status in rows if status == "done"}
            for chunk in self._load_chunks(cur, done_chunks):
                found.update(chunk.records())
            failed = [encode(key) for key, _, status in rows if status == "failed"]
            if failed:
                cur.execute(
                    f"SELECT {_FAILURE_COLUMNS} FROM batchline_failures"  # noqa: S608 - constant columns
                    " WHERE run = %s AND key = ANY(%s)",
                    (pk, failed),
                )
                for row in cur.fetchall():
                    record = _failure(row)
                    found[record.key] = record
        current = {key: status for key, _, status in rows}
        return {key: record for key, record in found.items() if current.get(key) == record.status}

    @staticmethod
    def _load_chunks(cur: Any, ids: set[int]) -> list[_Chunk]:
        if not ids:
            return []
        cur.execute(
            f"SELECT {_CHUNK_COLUMNS} FROM batchline_chunks WHERE id = ANY(%s)",  # noqa: S608 - constant columns
            (sorted(ids),),
        )
        return [_Chunk(*row) for row in cur.fetchall()]

    def commit_batch(self, lease: Lease, commit: BatchCommit) -> None:
        """Write one batch atomically, after checking the lease is still ours."""
        keys = commit.keys
        number = commit.batch_number
        results = encode_batch(number, keys, commit.results) if keys else "[]"
        key_texts = [encode(key) for key in keys]
        failed = commit.failed
        with self._transaction("commit a batch to") as cur:
            pk = self._touch(cur, lease)
            cur.execute(
                "INSERT INTO batchline_chunks (run, batch, size, failed, attempts, started_at,"
                " duration, keys, positions, results)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    pk,
                    number,
                    len(keys) + len(failed),
                    len(failed),
                    commit.attempts,
                    commit.started_at,
                    commit.duration,
                    encode_keys(keys),
                    encode_positions(commit.positions),
                    results,
                ),
            )
            chunk = int(cur.fetchone()[0])
            rows = [(pk, key, chunk, "done") for key in key_texts]
            rows += [(pk, encode(row[0]), chunk, "failed") for row in failed]
            if rows:
                cur.executemany(
                    "INSERT INTO batchline_items (run, key, chunk, status)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (run, key)"
                    " DO UPDATE SET chunk = EXCLUDED.chunk, status = EXCLUDED.status",
                    rows,
                )
            if key_texts and lease.resumed:  # items that failed before and succeed now
                cur.execute(
                    "DELETE FROM batchline_failures WHERE run = %s AND key = ANY(%s)",
                    (pk, key_texts),
                )
            if failed:
                cur.executemany(
                    "INSERT INTO batchline_failures (run, key, position, batch, attempts,"
                    " error_type, message) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (run, key) DO UPDATE SET position = EXCLUDED.position,"
                    " batch = EXCLUDED.batch, attempts = EXCLUDED.attempts,"
                    " error_type = EXCLUDED.error_type, message = EXCLUDED.message",
                    [
                        (pk, encode(key), position, number, attempts, error_type, message)
                        for key, position, error_type, message, attempts in failed
                    ],
                )

    # -- reading runs -----------------------------------------------------------------

    def list_runs(self) -> list[RunInfo]:
        """Every run, newest first, with item counts."""
        with self._read("list the runs of") as cur:
            cur.execute(
                f"SELECT {_RUN_COLUMNS} FROM batchline_runs ORDER BY created_at DESC, id DESC"  # noqa: S608 - constant columns
            )
            rows = cur.fetchall()
            counts = self._counts(cur)
        return [_info(row, counts.get(int(row[0]), {})) for row in rows]

    def get_run(self, run_id: str) -> RunInfo:
        """One run, or ``StateError`` naming the runs there are."""
        with self._read("read a run from") as cur:
            cur.execute(
                f"SELECT {_RUN_COLUMNS} FROM batchline_runs WHERE run_id = %s",  # noqa: S608 - constant columns
                (run_id,),
            )
            row = cur.fetchone()
            if row is None:
                raise StateError(self._unknown(run_id))
            counts = self._counts(cur, int(row[0]))
        return _info(row, counts.get(int(row[0]), {}))

    def iter_items(self, run_id: str, status: ItemStatus | None = None) -> Iterator[ItemRecord]:
        """Committed items in input order, read a page of batches at a time."""
        pk = self._find_pk(run_id)
        if pk is None:
            raise StateError(self._unknown(run_id))
        last = 0
        while True:
            with self._read("read the items of") as cur:
                cur.execute(
                    "SELECT DISTINCT batch FROM batchline_chunks WHERE run = %s AND batch > %s"
                    " ORDER BY batch LIMIT 50",
                    (pk, last),
                )
                numbers = [int(row[0]) for row in cur.fetchall()]
                if not numbers:
                    return
                page = self._page(cur, pk, numbers[0], numbers[-1], status)
            yield from sorted(page, key=lambda record: record.position)
            last = numbers[-1]

    def _page(
        self, cur: Any, pk: int, first: int, last: int, status: ItemStatus | None
    ) -> list[ItemRecord]:
        """Current records of batches ``first``..``last`` (latest state of each item)."""
        cur.execute(
            "SELECT i.key, i.chunk, i.status FROM batchline_items AS i"
            " JOIN batchline_chunks AS c ON c.id = i.chunk"
            " WHERE i.run = %s AND c.batch BETWEEN %s AND %s",
            (pk, first, last),
        )
        current: dict[Key, str] = {}
        chunk_ids: set[int] = set()
        for key, chunk, item_status in cur.fetchall():
            current[decode(key)] = item_status
            if item_status == "done":
                chunk_ids.add(int(chunk))
        records: list[ItemRecord] = []
        if status in (None, "done"):
            for chunk in self._load_chunks(cur, chunk_ids):
                records.extend(
                    record for key, record in chunk.records().items() if current.get(key) == "done"
                )
        if status in (None, "failed"):
            cur.execute(
                f"SELECT {_FAILURE_COLUMNS} FROM batchline_failures"  # noqa: S608 - constant columns
                " WHERE run = %s AND batch BETWEEN %s AND %s",
                (pk, first, last),
            )
            records.extend(_failure(row) for row in cur.fetchall())
        return records

    def delete_run(self, run_id: str) -> None:
        """Forget a run, its items and batches."""
        with self._transaction("delete a run from") as cur:
            cur.execute("DELETE FROM batchline_runs WHERE run_id = %s", (run_id,))
        self._run_pks.pop(run_id, None)

    def close(self) -> None:
        """Close the connection; the store is unusable afterwards."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- helpers ----------------------------------------------------------------------

    def _pk(self, run_id: str) -> int:
        pk = self._run_pks.get(run_id) or self._find_pk(run_id)
        if pk is None:
            raise StateError(self._unknown(run_id))
        return pk

    def _find_pk(self, run_id: str) -> int | None:
        with self._read("find a run in") as cur:
            cur.execute("SELECT id FROM batchline_runs WHERE run_id = %s", (run_id,))
            row = cur.fetchone()
        if row is None:
            return None
        self._run_pks[run_id] = int(row[0])
        return int(row[0])

    @staticmethod
    def _counts(cur: Any, pk: int | None = None) -> dict[int, dict[str, int]]:
        query = "SELECT run, status, COUNT(*) FROM batchline_items"
        args: tuple[int, ...] = ()
        if pk is not None:
            query += " WHERE run = %s"
            args = (pk,)
        cur.execute(query + " GROUP BY run, status", args)
        counts: dict[int, dict[str, int]] = {}
        for run, status, count in cur.fetchall():
            counts.setdefault(int(run), {})[status] = int(count)
        return counts

    def _unknown(self, run_id: str) -> str:
        with self._read("list the runs of") as cur:
            cur.execute("SELECT run_id FROM batchline_runs ORDER BY id LIMIT 10")
            names = [row[0] for row in cur.fetchall()]
        listed = ", ".join(repr(n) for n in names) or "none"
        return (
            f"no run {run_id!r} in {self._where} (runs here: {listed}). "
            "Check the run id, or list runs with `batchline runs --state DSN`."
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
        decode(key), int(position), int(batch), "failed", int(attempts), None, error_type, message
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

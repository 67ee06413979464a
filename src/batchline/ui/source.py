"""A read-only view of one SQLite state file, shaped for the dashboard's pages.

Every query is bounded: counts come from the per-batch ``chunks`` rows (one row per
committed batch, not per item) and the ``failures`` table, pages of items are cut from
the batches that hold them, and key searches use the ``(run, key)`` primary key. So a
page over a run of a million items reads a few hundred rows, not a million.

The file is opened with ``mode=ro``: the dashboard never writes, never migrates, and
reads safely while a run is committing to the same file (WAL readers never block the
writer). A file on a read-only mount is opened ``immutable``.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from batchline.engine import split_run_id
from batchline.errors import StateError
from batchline.state.codec import decode, decode_positions, decode_results, encode

Key = str | int

_RUN_COLUMNS = (
    "r.id, r.run_id, r.created_at, r.updated_at, r.status, r.meta, r.total_items,"
    " r.lease_pid, r.lease_host, r.heartbeat_at,"
    " COALESCE((SELECT SUM(c.size - c.failed) FROM chunks AS c WHERE c.run = r.id), 0),"
    " (SELECT COUNT(*) FROM failures AS f WHERE f.run = r.id),"
    " (SELECT MIN(c.started_at) FROM chunks AS c WHERE c.run = r.id),"
    " (SELECT MAX(c.started_at + c.duration) FROM chunks AS c WHERE c.run = r.id),"
    " (SELECT COALESCE(SUM(c.attempts - 1), 0) FROM chunks AS c WHERE c.run = r.id)"
)
ACTIVE_STATUSES = frozenset({"running"})


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run as the dashboard shows it."""

    source: int
    run_id: str
    status: str
    created_at: float
    updated_at: float
    meta: dict[str, Any]
    total_items: int | None
    succeeded: int
    failed: int
    retries: int
    first_batch_at: float | None
    last_batch_at: float | None
    active_pid: int | None
    active_host: str | None
    heartbeat_at: float | None
    children: list[RunRow] = field(default_factory=list)
    step_usage: dict[str, float] = field(default_factory=dict)

    @property
    def parent_id(self) -> str | None:
        """The run this one belongs to (``RUN/step`` belongs to ``RUN``), if any."""
        parent, name = split_run_id(self.run_id)
        return None if name is None else parent

    @property
    def name(self) -> str:
        """A child run's name (a step, scope or level); a top-level run's id."""
        return split_run_id(self.run_id)[1] or self.run_id

    @property
    def front_door(self) -> str:
        """Which front door wrote the run: workflow, pipeline, context or engine."""
        kind = self.meta.get("kind")
        if isinstance(kind, str) and kind:
            return kind
        name = self.name
        if name.startswith("scope-"):
            return "pipeline"
        if name.startswith("level-"):
            return "context"
        return "engine"

    @property
    def expected_items(self) -> int | None:
        """The total when known: recorded at the end, or announced by the engine at the start."""
        if self.total_items is not None:
            return self.total_items
        expected = self.meta.get("expected_items")
        if isinstance(expected, int) and not isinstance(expected, bool):
            return expected
        return None if self.active else self.done

    @property
    def done(self) -> int:
        """Items with a final outcome (succeeded or failed)."""
        return self.succeeded + self.failed

    @property
    def pending(self) -> int | None:
        """Items not yet run, when the total is known."""
        total = self.expected_items
        return None if total is None else max(0, total - self.done)

    @property
    def percentage(self) -> float | None:
        """Share of items with an outcome, 0..100, when the total is known."""
        total = self.expected_items
        if not total:
            return None if total is None else 100.0
        return min(100.0, 100.0 * self.done / total)

    @property
    def active(self) -> bool:
        """True while a process holds the run's lease."""
        return self.status in ACTIVE_STATUSES and self.active_pid is not None

    @property
    def duration(self) -> float:
        """Seconds from the run's creation to its last update (or now, while active)."""
        end = time.time() if self.active else self.updated_at
        return max(0.0, end - self.created_at)

    @property
    def items_per_second(self) -> float | None:
        """Throughput over the time batches were committed."""
        if self.first_batch_at is None or self.last_batch_at is None or not self.done:
            return None
        span = self.last_batch_at - self.first_batch_at
        return self.done / span if span > 0 else None

    @property
    def sessions(self) -> list[dict[str, Any]]:
        """Each time a process drove the run: started, ended, status, pid, host, committed."""
        found = self.meta.get("sessions")
        return [s for s in found if isinstance(s, dict)] if isinstance(found, list) else []

    @property
    def usage(self) -> dict[str, Any]:
        """LLM usage the front door recorded in the run's metadata (tokens, cost)."""
        usage = self.meta.get("usage")
        recorded = usage if isinstance(usage, dict) else {}
        return {**self.step_usage, **recorded}

    def summary(self) -> dict[str, Any]:
        """The run's numbers as plain JSON (for the live page and the API)."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "front_door": self.front_door,
            "active": self.active,
            "total_items": self.expected_items,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "pending": self.pending,
            "retries": self.retries,
            "percentage": None if self.percentage is None else round(self.percentage, 2),
            "items_per_second": _round(self.items_per_second),
            "duration": round(self.duration, 3),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "usage": self.usage,
            "children": [child.summary() for child in self.children],
        }


@dataclass(frozen=True, slots=True)
class ItemRow:
    """One item: its key, where it stands, and its result or error."""

    key: Key
    position: int
    batch: int
    status: str
    attempts: int
    result: Any = None
    error_type: str | None = None
    message: str | None = None
    run_id: str = ""
    started_at: float | None = None
    duration: float | None = None

    @property
    def key_param(self) -> str:
        """The key as it travels in a URL: JSON, so ``1`` and ``"1"`` stay apart."""
        return quote(json.dumps(self.key), safe="")


@dataclass(frozen=True, slots=True)
class Page:
    """A slice of a longer list, with what a pager needs."""

    rows: list[ItemRow]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        """How many pages there are (at least one)."""
        return max(1, math.ceil(self.total / self.per_page))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _connect(path: Path) -> sqlite3.Connection:
    """Open ``path`` read-only; on a read-only mount, as an immutable file."""
    if not path.is_file():
        raise StateError(
            f"no state file at `{path}`. Pass the file a run wrote (--state PATH), or a "
            "workflow workspace (--workspace DIR, which holds state.db)."
        )
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=5.0, check_same_thread=False)
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        # WAL needs its -shm file; on a read-only folder only an immutable open works.
        db = sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False)
    except sqlite3.DatabaseError as exc:
        raise StateError(
            f"`{path}` is not a readable SQLite database ({exc}). Point --state at the file "
            "batchline wrote (SQLiteStateStore path, or WORKSPACE/state.db)."
        ) from None
    db.execute("PRAGMA query_only = ON")
    return db


class StateSource:
    """One state file, read-only, with the dashboard's queries.

    Args:
        path: the SQLite state file (``SQLiteStateStore`` path, ``WORKSPACE/state.db``).
        index: the source's number in the dashboard (runs are named by source and id).
    """

    def __init__(self, path: str | os.PathLike[str], index: int = 0) -> None:
        self.path = Path(path)
        self.index = index
        self._db = _connect(self.path)
        self._lock = threading.Lock()
        self._ready = False
        self._check_tables()

    def _check_tables(self) -> bool:
        """True once batchline's tables exist; an empty file is a run about to start."""
        if self._ready:
            return True
        tables = {
            row[0] for row in self._query("SELECT name FROM sqlite_master WHERE type = 'table'", ())
        }
        missing = {"runs", "chunks", "items", "failures"} - tables
        if missing and tables:
            raise StateError(
                f"`{self.path}` is not a batchline state file (no table "
                f"{', '.join(sorted(missing))}). Point --state at the file a run wrote."
            )
        self._ready = not missing
        return self._ready

    def __repr__(self) -> str:
        return f"StateSource({str(self.path)!r})"

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()

    def _query(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, tuple(args)).fetchall()

    # -- runs -----------------------------------------------------------------------------

    def runs(self) -> list[RunRow]:
        """Every run, newest first, child runs (steps, scopes) folded under their parent."""
        if not self._check_tables():
            return []
        rows = [
            self._row(row)
            for row in self._query(
                f"SELECT {_RUN_COLUMNS} FROM runs AS r ORDER BY r.created_at DESC, r.id DESC",  # noqa: S608 - constant columns
                (),
            )
        ]
        return _fold(rows)

    def run(self, run_id: str) -> RunRow:
        """One run with its child runs; ``StateError`` naming the runs there are."""
        if not self._check_tables():
            raise StateError(f"no run `{run_id}` in `{self.path}` yet: no run has started there.")
        rows = self._query(
            f"SELECT {_RUN_COLUMNS} FROM runs AS r"  # noqa: S608 - constant columns
            " WHERE r.run_id = ? OR (r.run_id > ? AND r.run_id < ?) ORDER BY r.created_at, r.id",
            (run_id, run_id + "/", run_id + "0"),
        )
        found = [self._row(row) for row in rows]
        folded = [run for run in _fold(found) if run.run_id == run_id]
        if not folded:
            names = [row[0] for row in self._query("SELECT run_id FROM runs LIMIT 10", ())]
            raise StateError(
                f"no run `{run_id}` in `{self.path}` (runs here: "
                f"{', '.join(map(repr, names)) or 'none'}). Pick one from the runs page."
            )
        return folded[0]

    def _step_usage(self, pk: int) -> dict[str, float]:
        """LLM usage a workflow recorded in its step records (steps are the run's items)."""
        total: dict[str, float] = {}
        for (results,) in self._query("SELECT results FROM chunks WHERE run = ?", (pk,)):
            for record in decode_results(results):
                usage = record.get("usage") if isinstance(record, dict) else None
                for name, value in (usage or {}).items():
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        total[name] = total.get(name, 0) + value
        return total

    def llm_usage(self, run_id: str) -> dict[str, float]:
        """Tokens, cost and cache hits summed over results that record their LLM call.

        A result that carries an ``llm`` object (``prompt_tokens``, ``completion_tokens``,
        ``cost_usd``, ``cached``) counts; runs whose first batch has none cost nothing to ask.
        """
        pk = self._pk(run_id)
        first = self._query("SELECT results FROM chunks WHERE run = ? LIMIT 1", (pk,))
        if not first or '"llm":' not in first[0][0]:
            return {}
        row = self._query(
            "SELECT COUNT(json_extract(e.value, '$.llm')),"
            " SUM(json_extract(e.value, '$.llm.prompt_tokens')),"
            " SUM(json_extract(e.value, '$.llm.completion_tokens')),"
            " SUM(json_extract(e.value, '$.llm.cost_usd')),"
            " SUM(json_extract(e.value, '$.llm.cached') = 1)"
            " FROM chunks AS c, json_each(c.results) AS e WHERE c.run = ?",
            (pk,),
        )[0]
        calls, prompt, completion, cost, cached = (value or 0 for value in row)
        return {
            "calls": int(calls),
            "cached_calls": int(cached),
            "prompt_tokens": int(prompt),
            "completion_tokens": int(completion),
            "cost_usd": float(cost),
        }

    def _row(self, row: tuple[Any, ...]) -> RunRow:
        (pk, run_id, created, updated, status, meta, total, pid, host, beat) = row[:10]
        succeeded, failed, first, last, retries = row[10:]
        try:
            meta_dict = json.loads(meta or "{}")
        except ValueError:
            meta_dict = {}
        if not isinstance(meta_dict, dict):
            meta_dict = {}
        return RunRow(
            source=self.index,
            run_id=run_id,
            status=status,
            created_at=float(created),
            updated_at=float(updated),
            meta=meta_dict,
            total_items=None if total is None else int(total),
            succeeded=int(succeeded or 0),
            failed=int(failed or 0),
            retries=int(retries or 0),
            first_batch_at=None if first is None else float(first),
            last_batch_at=None if last is None else float(last),
            active_pid=None if pid is None else int(pid),
            active_host=host,
            heartbeat_at=None if beat is None else float(beat),
            step_usage=self._step_usage(int(pk)) if meta_dict.get("kind") == "workflow" else {},
        )

    def _pk(self, run_id: str) -> int:
        if not self._check_tables():
            raise StateError(f"no run `{run_id}` in `{self.path}` yet: no run has started there.")
        rows = self._query("SELECT id FROM runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise StateError(f"no run `{run_id}` in `{self.path}`.")
        return int(rows[0][0])

    # -- timelines ------------------------------------------------------------------------

    def series(self, run_id: str, buckets: int = 60) -> dict[str, list[float]]:
        """Items finished per second over time, in at most ``buckets`` points.

        Returns ``{"t": [...], "succeeded": [...], "failed": [...]}`` with ``t`` in
        seconds since the epoch (bucket ends) and rates in items per second.
        """
        pk = self._pk(run_id)
        bounds = self._query(
            "SELECT MIN(started_at + duration), MAX(started_at + duration) FROM chunks"
            " WHERE run = ?",
            (pk,),
        )[0]
        if bounds[0] is None:
            return {"t": [], "succeeded": [], "failed": []}
        start = float(bounds[0]) - 1.0  # rates over the second before the first commit, too
        end = float(bounds[1])
        step = max((end - start) / buckets, 1.0)
        count = min(buckets, int((end - start) / step) + 1)
        ok = [0.0] * count
        bad = [0.0] * count
        for bucket, good, failed in self._query(
            "SELECT CAST((started_at + duration - ?) / ? AS INTEGER) AS b,"
            " SUM(size - failed), SUM(failed) FROM chunks WHERE run = ? GROUP BY b",
            (start, step, pk),
        ):
            index = min(int(bucket), count - 1)
            ok[index] += float(good) / step
            bad[index] += float(failed) / step
        times = [start + step * (i + 1) for i in range(count)]
        # a leading zero at the first commit's time, so even one bucket draws a line
        return {"t": [start, *times], "succeeded": [0.0, *ok], "failed": [0.0, *bad]}

    # -- failures -------------------------------------------------------------------------

    def error_types(self, run_ids: Sequence[str]) -> list[tuple[str, int]]:
        """Error types among the failures of ``run_ids``, most common first."""
        pks = [self._pk(run_id) for run_id in run_ids]
        marks = ",".join("?" * len(pks))
        return [
            (str(kind), int(count))
            for kind, count in self._query(
                f"SELECT error_type, COUNT(*) FROM failures WHERE run IN ({marks})"  # noqa: S608 - only placeholders
                " GROUP BY error_type ORDER BY COUNT(*) DESC, error_type",
                pks,
            )
        ]

    def failures(
        self,
        run_ids: Sequence[str],
        *,
        error_type: str | None = None,
        page: int = 1,
        per_page: int = 50,
    ) -> Page:
        """Failed items of ``run_ids`` (a run and its steps), optionally of one error type."""
        names = {self._pk(run_id): run_id for run_id in run_ids}
        marks = ",".join("?" * len(names))
        where = f"f.run IN ({marks})"
        args: list[Any] = list(names)
        if error_type:
            where += " AND f.error_type = ?"
            args.append(error_type)
        total = int(self._query(f"SELECT COUNT(*) FROM failures AS f WHERE {where}", args)[0][0])  # noqa: S608 - constant clauses
        page = max(1, page)
        rows = self._query(
            "SELECT f.run, f.key, f.position, f.batch, f.attempts, f.error_type, f.message,"  # noqa: S608 - constant clauses
            " (SELECT MAX(c.started_at + c.duration) FROM chunks AS c"
            "  WHERE c.run = f.run AND c.batch = f.batch)"
            f" FROM failures AS f WHERE {where} ORDER BY f.run, f.position LIMIT ? OFFSET ?",
            [*args, per_page, (page - 1) * per_page],
        )
        items = [
            ItemRow(
                key=key,
                position=int(position),
                batch=int(batch),
                status="failed",
                attempts=int(attempts),
                error_type=kind,
                message=message,
                run_id=names[int(run)],
                started_at=None if at is None else float(at),
            )
            for run, key, position, batch, attempts, kind, message, at in rows
        ]
        return Page(items, page, per_page, total)

    # -- items ----------------------------------------------------------------------------

    def items(
        self, run_id: str, *, page: int = 1, per_page: int = 50, status: str | None = None
    ) -> Page:
        """One page of a run's committed items, in input order."""
        if status == "failed":
            return self.failures([run_id], page=page, per_page=per_page)
        pk = self._pk(run_id)
        per_batch = self._per_batch(pk, status)
        total = sum(count for _, count in per_batch)
        page = max(1, min(page, max(1, math.ceil(total / per_page))))
        start = (page - 1) * per_page
        wanted: list[int] = []
        offset = 0
        skip = 0  # items of the first wanted batch that belong to earlier pages
        for batch, count in per_batch:
            if offset + count > start and offset < start + per_page:
                if not wanted:
                    skip = start - offset
                wanted.append(batch)
            elif wanted:
                break
            offset += count
        rows = sorted(self._batch_items(pk, run_id, wanted, status), key=lambda r: r.position)
        return Page(rows[skip : skip + per_page], page, per_page, total)

    def _per_batch(self, pk: int, status: str | None) -> list[tuple[int, int]]:
        counts: dict[int, int] = {}
        if status in (None, "done"):
            for batch, count in self._query(
                "SELECT batch, SUM(size - failed) FROM chunks WHERE run = ? GROUP BY batch",
                (pk,),
            ):
                counts[int(batch)] = int(count)
        if status is None:
            for batch, count in self._query(
                "SELECT batch, COUNT(*) FROM failures WHERE run = ? GROUP BY batch", (pk,)
            ):
                counts[int(batch)] = counts.get(int(batch), 0) + int(count)
        return sorted((batch, count) for batch, count in counts.items() if count)

    def _batch_items(
        self, pk: int, run_id: str, batches: Sequence[int], status: str | None
    ) -> Iterator[ItemRow]:
        if not batches:
            return
        first, last = min(batches), max(batches)
        for number, attempts, started, duration, keys, positions, results in self._query(
            "SELECT batch, attempts, started_at, duration, keys, positions, results FROM chunks"
            " WHERE run = ? AND batch BETWEEN ? AND ?",
            (pk, first, last),
        ):
            for key, position, result in zip(
                decode(keys), decode_positions(positions), decode_results(results), strict=True
            ):
                yield ItemRow(
                    key, int(position), int(number), "done", int(attempts), result,
                    run_id=run_id, started_at=float(started), duration=float(duration),
                )  # fmt: skip
        if status is None:
            for key, position, number, attempts, kind, message in self._query(
                "SELECT key, position, batch, attempts, error_type, message FROM failures"
                " WHERE run = ? AND batch BETWEEN ? AND ?",
                (pk, first, last),
            ):
                yield ItemRow(
                    key, int(position), int(number), "failed", int(attempts), None, kind,
                    message, run_id=run_id,
                )  # fmt: skip

    def find_keys(self, run_id: str, text: str, limit: int = 50) -> list[Key]:
        """Keys of ``run_id`` equal to ``text`` (as str or int) or starting with it."""
        pk = self._pk(run_id)
        found: list[Key] = []
        candidates: list[Key] = [text]
        if text.lstrip("-").isdigit():
            candidates.append(int(text))
        for candidate in candidates:
            found += [
                row[0]
                for row in self._query(
                    "SELECT key FROM items WHERE run = ? AND key = ?", (pk, candidate)
                )
            ]
        if text:
            found += [
                row[0]
                for row in self._query(
                    "SELECT key FROM items WHERE run = ? AND key > ? AND key < ?"
                    " ORDER BY key LIMIT ?",
                    (pk, text, text + "\U0010ffff", limit),
                )
                if row[0] not in found
            ]
        if text and len(found) < limit:  # a first session's keys are indexed when it ends
            for row in self._unindexed(pk, text):
                found += [
                    key
                    for key in decode(row[4])
                    if key in candidates or (isinstance(key, str) and key.startswith(text))
                    if key not in found
                ]
        return found[:limit]

    def _unindexed(self, pk: int, text: str) -> list[tuple[Any, ...]]:
        """Chunks of a run's first session (its keys not in ``items`` yet) whose keys
        contain ``text``: batch, attempts, started_at, duration, keys, positions, results."""
        if not self._indexes_later():
            return []
        return self._query(
            "SELECT c.batch, c.attempts, c.started_at, c.duration, c.keys, c.positions,"
            " c.results FROM chunks AS c JOIN runs AS r ON r.id = c.run WHERE c.run = ?"
            " AND r.index_from IS NOT NULL AND c.id >= r.index_from AND instr(c.keys, ?) > 0",
            (pk, text),
        )

    def _indexes_later(self) -> bool:
        """Whether the file has ``runs.index_from`` (schema 2: first sessions index their
        keys when they end)."""
        return any(row[1] == "index_from" for row in self._query("PRAGMA table_info(runs)", ()))

    def item(self, run_id: str, key: Key) -> ItemRow | None:
        """One item's committed state (``None`` when the key has no record)."""
        pk = self._pk(run_id)
        rows = self._query(
            "SELECT i.status, c.batch, c.attempts, c.started_at, c.duration, c.keys,"
            " c.positions, c.results FROM items AS i JOIN chunks AS c ON c.id = i.chunk"
            " WHERE i.run = ? AND i.key = ?",
            (pk, key),
        )
        if not rows:
            needle = encode([key])[1:-1]
            rows = [("done", *row) for row in self._unindexed(pk, needle) if key in decode(row[4])][
                :1
            ]
        if not rows:
            return None
        status, number, attempts, started, duration, keys, positions, results = rows[0]
        if status == "failed":
            failure = self._query(
                "SELECT position, batch, attempts, error_type, message FROM failures"
                " WHERE run = ? AND key = ?",
                (pk, key),
            )
            if failure:
                position, number, attempts, kind, message = failure[0]
                return ItemRow(
                    key, int(position), int(number), "failed", int(attempts), None, kind,
                    message, run_id, float(started), float(duration),
                )  # fmt: skip
        keys_list = decode(keys)
        index = keys_list.index(key)
        return ItemRow(
            key, int(decode_positions(positions)[index]), int(number), "done", int(attempts),
            decode_results(results)[index], run_id=run_id, started_at=float(started),
            duration=float(duration),
        )  # fmt: skip

    def iter_export(self, run_id: str) -> Iterator[ItemRow]:
        """Every committed item of a run in input order, a few batches at a time."""
        pk = self._pk(run_id)
        numbers = [batch for batch, _ in self._per_batch(pk, None)]
        for start in range(0, len(numbers), 20):
            part = numbers[start : start + 20]
            yield from sorted(self._batch_items(pk, run_id, part, None), key=lambda r: r.position)


def _fold(rows: list[RunRow]) -> list[RunRow]:
    """Put each ``RUN/child`` row into its parent's ``children``; return the top level."""
    by_id = {row.run_id: row for row in rows}
    top: list[RunRow] = []
    for row in rows:
        parent = by_id.get(row.parent_id or "")
        if parent is not None:
            parent.children.append(row)
        else:
            top.append(row)
    for row in rows:
        row.children.sort(key=lambda child: (child.created_at, child.run_id))
    return top

"""A state store in memory: for tests, and for runs that need no crash safety."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from batchline.errors import RunActiveError, StateError
from batchline.state.base import BatchCommit, ItemRecord, ItemStatus, Lease, RunInfo, RunStatus
from batchline.state.codec import check_json
from batchline.state.keys import Key
from batchline.state.lease import host_name, new_token
from batchline.state.sessions import close_session, open_session


class _Run:
    __slots__ = ("created_at", "items", "meta", "status", "token", "total_items", "updated_at")

    def __init__(self, meta: Mapping[str, Any]) -> None:
        self.created_at = self.updated_at = time.time()
        self.status = "running"
        self.meta = dict(meta)
        self.items: dict[Key, ItemRecord] = {}
        self.token: str | None = None
        self.total_items: int | None = None


class MemoryStateStore:
    """Keeps runs in this process's memory; pass the same object again to resume a run.

    Args:
        keep_results: keep every committed item (needed to resume). The engine's
            implicit store for a call without ``store=`` sets it False, so streaming a
            million items does not hold a million results.
        require_json: reject results that are not JSON, as the SQLite store must, so
            code that works here works there. Front doors whose values never leave the
            process (a pipeline without a store) turn it off.
    """

    def __init__(self, *, keep_results: bool = True, require_json: bool = True) -> None:
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._keep = keep_results
        self._require_json = require_json

    @property
    def location(self) -> str:
        """Always ``memory``."""
        return "memory"

    def __repr__(self) -> str:
        return f"MemoryStateStore(runs={len(self._runs)})"

    def acquire(self, run_id: str, *, meta: Mapping[str, Any] | None = None) -> Lease:
        """Create or resume ``run_id``; a second driver in this process is refused."""
        with self._lock:
            run = self._runs.get(run_id)
            resumed = run is not None
            if run is None:
                run = self._runs[run_id] = _Run(meta or {})
            elif run.token is not None:
                raise RunActiveError(
                    run_id, os.getpid(), host_name(), "another call in this process is driving it"
                )
            elif meta:
                run.meta.update(meta)
            now, committed = time.time(), len(run.items)
            run.meta = open_session(
                run.meta, now=now, pid=os.getpid(), host=host_name(), committed=committed
            )
            run.token = new_token()
            run.status = "running"
            run.updated_at = time.time()
            return Lease(run_id, run.token, len(run.items), resumed)

    def heartbeat(self, lease: Lease) -> None:
        """Nothing to do in memory."""
        self._owned(lease)

    def release(self, lease: Lease, status: RunStatus, *, total_items: int | None = None) -> None:
        """Record the final status and free the run."""
        with self._lock:
            run = self._owned(lease)
            run.token = None
            run.meta = close_session(run.meta, now=time.time(), status=status)
            run.status = status
            run.updated_at = time.time()
            if total_items is not None:
                run.total_items = total_items

    def lookup(self, run_id: str, keys: Sequence[Key]) -> dict[Key, ItemRecord]:
        """Committed records among ``keys``."""
        run = self._runs.get(run_id)
        if run is None or not run.items:
            return {}
        items = run.items
        return {key: items[key] for key in keys if key in items}

    def commit_batch(self, lease: Lease, commit: BatchCommit) -> None:
        """Check results are JSON and record them (kept only with ``keep_results``)."""
        if self._require_json:
            check_json(commit.batch_number, commit.keys, commit.results)
        with self._lock:
            run = self._owned(lease)
            run.updated_at = time.time()
            if not self._keep:
                return
            items = run.items
            number = commit.batch_number
            for key, position, result in zip(
                commit.keys, commit.positions, commit.results, strict=True
            ):
                items[key] = ItemRecord(key, position, number, "done", commit.attempts, result)
            for key, position, error_type, message, attempts in commit.failed:
                items[key] = ItemRecord(
                    key, position, number, "failed", attempts, None, error_type, message
                )

    def list_runs(self) -> list[RunInfo]:
        """Every run, newest first."""
        with self._lock:
            infos = [self._info(run_id, run) for run_id, run in self._runs.items()]
        return sorted(infos, key=lambda info: info.created_at, reverse=True)

    def get_run(self, run_id: str) -> RunInfo:
        """One run, or ``StateError`` naming the runs there are."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None:
                raise StateError(_unknown_run(run_id, list(self._runs)))
            return self._info(run_id, run)

    def iter_items(self, run_id: str, status: ItemStatus | None = None) -> Iterator[ItemRecord]:
        """Committed items in input order."""
        run = self._runs.get(run_id)
        if run is None:
            raise StateError(_unknown_run(run_id, list(self._runs)))
        records = sorted(run.items.values(), key=lambda record: record.position)
        return iter([r for r in records if status is None or r.status == status])

    def delete_run(self, run_id: str) -> None:
        """Forget a run."""
        with self._lock:
            self._runs.pop(run_id, None)

    def close(self) -> None:
        """Nothing to release."""

    def _owned(self, lease: Lease) -> _Run:
        run = self._runs.get(lease.run_id)
        if run is None or run.token != lease.token:
            raise StateError(
                f"the lease on run {lease.run_id!r} is no longer held by this call; "
                "another call took the run over. Resume it again to continue."
            )
        return run

    @staticmethod
    def _info(run_id: str, run: _Run) -> RunInfo:
        done = sum(1 for r in run.items.values() if r.status == "done")
        return RunInfo(
            run_id=run_id,
            created_at=run.created_at,
            updated_at=run.updated_at,
            status=run.status,
            succeeded=done,
            failed=len(run.items) - done,
            total_items=run.total_items,
            meta=dict(run.meta),
            active_pid=os.getpid() if run.token else None,
            active_host=host_name() if run.token else None,
        )


def _unknown_run(run_id: str, known: list[str]) -> str:
    listed = ", ".join(repr(r) for r in known[:10]) or "none"
    return f"no run {run_id!r} in this store (runs here: {listed}). Check the run id and store."

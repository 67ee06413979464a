"""Where provider jobs are remembered: records in a run's state, through the engine.

Every job is written as one record (``job:<id>``: provider, state, the request key of
each ``custom_id``) *before* it is polled, through a ``RunSession`` on the journal's run
(for a workflow step, a child run of the step: ``nightly/summarise/llm-batches``). A
resumed process reads the records back and polls the jobs it already has instead of
submitting their requests again. Records are rewritten as jobs change state.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from batchline.engine import RunSession
from batchline.state import SQLiteStateStore, StateStore

__all__ = ["JOURNAL_CHILD", "BatchJournal"]

JOURNAL_CHILD = "llm-batches"
"""The name of the journal's child run under a step's run."""

_LOCKS: dict[tuple[int, str], threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


class BatchJournal:
    """Job records in a state store, under run ``run_id``.

    Args:
        store: the state store (the run's own, so jobs live with the run's state).
        run_id: the journal's run (e.g. ``child_run_id(step_run, "llm-batches")``).
    """

    def __init__(self, store: StateStore, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self._positions: dict[str, int] = {}
        with _LOCKS_GUARD:
            self._lock = _LOCKS.setdefault((id(store), run_id), threading.Lock())

    @classmethod
    def in_directory(cls, directory: str | Path, run_id: str) -> BatchJournal:
        """A journal in its own SQLite file (``llm-batches.db``) in ``directory``: for models
        used outside a run (the jobs still outlive the process)."""
        return cls(SQLiteStateStore(Path(directory) / "llm-batches.db"), run_id)

    def __repr__(self) -> str:
        return f"BatchJournal(run_id={self.run_id!r})"

    def _session(self) -> RunSession:
        return RunSession(self.store, self.run_id, meta={"kind": "llm-batches"}, heartbeat=0)

    def load(self) -> list[dict[str, Any]]:
        """Every job recorded so far, oldest first."""
        with self._lock, self._session() as session:
            jobs = []
            for record in session.items():
                if isinstance(record.result, dict) and str(record.key).startswith("job:"):
                    self._positions[str(record.key)] = record.position
                    jobs.append(dict(record.result))
            return jobs

    def save(self, job: dict[str, Any]) -> None:
        """Write (or rewrite) job ``job["job_id"]``'s record, durably, before returning."""
        key = f"job:{job['job_id']}"
        with self._lock, self._session() as session:
            position = self._positions.get(key)
            if position is None:
                position = max(self._positions.values(), default=-1) + 1
                self._positions[key] = position
            session.record(key, job, position=position)

"""The window of batches in flight: what to start next, what to hand out, in order.

Pure bookkeeping with no I/O, shared by the threaded and the asyncio drivers. In ordered
mode no batch starts more than ``width`` batches ahead of the oldest one not yet handed
out, which bounds the outcomes held while a slow batch finishes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from batchline.engine.core import Job, RunCore
from batchline.engine.outcome import BatchOutcome
from batchline.engine.plan import Batch


class Window:
    """Takes jobs from the plan and releases outcomes in plan order (or as they finish)."""

    def __init__(
        self, core: RunCore, plan: Iterator[Batch[Any]], *, ordered: bool, width: int
    ) -> None:
        self._core = core
        self._plan = plan
        self._ordered = ordered
        self._width = width
        self.exhausted = False
        self._next = 0  # index of the next planned batch
        self._emit = 0  # index of the next outcome to hand out (ordered mode)
        self._ready: dict[int, BatchOutcome[Any, Any]] = {}

    def take(self) -> Job | None:
        """The next job to start, or None (plan done, or the window is full)."""
        while not self.exhausted:
            if self._ordered and self._next - self._emit >= self._width:
                return None
            batch = next(self._plan, None)
            if batch is None:
                self.exhausted = True
                return None
            self._next += 1
            job = self._core.prepare(batch)
            if job.outcome is None:
                return job
            self._ready[batch.index] = job.outcome  # resumed: nothing to run
        return None

    def finish(self, job: Job, outcome: BatchOutcome[Any, Any]) -> None:
        """A job's final outcome (committed)."""
        self._ready[job.batch.index] = outcome

    def release(self) -> list[BatchOutcome[Any, Any]]:
        """Outcomes that may be handed out now."""
        out: list[BatchOutcome[Any, Any]] = []
        if self._ordered:
            while self._emit in self._ready:
                out.append(self._ready.pop(self._emit))
                self._emit += 1
        elif self._ready:
            out = [self._ready.pop(index) for index in sorted(self._ready)]
            self._emit = self._next
        return out

    def drain(self) -> list[BatchOutcome[Any, Any]]:
        """Everything finished, in plan order (when the run stops early)."""
        out = [self._ready.pop(index) for index in sorted(self._ready)]
        return out

"""The deciding core of a run, shared by the sync, threaded and asyncio drivers.

The core plans batches, loads what a resumed run already has, validates results,
commits each batch in one transaction before reporting it, decides retries, counts,
and calls hooks. It never sleeps and never waits: drivers do that, which keeps the
hard logic the same whatever carries it out.
"""

from __future__ import annotations

import logging
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from batchline.engine.bridge import resolve_awaitable
from batchline.engine.hooks import call_hook
from batchline.engine.items import ItemResults
from batchline.engine.keys import Key, key_function
from batchline.engine.options import RunOptions
from batchline.engine.outcome import (
    BatchFailure,
    BatchOutcome,
    ItemFailed,
    ItemNotRun,
    RunResult,
    RunStats,
    group_failures,
)
from batchline.engine.plan import Batch, Planner
from batchline.engine.progress import BatchProgress, percentage
from batchline.engine.session import RunSession, interruption_message, resume_id, run_label
from batchline.engine.signals import StopFlag, exit_130_when_uncaught
from batchline.errors import BatchResultError, BatchRunError, RunInterrupted, StateError, StopRun
from batchline.state.base import BatchCommit, ItemRecord, RunStatus, StateStore
from batchline.state.codec import unstorable
from batchline.state.memory import MemoryStateStore

log = logging.getLogger("batchline")
_MARKERS = frozenset({ItemFailed, ItemNotRun})


@dataclass(slots=True)
class Job:
    """One planned batch on its way through the run."""

    batch: Batch[Any]
    work: Batch[Any]
    loaded: dict[Key, ItemRecord] = field(default_factory=dict)
    attempt: int = 0
    started: float = 0.0
    wall_started: float = 0.0
    outcome: BatchOutcome[Any, Any] | None = None


def new_run_id(prefix: str = "run") -> str:
    """A fresh run id: ``{prefix}-YYYYmmdd-HHMMSS-{random}``, sortable by time, unique.

    ``prefix`` (a workflow's name, say) keeps letters, digits, ``-`` and ``_``; anything
    else (``/`` included, which separates child runs) becomes ``-``.
    """
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in prefix)[:40] or "run"
    return f"{safe}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


class RunCore:
    """State and decisions of one run; drivers call it from a single thread."""

    def __init__(self, items: Iterable[Any], options: RunOptions) -> None:
        self.options = options
        self.store: StateStore = options.store or MemoryStateStore(keep_results=False)
        self.run_id = options.run_id or new_run_id()
        self.key_function = key_function(options.key)
        self.planner: Planner[Any] = Planner(
            items,
            chunk_size=options.chunk_size,
            keys_of=self.key_function,
            skip_duplicates=options.duplicates == "skip",
        )
        self.stats = RunStats()
        self.failures: list[BatchFailure] = []
        self.stop = StopFlag()
        self.stopped_on_failure = False
        self.stopped_by: StopRun | None = None
        self.completed_items = 0
        self.failed_items = 0
        self.session: RunSession | None = None
        self._resuming = False
        self._started = 0.0
        self._display: Any = None

    # -- lifecycle -----------------------------------------------------------------

    def open(self) -> None:
        """Take the run's lease (creating or resuming it) and start the clock."""
        meta: dict[str, Any] = {"chunk_size": self.options.chunk_size}
        if isinstance(self.options.key, str):
            meta["key"] = self.options.key
        if self.planner.total_items is not None:  # lets a dashboard show progress mid-run
            meta["expected_items"] = self.planner.total_items
        if self.options.meta:
            meta.update(self.options.meta)
        self.session = RunSession(self.store, self.run_id, meta=meta).open()
        self._resuming = self.session.committed_items > 0
        if self._resuming:
            log.info(
                "resuming run %r: %d items already in %s",
                self.run_id,
                self.session.committed_items,
                self.store.location,
            )
        self._started = time.perf_counter()
        from batchline.observe.progress import auto_display  # noqa: PLC0415 - rich is heavy

        self._display = auto_display(self.options.progress, self.run_id)

    def close(self, error: BaseException | None = None) -> RunStatus:
        """Release the lease with the run's final status, and stop helpers."""
        self.stats.duration = time.perf_counter() - self._started
        self.stats.batches = self.planner.total_batches or 0
        self.stats.total = self.planner.planned_items
        self.stats.skipped = self.planner.duplicates
        status = self._status(error)
        if self._display is not None:
            self._display.close(self.stats)
        if self.session is not None:
            self.session.close(status, total_items=self.planner.total_items)
        return status

    def _status(self, error: BaseException | None) -> RunStatus:
        if self.stopped_on_failure or self.stopped_by is not None:
            return "stopped"
        if isinstance(error, KeyboardInterrupt) or self.stop:
            return "interrupted"
        if error is not None:
            return "failed"
        return "failed" if self.failures else "completed"

    @property
    def elapsed(self) -> float:
        """Seconds since the run opened."""
        return time.perf_counter() - self._started

    # -- planning --------------------------------------------------------------------

    def plan(self) -> Iterator[Batch[Any]]:
        """Batches in plan order (stops early when the run should stop)."""
        for batch in self.planner:
            if self.stop:
                return
            yield batch

    def prepare(self, batch: Batch[Any]) -> Job:
        """Make a job; on a resume, load committed items and keep only the rest to run."""
        if not self._resuming:
            return Job(batch, batch)
        records = self.store.lookup(self.run_id, batch.keys)
        if not records:
            return Job(batch, batch)
        keep_failed = not self.options.retry_failed
        loaded = {
            key: record for key, record in records.items() if record.status == "done" or keep_failed
        }
        if not loaded:
            return Job(batch, batch)
        todo = [i for i, key in enumerate(batch.keys) if key not in loaded]
        job = Job(batch, batch.subset(todo), loaded)
        if not todo:
            job.outcome = self._finish(job, [], (), attempts=0, duration=0.0, ran=False)
        return job

    # -- attempts ----------------------------------------------------------------------

    def begin_attempt(self, job: Job) -> None:
        """Count the attempt and fire ``on_batch_start``."""
        job.attempt += 1
        if job.attempt == 1:
            job.started = time.perf_counter()
            job.wall_started = time.time()
        else:
            self.stats.retries += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("batch %d starts (attempt %d)", job.batch.number, job.attempt)
        hook = self.options.on_batch_start
        if hook is None and self._display is None:
            return  # nobody is watching: skip building the progress object
        progress = self._progress(job.batch, job.attempt)
        if self._display is not None:
            self._display.start(progress)
        self._hook("on_batch_start", hook, progress)

    def succeed(self, job: Job, raw: Any) -> BatchOutcome[Any, Any]:
        """Validate and commit a batch's results.

        Results that do not line up with the batch fail the batch. With item-level
        outcomes (``ItemResults``, or any ``ItemFailed`` among the results), a result
        the store cannot keep (not JSON-serialisable, NaN, a set, an object) fails that
        item alone and its neighbours are committed, and in ``ItemResults`` an exception
        in place of a result fails its item; a plain list stays all-or-nothing.
        """
        try:
            results = normalize_results(job.work, raw)
            kinds = set(map(type, results))
            per_item = isinstance(raw, ItemResults) or ItemFailed in kinds or ItemNotRun in kinds
            if isinstance(raw, ItemResults):  # an exception in place of a result fails its item
                results = [
                    ItemFailed(r, job.attempt) if isinstance(r, BaseException) else r
                    for r in results
                ]
            try:
                if per_item:
                    return self._partial(job, results)
                self._write(self._commit(job, results, ()))
            except BatchResultError:  # the store refused a result: nothing was written
                isolated = self._isolate_unstorable(job, results) if per_item else None
                if isolated is None:
                    raise  # not one item's fault: the batch fails
                return self._partial(job, isolated)
        except BatchResultError as exc:
            outcome = self.fail(job, exc)
            assert isinstance(outcome, BatchOutcome)  # terminal errors are never retried
            return outcome
        return self._finish(
            job, results, (), job.attempt, time.perf_counter() - job.started, ran=True
        )

    def _isolate_unstorable(self, job: Job, results: list[Any]) -> list[Any] | None:
        """``results`` with each result a JSON store refuses replaced by ``ItemFailed``
        (None when no single result is at fault)."""
        keep = [i for i, result in enumerate(results) if type(result) is not ItemFailed]
        keys = job.work.keys
        bad = unstorable(job.batch.number, [keys[i] for i in keep], [results[i] for i in keep])
        if not bad:
            return None
        isolated = list(results)
        for index, error in bad.items():
            log.warning("%s", error)
            isolated[keep[index]] = ItemFailed(error, job.attempt)
        return isolated

    def _partial(self, job: Job, results: list[Any]) -> BatchOutcome[Any, Any]:
        """Commit the items that succeeded and record the ``ItemFailed`` ones, together."""
        work = job.work
        ok = [i for i, result in enumerate(results) if type(result) not in _MARKERS]
        bad = [i for i, result in enumerate(results) if type(result) is ItemFailed]
        pending = len(results) - len(ok) - len(bad)
        if pending:
            # Items a front door did not start because the run is stopping: neither
            # committed nor failed, so a resume runs them. The run stops (if it was not).
            self.stop.set()
        done = work.subset(ok)
        rows: list[tuple[Key, int, str, str, int]] = []
        grouped: list[tuple[Key, str, str, int]] = []
        for i in bad:
            marker: ItemFailed = results[i]
            rows.append(
                (
                    work.keys[i],
                    work.positions[i],
                    marker.error_type,
                    marker.message,
                    marker.attempts,
                )
            )
            grouped.append((work.keys[i], marker.error_type, marker.message, marker.attempts))
        kept = [results[i] for i in ok]
        commit = BatchCommit(
            batch_number=job.batch.number,
            keys=done.keys,
            positions=done.positions,
            results=kept,
            failed=rows,
            attempts=job.attempt,
            started_at=job.wall_started,
            duration=time.perf_counter() - job.started,
        )
        if ok or bad:
            self._write(commit)
        merged = [None if type(result) in _MARKERS else result for result in results]
        failures = group_failures(job.batch.number, grouped)
        return self._finish(
            job,
            merged,
            failures,
            job.attempt,
            time.perf_counter() - job.started,
            ran=True,
            pending=pending,
        )

    def fail(self, job: Job, error: BaseException) -> float | BatchOutcome[Any, Any]:
        """Decide about a failed attempt: seconds until the retry, or the final outcome."""
        if isinstance(error, StopRun):
            return self._stop_run(job, error)
        if not isinstance(error, Exception):
            # KeyboardInterrupt, SystemExit, GeneratorExit from the batch: stop the run as a
            # signal does; the batch is neither committed nor failed (a resume runs it).
            self.stop.interrupt(error)
            return 0.0
        delay = self.options.retry.delay_for(job.attempt, error)
        if delay is not None and self.stop:
            return 0.0  # stopping: the retry is abandoned and its items stay pending
        if delay is not None:
            log.info(
                "batch %d failed (attempt %d of %d): %s: %s; retrying in %.2fs",
                job.batch.number,
                job.attempt,
                self.options.retry.max_attempts,
                type(error).__name__,
                error,
                delay,
            )
            return delay
        failure = BatchFailure(
            batch_number=job.batch.number,
            keys=tuple(job.work.keys),
            error_type=type(error).__name__,
            message=str(error),
            attempts=job.attempt,
            traceback="".join(traceback.format_exception(error)),
        )
        log.warning(
            "batch %d failed after %d attempt(s): %s: %s",
            job.batch.number,
            job.attempt,
            failure.error_type,
            failure.message,
        )
        failed_rows = [
            (key, pos, failure.error_type, failure.message, job.attempt)
            for key, pos in zip(job.work.keys, job.work.positions, strict=True)
        ]
        self._write(self._commit(job, [], failed_rows))
        outcome = self._finish(
            job, [], (failure,), job.attempt, time.perf_counter() - job.started, ran=False
        )
        self._hook(
            "on_batch_error",
            self.options.on_batch_error,
            self._progress(job.batch, job.attempt),
            error,
        )
        if self.options.on_error == "stop":
            self.stopped_on_failure = True
            self.stop.set()
        return outcome

    def _stop_run(self, job: Job, error: StopRun) -> BatchOutcome[Any, Any]:
        """Stop starting batches; leave this batch's items uncommitted (a resume runs them)."""
        log.warning("batch %d asked the run to stop: %s", job.batch.number, error)
        self.stopped_by = error
        self.stop.set()
        failure = BatchFailure(
            job.batch.number, tuple(job.work.keys), type(error).__name__, str(error), job.attempt
        )
        return BatchOutcome(
            batch=job.batch,
            results=[None] * len(job.batch.items),
            failures=(failure,),
            attempts=job.attempt,
        )

    # -- bookkeeping -------------------------------------------------------------------

    def _write(self, commit: BatchCommit) -> None:
        if self.session is None:
            raise StateError(f"run {self.run_id!r} is not open; iterate the stream to start it")
        self.session.commit(commit)

    def _commit(
        self,
        job: Job,
        results: list[Any],
        failed: list[tuple[Key, int, str, str, int]] | tuple[()],
    ) -> BatchCommit:
        work = job.work
        return BatchCommit(
            batch_number=job.batch.number,
            keys=work.keys if results else (),
            positions=work.positions if results else (),
            results=results,
            failed=failed,
            attempts=job.attempt,
            started_at=job.wall_started,
            duration=time.perf_counter() - job.started,
        )

    def _finish(
        self,
        job: Job,
        results: list[Any],
        failures: tuple[BatchFailure, ...],
        attempts: int,
        duration: float,
        *,
        ran: bool,
        pending: int = 0,
    ) -> BatchOutcome[Any, Any]:
        """Merge loaded and fresh results, count, and fire ``on_batch_complete`` if ``ran``."""
        batch = job.batch
        loaded = job.loaded
        if not loaded:
            merged: list[Any] = results if results else [None] * len(batch.items)
        else:
            fresh = dict(zip(job.work.keys, results, strict=False)) if results else {}
            merged = []
            kept: list[tuple[Key, str, str, int]] = []
            for key in batch.keys:
                record = loaded.get(key)
                if record is None:
                    merged.append(fresh.get(key))
                elif record.status == "done":
                    merged.append(record.result)
                else:
                    merged.append(None)
                    kept.append(
                        (key, record.error_type or "", record.message or "", record.attempts)
                    )
            if kept:
                failures = (*group_failures(batch.number, kept), *failures)
        failed = sum(len(f.keys) for f in failures)
        size = len(batch.items)
        stats = self.stats
        stats.succeeded += size - failed - pending
        stats.failed += failed
        stats.resumed += len(loaded)
        self.completed_items += size - pending
        self.failed_items += failed
        if failures:
            self.failures.extend(failures)
        outcome: BatchOutcome[Any, Any] = BatchOutcome(
            batch=batch,
            results=merged,
            failures=failures,
            resumed=not job.work.items,
            resumed_items=len(loaded),
            attempts=attempts,
            duration=duration,
        )
        if log.isEnabledFor(logging.DEBUG):
            log.debug("batch %d done: %d ok, %d failed", batch.number, size - failed, failed)
        hook = self.options.on_batch_complete if ran else None
        if hook is None and self._display is None:
            return outcome
        progress = self._progress(batch, max(attempts, 1))
        if self._display is not None:
            self._display.complete(progress, outcome)
        self._hook("on_batch_complete", hook, progress, outcome)
        return outcome

    def _hook(self, name: str, hook: Any, *args: Any) -> None:
        """Call a user hook: exceptions are logged; an interrupt from it stops the run."""
        try:
            call_hook(name, hook, *args)
        except (KeyboardInterrupt, SystemExit, GeneratorExit) as exc:
            if self.stop.abandoned:
                raise
            log.warning("hook %s raised %s: stopping the run", name, type(exc).__name__)
            self.stop.interrupt(exc)

    def _progress(self, batch: Batch[Any], attempt: int) -> BatchProgress:
        total = self.planner.total_items
        done = self.completed_items
        return BatchProgress(
            run_id=self.run_id,
            batch_number=batch.number,
            total_batches=self.planner.total_batches if batch.total is None else batch.total,
            batch_size=len(batch.items),
            completed_items=done,
            total_items=total,
            percentage=percentage(done, total),
            elapsed=self.elapsed,
            is_first=batch.index == 0,
            is_last=batch.is_last,
            attempt=attempt,
            failed_items=self.failed_items,
        )

    # -- ending --------------------------------------------------------------------------

    def partial(self, results: list[Any] | None = None) -> RunResult[Any]:
        """The result so far (``results`` as collected by the caller, if any)."""
        return RunResult(self.run_id, results or [], list(self.failures), self.stats)

    def stop_error(self, results: list[Any] | None = None) -> BaseException | None:
        """The error to raise when the run ended early, or None when it ran to the end.

        A ``SystemExit`` raised by user code is raised again once the run is saved (the
        program exits as it asked); every other interrupt becomes ``RunInterrupted``.
        """
        cause = self.stop.cause
        if isinstance(cause, SystemExit) and self.stop.signal_number is None:
            return cause
        if self.stopped_on_failure:
            first = self.failures[0] if self.failures else None
            reason = f": {first.error_type}: {first.message}" if first else ""
            return BatchRunError(
                f"{run_label(self.run_id)} stopped after batch "
                f"{first.batch_number if first else '?'} failed{reason} "
                f'(on_error="stop"). Fix the cause and resume with the same store and '
                f"run_id={resume_id(self.run_id)!r} to run only the missing and failed items, "
                'or pass on_error="continue".',
                self.partial(results),
            )
        if self.stopped_by is not None:
            return BatchRunError(
                f"{run_label(self.run_id)} stopped: {self.stopped_by}. Nothing is lost: resume "
                f"with the same store and run_id={resume_id(self.run_id)!r} to run the "
                "remaining items.",
                self.partial(results),
            )
        if self.stop:
            return self.interrupted(results)
        return None

    def interrupted(self, results: list[Any] | None = None) -> RunInterrupted:
        """A ``RunInterrupted`` whose message says how to resume."""
        signum = self.stop.signal_number
        cause = self.stop.cause
        by = None
        if not signum and cause is not None:
            by = f"{type(cause).__name__} raised by a batch function or hook"
        abandoned = "the work in flight was abandoned; " if self.stop.abandoned else ""
        total = self.planner.total_items
        remaining = "the missing" if total is None else f"the {total - self.stats.succeeded}"
        if isinstance(self.store, MemoryStateStore):
            where = f"{abandoned}its state is in memory"
            resume = (
                "Resume in this process by passing the same MemoryStateStore and run_id (use "
                "SQLiteStateStore for runs that outlive the process)."
            )
        else:
            where = f"{abandoned}its state is saved in {self.store.location}"
            resume = (
                f"Resume with the same store and run_id={resume_id(self.run_id)!r} to run only "
                f"{remaining} unfinished items."
            )
        message = interruption_message(
            self.run_id,
            where=where,
            resume=resume,
            signal_number=signum,
            items_done=self.completed_items,
            cause=by,
        )
        exit_130_when_uncaught()
        return RunInterrupted(message, self.partial(results), signum)


def normalize_results(batch: Batch[Any], raw: Any) -> list[Any]:
    """One result per item of ``batch``, in order, from a list or a ``{key: result}`` dict."""
    keys = batch.keys
    if isinstance(raw, Mapping):
        missing = [key for key in keys if key not in raw]
        extra = len(raw) - (len(keys) - len(missing))
        if missing or extra:
            detail = f"no result for item {missing[0]!r}" if missing else "results for unknown keys"
            if missing and len(missing) > 1:
                detail += f" (and {len(missing) - 1} more)"
            raise BatchResultError(
                f"batch {batch.number}: the batch function returned a dict of {len(raw)} results "
                f"for {len(keys)} items: {detail}. Return {{key: result}} for exactly the keys "
                "in batch.keys, or a list aligned with batch.items."
            )
        return [raw[key] for key in keys]
    if isinstance(raw, list):
        results = raw
    elif isinstance(raw, tuple):
        results = list(raw)
    elif raw is None or isinstance(raw, str | bytes) or not isinstance(raw, Iterable):
        raise BatchResultError(
            f"batch {batch.number}: the batch function returned {type(raw).__name__}; expected "
            f"a list of {len(keys)} results (one per item of batch.items, in order) or a dict "
            "{key: result}."
        )
    else:
        results = list(raw)
    if len(results) != len(keys):
        at = min(len(results), len(keys))
        which = keys[at] if at < len(keys) else None
        detail = (
            f"item {which!r} (position {batch.positions[at]}) has no result"
            if which is not None
            else "there are more results than items"
        )
        raise BatchResultError(
            f"batch {batch.number}: the batch function returned {len(results)} results for "
            f"{len(keys)} items; {detail}. Return exactly one result per item, in batch.items "
            "order, or a dict {key: result}."
        )
    return results


def call_sync(fn: Callable[[Any], Any], batch: Batch[Any]) -> Any:
    """Call a batch function from synchronous code; an async function gets its own loop."""
    return resolve_awaitable(fn(batch))

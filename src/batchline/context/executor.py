"""Running task batches: each batch one handler call inside an implementation context.

``execute_all`` and ``iter_all`` run on the engine: concurrency, retries, durable state
and streaming. Dependency levels run one after another, so a batch never starts before
the batches it depends on are done. A durable run (``state`` + ``run_id``) resumes by
*task id*: every task whose batch was committed is done, whatever plan it was in, so a
resumed run never repeats a task and never skips one, even when the plan changed.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import groupby
from typing import Any

from batchline.context.errors import ContextWindowArrayError
from batchline.context.implementation import ImplementationContext, ImplementationLLMContext
from batchline.context.store import CentralContextStore
from batchline.context.tasks import TaskBatch, TaskSpec
from batchline.engine import (
    Batch,
    RetryPolicy,
    RunSession,
    child_run_id,
    is_child_of,
    stream_batches,
)
from batchline.errors import BatchResultError, ConfigurationError
from batchline.state import MemoryStateStore, StateStore

Handler = Callable[[ImplementationContext, list[TaskSpec]], Mapping[str, Any]]
BatchHandler = Handler
"""The original system's name for a handler."""


class BatchHandlerError(ContextWindowArrayError):
    """A handler failed where its exception object could not be kept (another process).

    Attributes:
        error_type: the class name of the original exception.
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type

    def __reduce__(self) -> tuple[Any, ...]:
        text = str(self)
        return (type(self), (self.error_type, text.split(": ", 1)[-1]))


@dataclass
class BatchResult:
    """What one batch produced.

    Attributes:
        batch_id: the batch.
        task_results: ``{task_id: result}`` as the handler returned it.
        success: whether the handler call succeeded.
        error: the exception when it failed (``error_message`` has its text).
        duration_ms: time spent, retries included (0 for a resumed batch).
        entry_count: entries in the context.
        total_tokens: their tokens.
        resumed: every task's result came from the state of an earlier run.
    """

    batch_id: str
    task_results: dict[str, Any] = field(default_factory=dict)
    success: bool = True
    error: BaseException | None = None
    duration_ms: float = 0.0
    entry_count: int = 0
    total_tokens: int = 0
    resumed: bool = False

    @property
    def error_message(self) -> str | None:
        """``"ValueError: the text"`` when the batch failed, else None."""
        if self.error is None:
            return None
        if isinstance(self.error, BatchHandlerError):
            return str(self.error)
        return f"{type(self.error).__name__}: {self.error}"


class BatchExecutor:
    """Executes task batches against a store.

    Args:
        store: the context store.
        max_entries: the implementation context's entry bound.
        max_tokens: its token bound (None: none).
        max_concurrency: batches in flight (within a dependency level).
        retry: a ``RetryPolicy`` for failing batches (None: no retries).
        state: a state store making ``execute_all`` durable and resumable.
        run_id: the run's id in ``state``.
        strict: every entry of a batch must exist and have its content
            (``request_strict``); by default, as in the original system, unknown entries
            are skipped (``context.missing_ids`` lists them) and compressed ones come as
            their summaries.
    """

    def __init__(
        self,
        store: CentralContextStore,
        max_entries: int = 200,
        *,
        max_tokens: int | None = None,
        max_concurrency: int = 1,
        retry: RetryPolicy | None = None,
        state: StateStore | None = None,
        run_id: str | None = None,
        strict: bool = False,
    ) -> None:
        self.store = store
        self.impl_context = ImplementationLLMContext(store, max_entries, max_tokens)
        self.max_concurrency = max_concurrency
        self.retry = retry or RetryPolicy.none()
        self.state = state
        self.run_id = run_id
        self.strict = strict

    def execute_batch(self, batch: TaskBatch, handler: Handler) -> BatchResult:
        """Run ``handler(context, tasks)`` in the batch's context; handler errors are returned."""
        started = time.perf_counter()
        try:
            results, entries, tokens = self._call(batch, handler)
        except Exception as exc:
            return BatchResult(
                batch.batch_id,
                {},
                False,
                exc,
                (time.perf_counter() - started) * 1000,
                batch.entry_count,
                batch.total_tokens,
            )
        return BatchResult(
            batch.batch_id,
            results,
            True,
            None,
            (time.perf_counter() - started) * 1000,
            entries,
            tokens,
        )

    def _call(self, batch: TaskBatch, handler: Handler) -> tuple[dict[str, Any], int, int]:
        ids = batch.unique_entry_ids
        request = (
            self.impl_context.request_strict(ids, order=ids)
            if self.strict
            else self.impl_context.request(ids)
        )
        with request as context:
            raw = handler(context, list(batch.tasks))
            if not isinstance(raw, Mapping):
                raise BatchResultError(
                    f"{batch.batch_id}: the handler returned {type(raw).__name__}; expected a "
                    "dict {task_id: result}"
                )
            return dict(raw), context.entry_count, context.total_tokens

    def iter_all(
        self,
        batches: Sequence[TaskBatch],
        handler: Handler,
        continue_on_error: bool = True,
    ) -> Iterator[BatchResult]:
        """Run every batch on the engine, yielding each result as its batch finishes."""
        for _, result in self._run(batches, handler, continue_on_error):
            yield result

    def _run(
        self, batches: Sequence[TaskBatch], handler: Handler, continue_on_error: bool
    ) -> Iterator[tuple[int, BatchResult]]:
        if self.state is None or not self.run_id:
            yield from self._levels(batches, handler, continue_on_error, durable=False)
            return
        _check_unique_tasks(batches)
        # A durable run holds a session; each dependency level is a child run of it.
        with RunSession(self.state, self.run_id, meta={"kind": "context"}) as session:
            failed = False
            for position, result in self._levels(batches, handler, continue_on_error, durable=True):
                failed = failed or not result.success
                yield position, result
            if failed:
                session.final_status = "failed"

    def _levels(
        self,
        batches: Sequence[TaskBatch],
        handler: Handler,
        continue_on_error: bool,
        *,
        durable: bool,
    ) -> Iterator[tuple[int, BatchResult]]:
        done = self._committed_tasks() if durable else {}
        numbered = list(enumerate(batches))
        levels = [list(group) for _, group in groupby(numbered, key=lambda pair: pair[1].level)]
        for number, level in enumerate(levels):
            work: list[_Work] = []
            for position, batch in level:
                remaining = [task for task in batch.tasks if task.id not in done]
                if not remaining:
                    yield position, self._resumed(batch, done)
                    continue
                part = batch if len(remaining) == len(batch.tasks) else _subset(batch, remaining)
                # Durable runs key work by task ids (plan-independent); others by position,
                # so the same batch may be given twice, as in the original.
                key = _task_key(part) if durable else f"{position}:{batch.batch_id}"
                work.append(_Work(position, batch, part, key))
            if not work:
                continue
            errors: dict[str, BaseException] = {}
            stream = stream_batches(
                work,
                _EngineCall(self, handler, errors),
                chunk_size=1,
                key=lambda item: item.key,
                store=self.state or MemoryStateStore(keep_results=False, require_json=False),
                run_id=child_run_id(self.run_id, f"level-{number}") if self.run_id else None,
                max_concurrency=self.max_concurrency,
                retry=self.retry,
                on_error="continue",
                ordered=False,
                handle_signals=False,
            )
            failed = False
            for outcome in stream:
                (item,) = outcome.batch.items
                batch, part = item.batch, item.part
                earlier = {t.id: done[t.id] for t in batch.tasks if t.id in done}
                if outcome.failures:
                    failure = outcome.failures[0]
                    failed = True
                    error = errors.get(item.key) or BatchHandlerError(
                        failure.error_type, failure.message
                    )
                    yield (
                        item.position,
                        BatchResult(
                            batch.batch_id,
                            earlier,
                            False,
                            error,
                            outcome.duration * 1000,
                            part.entry_count,
                            part.total_tokens,
                        ),
                    )
                    if not continue_on_error:
                        close = getattr(stream, "close", None)
                        if close is not None:
                            close()
                        return
                    continue
                payload: dict[str, Any] = outcome.results[0] or {}
                yield (
                    item.position,
                    BatchResult(
                        batch.batch_id,
                        {**earlier, **payload["results"]},
                        True,
                        None,
                        0.0 if outcome.resumed else outcome.duration * 1000,
                        int(payload["entries"]),
                        int(payload["tokens"]),
                        outcome.resumed and len(part.tasks) == len(batch.tasks),
                    ),
                )
            if failed and not continue_on_error:
                return

    def _committed_tasks(self) -> dict[str, Any]:
        """``{task_id: result}`` of every task committed by earlier runs of ``run_id``."""
        if self.state is None or not self.run_id:
            return {}
        done: dict[str, Any] = {}
        for run in self.state.list_runs():
            if not is_child_of(run.run_id, self.run_id):
                continue
            for record in self.state.iter_items(run.run_id, status="done"):
                payload = record.result if isinstance(record.result, Mapping) else {}
                results = payload.get("results") or {}
                for task_id in payload.get("tasks") or results:
                    done[task_id] = results.get(task_id)
        return done

    def _resumed(self, batch: TaskBatch, done: Mapping[str, Any]) -> BatchResult:
        return BatchResult(
            batch.batch_id,
            {task.id: done[task.id] for task in batch.tasks},
            True,
            None,
            0.0,
            batch.entry_count,
            batch.total_tokens,
            True,
        )

    def execute_all(
        self,
        batches: Sequence[TaskBatch],
        handler: Handler,
        continue_on_error: bool = True,
    ) -> list[BatchResult]:
        """Run every batch; stop after the first failure when ``continue_on_error`` is False.

        Results come in the batches' order.
        """
        ran = sorted(self._run(batches, handler, continue_on_error), key=lambda pair: pair[0])
        return [result for _, result in ran]

    @staticmethod
    def get_all_task_results(results: Sequence[BatchResult]) -> dict[str, Any]:
        """Every task's result, merged over the batches (a failed batch adds none)."""
        merged: dict[str, Any] = {}
        for result in results:
            merged.update(result.task_results)
        return merged


@dataclass(frozen=True)
class _Work:
    """One engine item: a batch (or the part of it still to run) and its key."""

    position: int
    batch: TaskBatch
    part: TaskBatch
    key: str


class _EngineCall:
    """The engine's batch function: one handler call; keeps the exception object."""

    def __init__(
        self, executor: BatchExecutor, handler: Handler, errors: dict[str, BaseException]
    ) -> None:
        self.executor = executor
        self.handler = handler
        self.errors = errors
        self.lock = threading.Lock()

    def __call__(self, engine_batch: Batch[_Work]) -> list[Any]:
        (item,) = engine_batch.items
        part = item.part
        try:
            results, entries, tokens = self.executor._call(part, self.handler)
        except Exception as exc:
            with self.lock:
                self.errors[item.key] = exc
            raise
        return [{"tasks": part.task_ids, "results": results, "entries": entries, "tokens": tokens}]


def _task_key(batch: TaskBatch) -> str:
    """The engine key of a batch: its task ids (sorted), hashed when long."""
    ids = json.dumps(sorted(batch.task_ids), separators=(",", ":"))
    if len(ids) <= 120:
        return f"tasks:{ids}"
    return "tasks#" + hashlib.sha256(ids.encode()).hexdigest()[:32]


def _check_unique_tasks(batches: Sequence[TaskBatch]) -> None:
    seen: dict[str, str] = {}
    for batch in batches:
        for task in batch.tasks:
            if task.id in seen:
                raise ConfigurationError(
                    f"task `{task.id}` is in batches `{seen[task.id]}` and `{batch.batch_id}`: a "
                    "durable run (state + run_id) keys its work by task id, so every task may "
                    "be in one batch only. Plan with TaskBatcher, or drop the repeat."
                )
            seen[task.id] = batch.batch_id


def _subset(batch: TaskBatch, tasks: list[TaskSpec]) -> TaskBatch:
    """The batch restricted to ``tasks``: their entries only, in the batch's order."""
    needed = {e for task in tasks for e in task.required_entry_ids}
    entries = [e for e in batch.unique_entry_ids if e in needed]
    return replace(batch, tasks=tasks, unique_entry_ids=entries)

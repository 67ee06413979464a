"""Running task batches: each batch one handler call inside a bounded implementation context.

``execute_all`` and ``iter_all`` run on the engine: concurrency, retries, durable
state (resume skips batches already done) and streaming. Dependency levels run one
after another, so a batch never starts before the batches it depends on are done.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from batchline.context.batching import TaskBatch, TaskSpec
from batchline.context.store import CentralContextStore
from batchline.context.views import ImplementationContext, ImplementationLLMContext
from batchline.engine import Batch, RetryPolicy, RunSession, child_run_id, stream_batches
from batchline.errors import BatchResultError
from batchline.state import MemoryStateStore, StateStore

Handler = Callable[[ImplementationContext, list[TaskSpec]], Mapping[str, Any]]


@dataclass(frozen=True)
class BatchResult:
    """What one batch produced."""

    batch_id: str
    task_results: dict[str, Any]
    success: bool
    error: str | None = None
    duration_ms: float = 0.0
    entry_count: int = 0
    total_tokens: int = 0
    resumed: bool = False


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
    ) -> None:
        self.store = store
        self.impl_context = ImplementationLLMContext(store, max_entries, max_tokens)
        self.max_concurrency = max_concurrency
        self.retry = retry or RetryPolicy.none()
        self.state = state
        self.run_id = run_id

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
                f"{type(exc).__name__}: {exc}",
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
        with self.impl_context.request(
            batch.unique_entry_ids, order=batch.unique_entry_ids
        ) as context:
            raw = handler(context, list(batch.tasks))
            if not isinstance(raw, Mapping):
                raise BatchResultError(
                    f"{batch.batch_id}: the handler returned {type(raw).__name__}; expected a "
                    "dict {task_id: result}"
                )
            results = dict(raw)
            return results, context.entry_count, context.total_tokens

    def iter_all(
        self,
        batches: Sequence[TaskBatch],
        handler: Handler,
        continue_on_error: bool = True,
    ) -> Iterator[BatchResult]:
        """Run every batch on the engine, yielding each result as its batch finishes."""
        if self.state is None or not self.run_id:
            yield from self._iter_levels(batches, handler, continue_on_error)
            return
        # A durable run holds a session; each dependency level is a child run of it.
        with RunSession(self.state, self.run_id, meta={"kind": "context"}) as session:
            failed = False
            for result in self._iter_levels(batches, handler, continue_on_error):
                failed = failed or not result.success
                yield result
            if failed:
                session.final_status = "failed"

    def _iter_levels(
        self, batches: Sequence[TaskBatch], handler: Handler, continue_on_error: bool
    ) -> Iterator[BatchResult]:
        levels = [list(group) for _, group in groupby(batches, key=lambda b: b.level)]
        for number, level in enumerate(levels):
            failed = False

            def run(engine_batch: Batch[TaskBatch]) -> list[Any]:
                (task_batch,) = engine_batch.items
                results, entries, tokens = self._call(task_batch, handler)
                return [{"results": results, "entries": entries, "tokens": tokens}]

            run_id = child_run_id(self.run_id, f"level-{number}") if self.run_id else None
            started = {b.batch_id: time.perf_counter() for b in level}
            stream = stream_batches(
                level,
                run,
                chunk_size=1,
                key=lambda b: b.batch_id,
                store=self.state or MemoryStateStore(keep_results=False, require_json=False),
                run_id=run_id,
                max_concurrency=self.max_concurrency,
                retry=self.retry,
                on_error="continue",
                ordered=False,
                handle_signals=False,
            )
            for outcome in stream:
                (task_batch,) = outcome.batch.items
                elapsed = (time.perf_counter() - started[task_batch.batch_id]) * 1000
                if outcome.failures:
                    failure = outcome.failures[0]
                    failed = True
                    yield BatchResult(
                        task_batch.batch_id,
                        {},
                        False,
                        f"{failure.error_type}: {failure.message}",
                        outcome.duration * 1000,
                        task_batch.entry_count,
                        task_batch.total_tokens,
                    )
                    if not continue_on_error:
                        close = getattr(stream, "close", None)
                        if close is not None:
                            close()
                        return
                    continue
                payload: dict[str, Any] = outcome.results[0] or {}
                yield BatchResult(
                    task_batch.batch_id,
                    dict(payload["results"]),
                    True,
                    None,
                    outcome.duration * 1000 if not outcome.resumed else elapsed,
                    int(payload["entries"]),
                    int(payload["tokens"]),
                    outcome.resumed,
                )
            if failed and not continue_on_error:
                return

    def execute_all(
        self,
        batches: Sequence[TaskBatch],
        handler: Handler,
        continue_on_error: bool = True,
    ) -> list[BatchResult]:
        """Run every batch; stop after the first failure when ``continue_on_error`` is False.

        Results come in the batches' order.
        """
        results = {r.batch_id: r for r in self.iter_all(batches, handler, continue_on_error)}
        return [results[b.batch_id] for b in batches if b.batch_id in results]

    @staticmethod
    def get_all_task_results(results: Sequence[BatchResult]) -> dict[str, Any]:
        """Every task's result, merged over the successful batches."""
        merged: dict[str, Any] = {}
        for result in results:
            if result.success:
                merged.update(result.task_results)
        return merged

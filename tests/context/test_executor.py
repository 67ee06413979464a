"""The batch executor: handler calls in bounded contexts, on the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchline import RetryPolicy, SQLiteStateStore
from batchline.context import (
    BatchExecutor,
    CentralContextStore,
    ContextEntry,
    EntryType,
    ImplementationContext,
    TaskBatcher,
    TaskSpec,
)


def setup(n: int = 12) -> tuple[CentralContextStore, list[TaskSpec]]:
    store = CentralContextStore()
    for i in range(6):
        store.add(ContextEntry(f"e{i}", EntryType.FILE, f"f{i}.py", f"code {i}", f"file {i}"))
    tasks = [TaskSpec(f"t{i}", f"do {i}", [f"e{i % 6}", f"e{(i + 1) % 6}"]) for i in range(n)]
    return store, tasks


def answer(context: ImplementationContext, tasks: list[TaskSpec]) -> dict[str, Any]:
    return {t.id: {"entries": list(context.entry_ids)} for t in tasks}


def test_execute_batch_success_and_failure_release_the_context() -> None:
    store, tasks = setup()
    executor = BatchExecutor(store, max_entries=3)
    batch = TaskBatcher(3).create_batches(tasks)[0]
    result = executor.execute_batch(batch, answer)
    assert result.success
    assert set(result.task_results) == set(batch.task_ids)
    assert result.entry_count == batch.entry_count
    assert result.total_tokens > 0
    assert result.duration_ms >= 0

    def broken(context: ImplementationContext, tasks: list[TaskSpec]) -> dict[str, Any]:
        raise ValueError("model said no")

    failed = executor.execute_batch(batch, broken)
    assert not failed.success
    assert isinstance(failed.error, ValueError)  # the exception object, as in the original
    assert failed.error_message == "ValueError: model said no"
    assert not any(executor.impl_context.is_in_use(e) for e in batch.unique_entry_ids)


def test_execute_all_merges_and_stops_on_first_failure_when_asked() -> None:
    store, tasks = setup()
    batches = TaskBatcher(3).create_batches(tasks)
    executor = BatchExecutor(store, max_entries=3)
    results = executor.execute_all(batches, answer)
    assert all(r.success for r in results)
    merged = executor.get_all_task_results(results)
    assert sorted(merged) == sorted(t.id for t in tasks)
    calls: list[str] = []

    def fail_second(context: ImplementationContext, ts: list[TaskSpec]) -> dict[str, Any]:
        calls.append(ts[0].id)
        if len(calls) == 2:
            raise RuntimeError("stop")
        return answer(context, ts)

    partial = executor.execute_all(batches, fail_second, continue_on_error=False)
    assert len(partial) == 2
    assert not partial[-1].success
    assert len(calls) == 2


def test_retries_concurrency_and_streaming() -> None:
    store, tasks = setup(30)
    batches = TaskBatcher(3).create_batches(tasks)
    attempts: dict[str, int] = {}

    def flaky(context: ImplementationContext, ts: list[TaskSpec]) -> dict[str, Any]:
        attempts[ts[0].id] = attempts.get(ts[0].id, 0) + 1
        if attempts[ts[0].id] == 1:
            raise TimeoutError("slow")
        return answer(context, ts)

    executor = BatchExecutor(
        store, max_entries=3, max_concurrency=4, retry=RetryPolicy(max_attempts=2, backoff=0)
    )
    streamed = list(executor.iter_all(batches, flaky))
    assert len(streamed) == len(batches)
    assert all(r.success for r in streamed)


def test_dependency_levels_run_in_order() -> None:
    store, _ = setup()
    tasks = [TaskSpec("a", "", ["e0"]), TaskSpec("b", "", ["e1"], depends_on=["a"])]
    order: list[str] = []

    def record(context: ImplementationContext, ts: list[TaskSpec]) -> dict[str, Any]:
        order.extend(t.id for t in ts)
        return {t.id: 1 for t in ts}

    BatchExecutor(store, max_concurrency=4).execute_all(
        TaskBatcher(10).create_batches(tasks), record
    )
    assert order == ["a", "b"]


def test_durable_run_resumes_without_calling_done_batches(tmp_path: Path) -> None:
    store, tasks = setup()
    batches = TaskBatcher(3).create_batches(tasks)
    state = SQLiteStateStore(tmp_path / "ctx-state.db")
    calls: list[str] = []

    def fails_once(context: ImplementationContext, ts: list[TaskSpec]) -> dict[str, Any]:
        calls.append(ts[0].id)
        if len(calls) == 2:
            raise RuntimeError("crash")
        return answer(context, ts)

    first = BatchExecutor(store, max_entries=3, state=state, run_id="ctx").execute_all(
        batches, fails_once
    )
    assert sum(not r.success for r in first) == 1
    calls.clear()
    second = BatchExecutor(store, max_entries=3, state=state, run_id="ctx").execute_all(
        batches, answer
    )
    assert all(r.success for r in second)
    assert sum(r.resumed for r in second) == len(batches) - 1

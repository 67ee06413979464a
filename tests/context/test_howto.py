"""The original system's how-to ("How to Use the Context Window Array"), step by step,
with batchline's names: what a user who follows it gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from batchline import SQLiteStateStore
from batchline.context import (
    BatchExecutor,
    BatchResult,
    CentralContextStore,
    ContextEntry,
    EntryType,
    ImplementationContext,
    ImplementationLLMContext,
    TaskBatcher,
    TaskSpec,
    WorkingLLMContext,
)


def test_the_how_to_flow(tmp_path: Path) -> None:
    # 2-3. A store, a file entry, a command result without its command, a task with a TTL.
    store = CentralContextStore(tmp_path / "context.db")
    store.add(
        ContextEntry(
            id="ctx_001",
            entry_type=EntryType.FILE,
            source="src/auth.py",
            content="def authenticate(user, password): ...",
            summary="Authentication function that verifies user credentials",
        )
    )
    result_id = store.add_command_result(
        command="git status",
        result="On branch main\nnothing to commit",
        summary="Git status shows clean working tree",
        keep_command=False,
    )
    store.add(
        ContextEntry(
            id="ctx_task_001",
            entry_type=EntryType.TASK,
            source="orchestrator",
            content="Implement user login flow",
            summary="Login implementation task",
            ttl=5,
        )
    )
    assert len(store) == 3

    # 4. Query: by id, by type, and search with a minimum score that means something.
    entry = store.get("ctx_001")
    assert entry is not None
    assert entry.source == "src/auth.py"
    assert [e.id for e in store.get_by_type(EntryType.FILE)] == ["ctx_001"]
    results = store.search(query="user authentication login", max_results=5, min_score=0.1)
    assert {r.entry_id for r in results} == {"ctx_001", "ctx_task_001"}
    assert all(0.1 <= r.score <= 1 for r in results)
    assert all(r.content is None and r.summary for r in results)

    # 5. The working LLM's view: summaries only.
    working_ctx = WorkingLLMContext(store)
    context = working_ctx.build()
    assert context.total_count == 3
    assert context.summary_tokens > 0
    assert all(view.content is None for view in context.entries)
    assert [r.id for r in working_ctx.search("git status")] == [result_id]
    assert working_ctx.search("database connection") == []

    # 6. The implementation view: full content, unknown ids skipped and reported.
    impl_ctx = ImplementationLLMContext(store, max_entries=200)
    entry_ids = ["ctx_001", "ctx_002", "ctx_003"]
    assert impl_ctx.validate_bounds(entry_ids)
    built = impl_ctx.build(entry_ids)
    assert built.entry_count == 1
    assert built.missing_ids == ["ctx_002", "ctx_003"]
    assert built.total_tokens > 0
    assert built.entries[0].content == "def authenticate(user, password): ..."

    # 7. The `with` form releases on exceptions too.
    try:
        with impl_ctx.request(["ctx_001", "ctx_002"]) as held:
            assert held.entry_count == 1
            assert impl_ctx.is_in_use("ctx_001")
            raise RuntimeError("the implementation call failed")
    except RuntimeError:
        pass
    assert not impl_ctx.is_in_use("ctx_001")

    # 8. Batching with priorities: shared entries are loaded once.
    tasks = [
        TaskSpec("task_001", "Implement login", ["ctx_auth", "ctx_db", "ctx_session"], 1),
        TaskSpec("task_002", "Add logout", ["ctx_auth", "ctx_session"], 2),
        TaskSpec("task_003", "Fix database query", ["ctx_db", "ctx_query"], 1),
    ]
    batcher = TaskBatcher(max_entries_per_batch=200)
    batches = batcher.create_batches(tasks, sort_by_priority=True)
    assert len(batches) == 1
    assert batches[0].batch_id == "batch_0001"
    assert batches[0].entry_count == 4
    assert batches[0].task_ids[0] == "task_002"  # highest priority first

    # 9. Execute: the context's entries are the ones in the store; the run is durable.
    for name in ("ctx_auth", "ctx_db", "ctx_session", "ctx_query"):
        store.add(ContextEntry(name, EntryType.FILE, f"src/{name}.py", f"# {name}", name))

    def my_handler(context: ImplementationContext, tasks: list[TaskSpec]) -> dict[str, Any]:
        return {task.id: f"{task.description}: {len(context.entries)} entries" for task in tasks}

    state = SQLiteStateStore(tmp_path / "runs.db")
    executor = BatchExecutor(store, max_entries=200, state=state, run_id="how-to")
    batch_results = executor.execute_all(batches, my_handler, continue_on_error=True)
    assert all(isinstance(r, BatchResult) and r.success for r in batch_results)
    all_results = executor.get_all_task_results(batch_results)
    assert all_results == {
        "task_001": "Implement login: 4 entries",
        "task_002": "Add logout: 4 entries",
        "task_003": "Fix database query: 4 entries",
    }
    again = BatchExecutor(store, state=state, run_id="how-to").execute_all(batches, my_handler)
    assert [r.resumed for r in again] == [True]
    assert executor.get_all_task_results(again) == all_results

    # 10. Lifecycle: a turn, compression, entries about to expire.
    turn_stats = store.process_turn()
    assert turn_stats == {"decremented": 1, "removed": 0}
    assert store.compress("ctx_001") is True
    assert store.compress_multiple(["ctx_002", "ctx_003"]) == 0  # not in the store
    assert [e.id for e in store.get_expiring_soon(threshold=4)] == ["ctx_task_001"]

    # Pattern: compress the oldest half by hand; the store keeps (and persists) the change.
    entries = store.get_uncompressed()
    entries.sort(key=lambda e: e.created_at)
    for old in entries[: len(entries) // 2]:
        if old.can_compress():
            old.compress()
    compressed = {e.id for e in store.get_compressed()}
    assert compressed == {"ctx_001"} | {e.id for e in entries[: len(entries) // 2]}
    store.close()
    reopened = CentralContextStore(tmp_path / "context.db")
    assert {e.id for e in reopened.get_compressed()} == compressed
    assert [h.entry_id for h in reopened.search("password")] == []  # content gone
    assert [h.entry_id for h in reopened.search("credentials")] == ["ctx_001"]  # summary stays

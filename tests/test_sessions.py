"""Every front door drives a durable run through the engine's session: the parent run is
recorded with its final status and its stages are child runs by one naming convention."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchline import SQLiteStateStore
from batchline.context import (
    BatchExecutor,
    CentralContextStore,
    ContextEntry,
    EntryType,
    ImplementationContext,
    TaskBatcher,
    TaskSpec,
)
from batchline.engine import is_child_of, split_run_id
from batchline.pipeline import Agent, Pipeline


class Double(Agent):
    requires = ("values",)
    provides = ("values",)

    def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
        if 13 in context["values"]:
            raise ValueError("13 is unlucky")
        return {"values": [value * 2 for value in context["values"]]}


def _runs(store: SQLiteStateStore, parent: str) -> dict[str, str]:
    return {
        info.run_id: info.status
        for info in store.list_runs()
        if info.run_id == parent or is_child_of(info.run_id, parent)
    }


def test_a_durable_pipeline_is_a_run_with_scopes_as_child_runs(db_path: Path) -> None:
    store = SQLiteStateStore(db_path)
    flow = Double.triggers_batching(chunk_size=2, over="values")
    result = Pipeline(flow, store=store, run_id="nov").run({"values": [1, 2, 3, 4]})
    assert result.context["values"] == [2, 4, 6, 8]
    runs = _runs(store, "nov")
    assert runs.pop("nov") == "completed"
    ((scope_run, status),) = runs.items()
    assert split_run_id(scope_run)[0] == "nov"
    assert status == "completed"

    failing = Pipeline(flow, store=store, run_id="dec").run({"values": [1, 13, 3, 4]})
    assert not failing.ok
    assert store.get_run("dec").status == "failed"  # a batch failed: the run says so
    store.close()


def test_a_durable_context_run_is_a_run_with_levels_as_child_runs(db_path: Path) -> None:
    contexts = CentralContextStore()
    for i in range(4):
        contexts.add(ContextEntry(f"e{i}", EntryType.FILE, f"f{i}.py", f"code {i}", f"file {i}"))
    tasks = [TaskSpec(f"t{i}", f"do {i}", [f"e{i % 4}"]) for i in range(6)]
    batches = TaskBatcher(2).create_batches(tasks)

    def answer(context: ImplementationContext, specs: list[TaskSpec]) -> dict[str, Any]:
        return {spec.id: len(context.entry_ids) for spec in specs}

    state = SQLiteStateStore(db_path)
    executor = BatchExecutor(contexts, max_entries=4, state=state, run_id="refactor")
    results = executor.execute_all(batches, answer)
    assert all(result.success for result in results)
    runs = _runs(state, "refactor")
    assert runs.pop("refactor") == "completed"
    assert runs
    assert all(split_run_id(run)[0] == "refactor" for run in runs)
    assert set(runs.values()) == {"completed"}
    state.close()

"""Plans that do not depend on the process, and durable runs that resume by task id."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

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

WORKER = str(Path(__file__).resolve().parents[1] / "cases" / "context_crash_worker.py")

PLAN = """
import json, random
from batchline.context import TaskBatcher, TaskSpec
rng = random.Random(5)
tasks = []
for i in range(600):
    module = rng.randrange(30)
    entries = [f"m{module}/{k}" for k in rng.sample(range(40), rng.randint(3, 12))]
    entries += [f"shared/{k}" for k in rng.sample(range(15), rng.randint(1, 6))]
    deps = [f"t{rng.randrange(i)}"] if i > 500 else []
    tasks.append(TaskSpec(f"t{i}", "edit", entries, rng.randint(0, 3), deps))
counts = {e: 1 + len(e) % 7 for t in tasks for e in t.required_entry_ids}
for batcher, by_priority in ((TaskBatcher(60), False),
                             (TaskBatcher(80, 300, token_counts=counts), True)):
    batches = batcher.create_batches(tasks, sort_by_priority=by_priority)
    print(json.dumps([[b.batch_id, b.level, b.task_ids, b.unique_entry_ids] for b in batches]))
"""


def test_plans_are_the_same_in_every_process(python: str) -> None:
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [python, "-c", PLAN], env=env, capture_output=True, text=True, check=True, timeout=120
        )
        outputs.add(done.stdout)
    assert len(outputs) == 1
    plans = [json.loads(line) for line in outputs.pop().splitlines()]
    assert len(plans) == 2
    assert all(len(plan) > 5 for plan in plans)


def _setup() -> tuple[CentralContextStore, list[TaskSpec]]:
    store = CentralContextStore()
    for i in range(12):
        store.add(ContextEntry(f"e{i}", EntryType.FILE, f"f{i}.py", f"code {i}", f"file {i}"))
    tasks = [
        TaskSpec(f"t{i}", f"do {i}", [f"e{i % 12}", f"e{(i * 5 + 1) % 12}"]) for i in range(40)
    ]
    return store, tasks


def test_a_resume_with_another_plan_runs_every_task_exactly_once(tmp_path: Path) -> None:
    store, tasks = _setup()
    state = SQLiteStateStore(tmp_path / "state.db")
    runs: Counter[str] = Counter()
    calls = 0

    def flaky(context: ImplementationContext, batch: list[TaskSpec]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls % 3 == 0:
            raise RuntimeError("the model timed out")
        runs.update(task.id for task in batch)
        return {task.id: task.id.upper() for task in batch}

    first_plan = TaskBatcher(4).create_batches(tasks)
    first = BatchExecutor(store, max_entries=4, state=state, run_id="r").execute_all(
        first_plan, flaky
    )
    assert any(not r.success for r in first)
    assert any(r.success for r in first)
    committed = set(BatchExecutor.get_all_task_results(first))

    def steady(context: ImplementationContext, batch: list[TaskSpec]) -> dict[str, Any]:
        runs.update(task.id for task in batch)
        return {task.id: task.id.upper() for task in batch}

    second_plan = TaskBatcher(6).create_batches(list(reversed(tasks)))  # another plan
    assert [b.task_ids for b in second_plan] != [b.task_ids for b in first_plan]
    second = BatchExecutor(store, max_entries=6, state=state, run_id="r").execute_all(
        second_plan, steady
    )
    assert all(r.success for r in second)
    answers = BatchExecutor.get_all_task_results(second)
    assert answers == {t.id: t.id.upper() for t in tasks}  # nothing skipped
    assert set(runs) == {t.id for t in tasks}
    assert all(count == 1 for count in runs.values())  # nothing repeated
    assert any(r.resumed for r in second)
    for result in second:  # a batch made only of committed tasks is resumed, not run
        if all(task_id in committed for task_id in result.task_results):
            assert result.resumed


def test_a_task_in_two_batches_of_a_durable_run_is_refused(tmp_path: Path) -> None:
    store, tasks = _setup()
    batches = TaskBatcher(4).create_batches(tasks)
    batches[1].tasks.append(batches[0].tasks[0])
    executor = BatchExecutor(store, state=SQLiteStateStore(tmp_path / "s.db"), run_id="x")
    with pytest.raises(ValueError, match="is in batches"):
        executor.execute_all(batches, lambda context, ts: {t.id: 1 for t in ts})


@pytest.mark.slow
def test_kill_9_at_random_points_loses_and_repeats_no_task(tmp_path: Path, python: str) -> None:
    rng = random.Random(14)
    db = tmp_path / "state.db"
    log = tmp_path / "ran.log"
    kills = attempts = 0
    while True:
        attempts += 1
        capacity = rng.choice((6, 8, 10, 12))  # every start plans differently
        child = subprocess.Popen(
            [python, WORKER, str(db), str(log), str(capacity), str(attempts)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if kills < 20:
            before = len(log.read_text().split()) if log.exists() else 0
            target = before + rng.randint(1, 12)
            while child.poll() is None:
                if log.exists() and len(log.read_text().split()) >= target:
                    time.sleep(rng.random() * 0.005)
                    child.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.001)
            child.wait()
            if child.returncode == -signal.SIGKILL:
                kills += 1
                continue
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        assert out.strip() == "finished 1000"
        break
    assert kills == 20

    state = SQLiteStateStore(db)
    committed: Counter[str] = Counter()
    results: dict[str, Any] = {}
    for run in state.list_runs():
        for record in state.iter_items(run.run_id, status="done"):
            committed.update(record.result["tasks"])
            results.update(record.result["results"])
    tasks = {f"t{i}" for i in range(1000)}
    assert set(committed) == tasks  # 0 lost
    assert max(committed.values()) == 1  # 0 duplicated
    assert results == {t: f"done:{t}" for t in tasks}
    lines = [line.split(":") for line in log.read_text().split()]
    ran = Counter(task for task, _ in lines)
    assert set(ran) == tasks
    # A task runs again only when a kill hit its batch in flight (2 batches at a time).
    largest = max(int(size) for _, size in lines)
    assert sum(count - 1 for count in ran.values()) <= kills * 2 * largest

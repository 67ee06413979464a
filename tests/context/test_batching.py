"""Task batching: bounds, dependencies, oversized tasks, quality against the baselines."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batchline import ConfigurationError
from batchline.context import (
    CyclicDependencyError,
    TaskBatcher,
    TaskSpec,
    first_fit_decreasing,
    lower_bound,
    next_fit,
)
from batchline.context.batching import loaded_entries


def modules(n_tasks: int, n_modules: int, seed: int = 1) -> list[TaskSpec]:
    """Realistic tasks: a module's entries, a few globally shared ones, a little cross-talk."""
    rng = random.Random(seed)
    shared = [f"g{i}" for i in range(20)]
    tasks = []
    for t in range(n_tasks):
        m = rng.randrange(n_modules)
        own = rng.sample([f"m{m}/{i}" for i in range(60)], rng.randint(5, 25))
        other = rng.randrange(n_modules)
        cross = rng.sample([f"m{other}/{i}" for i in range(60)], rng.randint(0, 3))
        tasks.append(
            TaskSpec(f"t{t}", "task", rng.sample(shared, rng.randint(5, 15)) + own + cross)
        )
    return tasks


def test_bounds_hold_and_every_task_is_placed_once() -> None:
    tasks = modules(300, 40)
    batches = TaskBatcher(max_entries_per_batch=200).create_batches(tasks)
    placed = [t.id for b in batches for t in b.tasks]
    assert sorted(placed) == sorted(t.id for t in tasks)
    for batch in batches:
        assert batch.entry_count <= 200
        assert set(batch.unique_entry_ids) == {e for t in batch.tasks for e in t.required_entry_ids}
    assert [b.batch_id for b in batches][:2] == [
        "batch_0001",
        "batch_0002",
    ]  # the original's format


def test_quality_beats_next_fit_and_first_fit_decreasing() -> None:
    tasks = modules(300, 40)
    batcher = TaskBatcher(200)
    ours = batcher.create_batches(tasks)
    report = batcher.report(ours)
    nf = loaded_entries(next_fit(tasks, 200))
    ffd = loaded_entries(first_fit_decreasing(tasks, 200))
    assert report.entries_loaded < 0.7 * min(nf, ffd)
    assert report.batches <= len(first_fit_decreasing(tasks, 200))
    assert report.lower_bound == lower_bound(tasks, 200)
    assert 1.0 <= report.ratio_to_lower_bound < 1.5
    assert report.duplication_factor >= 1.0
    assert report.shared_prefix_tokens == 0  # no token counts given: prefixes weigh nothing


def test_canonical_order_and_shared_prefixes() -> None:
    tasks = modules(120, 10, seed=3)
    counts = {e: 10 for t in tasks for e in t.required_entry_ids}
    batcher = TaskBatcher(100, token_counts=counts)
    batches = batcher.create_batches(tasks)
    frequency: dict[str, int] = {}
    for task in tasks:
        for e in task.required_entry_ids:
            frequency[e] = frequency.get(e, 0) + 1
    for batch in batches:
        ranks = [(-frequency[e], e) for e in batch.unique_entry_ids]
        assert ranks == sorted(ranks)  # most shared first
    assert batcher.report(batches).shared_prefix_tokens > 0


def test_lower_bound_by_hand() -> None:
    tasks = [TaskSpec("a", "", ["x", "y"]), TaskSpec("b", "", ["y", "z"])]
    # U_x = {x,y}, U_y = {x,y,z}, U_z = {y,z}; C = 2 -> 1 + 2 + 1
    assert lower_bound(tasks, 2) == 4


def test_dependencies_put_a_task_after_its_dependencies() -> None:
    tasks = [
        TaskSpec("base", "", ["a", "b"]),
        TaskSpec("mid", "", ["a", "b"], depends_on=["base"]),
        TaskSpec("top", "", ["a"], depends_on=["mid", "base"]),
        TaskSpec("free", "", ["a", "b"]),
    ]
    batches = TaskBatcher(10).create_batches(tasks)
    where = {t.id: i for i, b in enumerate(batches) for t in b.tasks}
    assert where["mid"] > where["base"]
    assert where["top"] > where["mid"]
    assert where["free"] == where["base"]  # same level, shared entries: same batch
    with pytest.raises(CyclicDependencyError, match="cycle"):
        TaskBatcher().create_batches(
            [TaskSpec("x", "", depends_on=["y"]), TaskSpec("y", "", depends_on=["x"])]
        )
    with pytest.raises(ConfigurationError, match="not among the tasks"):
        TaskBatcher().create_batches([TaskSpec("x", "", depends_on=["ghost"])])
    with pytest.raises(ConfigurationError, match="unique"):
        TaskBatcher().create_batches([TaskSpec("x", ""), TaskSpec("x", "")])


def test_token_bound() -> None:
    tasks = [TaskSpec(f"t{i}", "", [f"e{i}", "shared"]) for i in range(10)]
    counts = {f"e{i}": 40 for i in range(10)} | {"shared": 10}
    batches = TaskBatcher(100, max_tokens_per_batch=100, token_counts=counts).create_batches(tasks)
    assert all(b.total_tokens <= 100 for b in batches)
    assert all(len(b.tasks) == 2 for b in batches)
    with pytest.raises(ConfigurationError, match="token counts"):
        TaskBatcher(10, max_tokens_per_batch=5).create_batches(tasks)


def test_oversized_tasks_are_reported_or_split() -> None:
    big = TaskSpec("big", "", [f"e{i}" for i in range(25)])
    small = TaskSpec("small", "", ["e1", "x"])
    batches = TaskBatcher(10).create_batches([big, small])
    flagged = [b for b in batches if b.exceeds_limit]
    assert [b.task_ids for b in flagged] == [["big"]]
    assert "25 entries" in flagged[0].message
    assert "split_oversized=True" in flagged[0].message
    split = TaskBatcher(10, split_oversized=True).create_batches([big, small])
    ids = sorted(t.id for b in split for t in b.tasks)
    assert ids == ["big#1", "big#2", "big#3", "small"]
    assert not any(b.exceeds_limit for b in split)


def test_bad_bounds() -> None:
    with pytest.raises(ConfigurationError, match="max_entries_per_batch"):
        TaskBatcher(0)
    with pytest.raises(ConfigurationError, match="max_tokens_per_batch"):
        TaskBatcher(10, max_tokens_per_batch=-1)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sets(st.integers(0, 30), min_size=1, max_size=8), min_size=1, max_size=40),
    st.integers(8, 20),
)
def test_any_task_set_is_placed_within_bounds(entry_sets: list[set[int]], cap: int) -> None:
    tasks = [TaskSpec(f"t{i}", "", [f"e{x}" for x in sorted(s)]) for i, s in enumerate(entry_sets)]
    batcher = TaskBatcher(cap)
    batches = batcher.create_batches(tasks)
    assert sorted(t.id for b in batches for t in b.tasks) == sorted(t.id for t in tasks)
    assert all(b.entry_count <= cap for b in batches)
    assert batcher.report(batches).entries_loaded >= lower_bound(tasks, cap)

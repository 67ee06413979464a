"""Context batching quality: next-fit, first-fit-decreasing and batchline vs the lower bound."""

from __future__ import annotations

import random
import time

from batchline.context import TaskBatcher, TaskSpec, first_fit_decreasing, lower_bound, next_fit
from batchline.context.batching import loaded_entries

from .common import Row

CAPACITY = 200


def task_set(n_tasks: int, n_modules: int, seed: int = 1) -> list[TaskSpec]:
    """Tasks over modules: 5-25 entries of their module, 5-15 of 20 globally shared
    entries, and 0-3 entries of another module."""
    rng = random.Random(seed)
    shared = [f"shared/{i}" for i in range(20)]
    tasks = []
    for t in range(n_tasks):
        module = rng.randrange(n_modules)
        own = rng.sample([f"m{module}/{i}" for i in range(60)], rng.randint(5, 25))
        other = rng.randrange(n_modules)
        cross = rng.sample([f"m{other}/{i}" for i in range(60)], rng.randint(0, 3))
        entries = rng.sample(shared, rng.randint(5, 15)) + own + cross
        tasks.append(TaskSpec(f"task-{t}", "edit", entries))
    return tasks


def run() -> list[Row]:
    """Entries loaded, batches, ratio to the lower bound and planning time, per strategy."""
    rows = []
    for n_tasks, n_modules in ((300, 40), (10_000, 400)):
        tasks = task_set(n_tasks, n_modules)
        bound = lower_bound(tasks, CAPACITY)
        label = f"context batching: {n_tasks:,} tasks, {n_modules} modules, C={CAPACITY}"
        for name, plan in (
            ("next-fit (reference design)", next_fit),
            ("first-fit-decreasing", first_fit_decreasing),
        ):
            start = time.perf_counter()
            groups = plan(tasks, CAPACITY)
            elapsed = time.perf_counter() - start
            loaded = loaded_entries(groups)
            rows.append(
                Row(
                    label,
                    name,
                    f"{loaded:,} entries, {len(groups)} batches",
                    f"{loaded / bound:.2f}x lower bound; {elapsed:.2f}s to plan",
                )
            )
        batcher = TaskBatcher(CAPACITY)
        start = time.perf_counter()
        batches = batcher.create_batches(tasks)
        elapsed = time.perf_counter() - start
        report = batcher.report(batches)
        rows.append(
            Row(
                label,
                "batchline TaskBatcher",
                f"{report.entries_loaded:,} entries, {report.batches} batches",
                f"{report.ratio_to_lower_bound:.2f}x lower bound ({bound:,}); "
                f"{elapsed:.2f}s to plan",
            )
        )
    return rows

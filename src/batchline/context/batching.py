"""Task batching: group tasks so shared context is loaded once, within entry/token bounds.

Every batch is one implementation call that loads the union of its tasks' entries
(at most ``max_entries_per_batch``, and ``max_tokens_per_batch`` tokens). The batcher
minimises the entries (and tokens) loaded over all batches, then the number of batches:

1. Dependencies split tasks into levels; a level's batches come after the previous
   level's, so a task always runs in a later batch than every task it depends on.
2. Greedy growth (``batchline.context.planner``): a batch is seeded with the largest
   unplaced task and grows by the task sharing the largest share of its entries (an
   inverted index and a lazy heap keep this near-linear; entries most tasks need are left
   out of the index, they tie nothing together). When no overlapping task fits, the
   largest task that fits fills the room.
3. Local search moves a task to another batch when that loads fewer entries, and small
   batches are merged when their union fits.
4. Entries are ordered canonically (most shared first) and batches ordered so that
   consecutive calls share the longest prefix: provider prompt caches then hit.

Plans are a pure function of the input: the same tasks give the same batches, with the
same ids, in any process.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from batchline.context.baselines import (
    first_fit_decreasing,
    loaded_entries,
    lower_bound,
    next_fit,
)
from batchline.context.errors import CyclicDependencyError
from batchline.context.planner import Group, Planner
from batchline.context.store import CentralContextStore
from batchline.context.tasks import TaskBatch, TaskSpec
from batchline.errors import ConfigurationError

__all__ = [
    "BatchingReport",
    "TaskBatch",
    "TaskBatcher",
    "TaskSpec",
    "first_fit_decreasing",
    "loaded_entries",
    "lower_bound",
    "next_fit",
]


@dataclass(frozen=True)
class BatchingReport:
    """How good a set of batches is."""

    batches: int
    entries_loaded: int
    unique_entries: int
    tokens_loaded: int
    lower_bound: int
    ratio_to_lower_bound: float
    duplication_factor: float
    shared_prefix_tokens: int
    oversized: int

    @property
    def ratio(self) -> float:
        """Same as ``ratio_to_lower_bound``."""
        return self.ratio_to_lower_bound

    @property
    def num_batches(self) -> int:
        """Same as ``batches``."""
        return self.batches

    def __getitem__(self, name: str) -> float | int:
        value: float | int = getattr(self, name)
        return value

    def as_dict(self) -> dict[str, float | int]:
        """Plain data."""
        return dict(self.__dict__)


class TaskBatcher:
    """Plans batches of tasks under an entry bound and an optional token bound.

    Args:
        max_entries_per_batch: most entries one batch may load.
        max_tokens_per_batch: most tokens one batch may load (None: no token bound).
        store: where entry token counts come from (needed for a token bound, unless
            ``token_counts`` is given).
        token_counts: tokens per entry id (overrides the store).
        split_oversized: split a task that alone exceeds a bound into parts
            (``id#1``, ``id#2``, ...) instead of reporting it with ``exceeds_limit``.
        local_search_passes: improvement passes after the greedy plan.
    """

    def __init__(
        self,
        max_entries_per_batch: int = 200,
        max_tokens_per_batch: int | None = None,
        *,
        store: CentralContextStore | None = None,
        token_counts: Mapping[str, int] | None = None,
        split_oversized: bool = False,
        local_search_passes: int = 2,
    ) -> None:
        if type(max_entries_per_batch) is not int or max_entries_per_batch < 1:
            raise ConfigurationError(
                f"`max_entries_per_batch` is {max_entries_per_batch!r}; expected an integer >= 1"
            )
        if max_tokens_per_batch is not None and (
            type(max_tokens_per_batch) is not int or max_tokens_per_batch < 1
        ):
            raise ConfigurationError(
                f"`max_tokens_per_batch` is {max_tokens_per_batch!r}; expected an integer >= 1 "
                "or None"
            )
        self.max_entries = max_entries_per_batch
        self.max_tokens = max_tokens_per_batch
        self.store = store
        self.token_counts = dict(token_counts) if token_counts is not None else None
        self.split_oversized = split_oversized
        self.passes = local_search_passes
        self.plan_seconds = 0.0

    # -- public ---------------------------------------------------------------------

    def create_batches(
        self, tasks: Sequence[TaskSpec], sort_by_priority: bool = False
    ) -> list[TaskBatch]:
        """Batches for ``tasks``, in execution order, with ids ``batch_0001``, ...

        Args:
            tasks: the tasks (ids unique; ``depends_on`` ids among them).
            sort_by_priority: within a dependency level, run batches holding
                higher-priority tasks first, and order each batch's tasks by priority
                (highest first, then input order).
        """
        started = time.perf_counter()
        tasks = self._split(list(tasks)) if self.split_oversized else list(tasks)
        _check_ids(tasks)
        tokens = self._token_lookup(tasks)
        frequency = Counter(e for task in tasks for e in task.required_entry_ids)
        rank = {e: i for i, e in enumerate(sorted(frequency, key=lambda e: (-frequency[e], e)))}
        order = {task.id: index for index, task in enumerate(tasks)}
        batches: list[TaskBatch] = []
        for level, members in enumerate(_levels(tasks)):
            planner = Planner(members, self.max_entries, self.max_tokens, tokens)
            groups = planner.plan(self.passes)
            level_batches = [
                self._batch(group, level, rank, order, sort_by_priority, tokens) for group in groups
            ]
            level_batches.sort(
                key=lambda b: (
                    b.exceeds_limit,
                    -max(t.priority for t in b.tasks) if sort_by_priority else 0,
                    [rank[e] for e in b.unique_entry_ids],
                    [order[t.id] for t in b.tasks],
                )
            )
            batches.extend(level_batches)
        for number, batch in enumerate(batches, start=1):
            batch.batch_id = f"batch_{number:04d}"
        self.plan_seconds = time.perf_counter() - started
        return batches

    def report(self, batches: Sequence[TaskBatch]) -> BatchingReport:
        """Entries and tokens loaded, the lower bound and the ratio to it, duplication,
        and the tokens consecutive batches share as a prefix (prompt-cache hits)."""
        tasks = [task for batch in batches for task in batch.tasks]
        tokens = self._token_lookup(tasks)
        loaded = sum(batch.entry_count for batch in batches)
        unique = len({e for batch in batches for e in batch.unique_entry_ids})
        bound = lower_bound(tasks, self.max_entries)
        prefix = 0
        for before, after in pairwise(batches):
            for a, b in zip(before.unique_entry_ids, after.unique_entry_ids, strict=False):
                if a != b:
                    break
                prefix += tokens(a)
        return BatchingReport(
            batches=len(batches),
            entries_loaded=loaded,
            unique_entries=unique,
            tokens_loaded=sum(tokens(e) for batch in batches for e in batch.unique_entry_ids),
            lower_bound=bound,
            ratio_to_lower_bound=loaded / bound if bound else 1.0,
            duplication_factor=loaded / unique if unique else 1.0,
            shared_prefix_tokens=prefix,
            oversized=sum(1 for batch in batches if batch.exceeds_limit),
        )

    # -- helpers --------------------------------------------------------------------

    def _token_lookup(self, tasks: Sequence[TaskSpec]) -> Callable[[str], int]:
        if self.token_counts is not None:
            counts = self.token_counts
            return lambda e: counts.get(e, 0)
        if self.store is not None:
            ids = {e for task in tasks for e in task.required_entry_ids}
            counts = self.store.token_map(ids)
            return lambda e: counts.get(e, 0)
        if self.max_tokens is not None:
            raise ConfigurationError(
                "a token bound needs token counts: pass TaskBatcher(store=...) or "
                "token_counts={entry_id: tokens}"
            )
        return lambda _entry: 0

    def _split(self, tasks: list[TaskSpec]) -> list[TaskSpec]:
        out: list[TaskSpec] = []
        for task in tasks:
            entries = task.required_entry_ids
            if len(entries) <= self.max_entries:
                out.append(task)
                continue
            parts = math.ceil(len(entries) / self.max_entries)
            for part in range(parts):
                chunk = entries[part * self.max_entries : (part + 1) * self.max_entries]
                out.append(
                    TaskSpec(
                        f"{task.id}#{part + 1}",
                        task.description,
                        chunk,
                        task.priority,
                        list(task.depends_on),
                    )
                )
        return out

    def _batch(
        self,
        group: Group,
        level: int,
        rank: Mapping[str, int],
        order: Mapping[str, int],
        by_priority: bool,
        tokens: Callable[[str], int],
    ) -> TaskBatch:
        entries = sorted(group.entries, key=rank.__getitem__)
        total = sum(map(tokens, entries))
        if by_priority:
            tasks = sorted(group.tasks, key=lambda t: (-t.priority, order[t.id]))
        else:
            tasks = sorted(group.tasks, key=lambda t: order[t.id])
        message = ""
        if group.oversized:
            task = tasks[0]
            message = (
                f"task `{task.id}` alone needs {len(entries)} entries ({total} tokens), more "
                f"than a batch may load ({self.max_entries} entries"
                + (f", {self.max_tokens} tokens" if self.max_tokens else "")
                + "). Split the task, pass TaskBatcher(split_oversized=True), or raise the bound."
            )
        return TaskBatch("", tasks, entries, group.oversized, total, level, message)


def _check_ids(tasks: Sequence[TaskSpec]) -> None:
    seen: set[str] = set()
    for task in tasks:
        if task.id in seen:
            raise ConfigurationError(f"two tasks have the id {task.id!r}; task ids must be unique")
        seen.add(task.id)
    for task in tasks:
        unknown = [d for d in task.depends_on if d not in seen]
        if unknown:
            raise ConfigurationError(
                f"task {task.id!r} depends on {', '.join(repr(u) for u in unknown)}, which "
                "is not among the tasks"
            )


def _levels(tasks: Sequence[TaskSpec]) -> list[list[TaskSpec]]:
    """Tasks by dependency level: level n only depends on levels below n."""
    by_id = {task.id: task for task in tasks}
    level: dict[str, int] = {}
    visiting: set[str] = set()

    def depth(task_id: str, path: list[str]) -> int:
        if task_id in level:
            return level[task_id]
        if task_id in visiting:
            cycle = " -> ".join([*path[path.index(task_id) :], task_id])
            raise CyclicDependencyError(f"tasks depend on each other in a cycle: {cycle}")
        visiting.add(task_id)
        deps = by_id[task_id].depends_on
        value = 1 + max((depth(d, [*path, task_id]) for d in deps), default=-1)
        visiting.discard(task_id)
        level[task_id] = value
        return value

    for task in tasks:
        depth(task.id, [])
    levels: list[list[TaskSpec]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for task in tasks:
        levels[level[task.id]].append(task)
    return levels

"""Reference batchings and the lower bound, to measure ``TaskBatcher`` against."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from batchline.context.tasks import TaskSpec


def lower_bound(tasks: Sequence[TaskSpec], capacity: int) -> int:
    """``sum over entries e of ceil(|U_e| / C)``: every entry e must be loaded in at least
    that many batches, where U_e is the union of the entries of all tasks needing e."""
    sets = [frozenset(task.required_entry_ids) for task in tasks]
    needing: dict[str, list[int]] = defaultdict(list)
    for i, entries in enumerate(sets):
        for e in entries:
            needing[e].append(i)
    total = 0
    for users in needing.values():
        union: set[str] = set().union(*(sets[i] for i in users))
        total += math.ceil(len(union) / capacity)
    return total


def next_fit(tasks: Sequence[TaskSpec], capacity: int) -> list[list[TaskSpec]]:
    """The original system's batching: fill one batch at a time in input order."""
    batches: list[list[TaskSpec]] = []
    current: list[TaskSpec] = []
    union: set[str] = set()
    for task in tasks:
        merged = union | set(task.required_entry_ids)
        if current and len(merged) > capacity:
            batches.append(current)
            current, merged = [], set(task.required_entry_ids)
        current.append(task)
        union = merged
    if current:
        batches.append(current)
    return batches


def first_fit_decreasing(tasks: Sequence[TaskSpec], capacity: int) -> list[list[TaskSpec]]:
    """A stronger baseline: largest task first, into the first batch whose union fits."""
    batches: list[tuple[list[TaskSpec], set[str]]] = []
    open_batches: list[int] = []  # batches with room left, in creation order
    for task in sorted(tasks, key=lambda t: -len(t.required_entry_ids)):
        entries = task.required_entry_ids
        for position, b in enumerate(open_batches):
            members, covered = batches[b]
            if _fits(entries, covered, capacity - len(covered)):
                members.append(task)
                covered.update(entries)
                if len(covered) >= capacity:
                    del open_batches[position]
                break
        else:
            batches.append(([task], set(entries)))
            if len(entries) < capacity:
                open_batches.append(len(batches) - 1)
    return [members for members, _ in batches]


def _fits(entries: Sequence[str], covered: set[str], room: int) -> bool:
    """Whether at most ``room`` of ``entries`` are new to ``covered`` (stops early)."""
    if len(entries) <= room:
        return True
    new = 0
    for e in entries:
        if e not in covered:
            new += 1
            if new > room:
                return False
    return True


def loaded_entries(groups: Iterable[Sequence[TaskSpec]]) -> int:
    """Entries loaded by groups of tasks (the sum of their unions)."""
    return sum(len(set().union(*(set(t.required_entry_ids) for t in g))) for g in groups)

"""Task batching: group tasks so shared context is loaded once, within entry/token bounds.

Every batch is one implementation call that loads the union of its tasks' entries
(at most ``max_entries_per_batch``, and ``max_tokens_per_batch`` tokens). The batcher
minimises the entries (and tokens) loaded over all batches, then the number of batches:

1. Dependencies split tasks into levels; a level's batches come after the previous
   level's, so a task always runs in a later batch than every task it depends on.
2. Greedy growth: a batch is seeded with the largest unplaced task and grows by the task
   with the smallest share of new entries (an inverted index and a lazy heap keep this
   near-linear; entries most tasks need are left out of the index, they tie nothing
   together). When no overlapping task fits, the largest task that fits fills the room.
3. Local search moves a task to another batch when that loads fewer entries, and small
   batches are merged when their union fits.
4. Entries are ordered canonically (most shared first) and batches ordered so that
   consecutive calls share the longest prefix: provider prompt caches then hit.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from batchline.context.errors import CyclicDependencyError
from batchline.context.store import CentralContextStore
from batchline.errors import ConfigurationError


@dataclass
class TaskSpec:
    """A task for an implementation call, with the entries it needs."""

    id: str
    description: str
    required_entry_ids: list[str] = field(default_factory=list)
    priority: int = 0
    depends_on: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise ConfigurationError(f"a task needs a non-blank `id`, not {self.id!r}")
        self.required_entry_ids = list(dict.fromkeys(self.required_entry_ids))
        self.depends_on = list(self.depends_on)


@dataclass
class TaskBatch:
    """Tasks run together in one implementation call.

    Attributes:
        batch_id: ``batch-0001`` ... in execution order.
        tasks: the tasks, in input order.
        unique_entry_ids: the union of their entries, in canonical order (most shared first).
        total_tokens: tokens of that union.
        level: the dependency level (batches of level n run after those of level n-1).
        exceeds_limit: a single task needs more than the bounds allow.
        message: why, when ``exceeds_limit``.
    """

    batch_id: str
    tasks: list[TaskSpec]
    unique_entry_ids: list[str]
    total_tokens: int = 0
    level: int = 0
    exceeds_limit: bool = False
    message: str = ""

    @property
    def entry_count(self) -> int:
        """Entries loaded by this batch (the size of the union)."""
        return len(self.unique_entry_ids)

    @property
    def task_ids(self) -> list[str]:
        """The tasks' ids."""
        return [task.id for task in self.tasks]


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

    def create_batches(self, tasks: Sequence[TaskSpec]) -> list[TaskBatch]:
        """Batches for ``tasks``, in execution order."""
        started = time.perf_counter()
        tasks = self._split(list(tasks)) if self.split_oversized else list(tasks)
        _check_ids(tasks)
        tokens = self._token_lookup(tasks)
        frequency = Counter(e for task in tasks for e in task.required_entry_ids)
        rank = {e: i for i, e in enumerate(sorted(frequency, key=lambda e: (-frequency[e], e)))}
        batches: list[TaskBatch] = []
        for level, members in enumerate(_levels(tasks)):
            groups = _Planner(members, self.max_entries, self.max_tokens, tokens).plan(self.passes)
            level_batches = [self._batch(group, level, rank, tokens) for group in groups]
            level_batches.sort(
                key=lambda b: (b.exceeds_limit, [rank[e] for e in b.unique_entry_ids])
            )
            batches.extend(level_batches)
        for number, batch in enumerate(batches, start=1):
            batch.batch_id = f"batch-{number:04d}"
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
        self, group: _Group, level: int, rank: Mapping[str, int], tokens: Callable[[str], int]
    ) -> TaskBatch:
        entries = sorted(group.entries, key=rank.__getitem__)
        total = sum(tokens(e) for e in entries)
        tasks = sorted(group.tasks, key=lambda t: group.order[t.id])
        message = ""
        if group.oversized:
            task = tasks[0]
            message = (
                f"task {task.id!r} alone needs {len(entries)} entries ({total} tokens), more than "
                f"a batch may load ({self.max_entries} entries"
                + (f", {self.max_tokens} tokens" if self.max_tokens else "")
                + "). Split the task, pass TaskBatcher(split_oversized=True), or raise the bound."
            )
        return TaskBatch("", tasks, entries, total, level, group.oversized, message)


@dataclass
class _Group:
    tasks: list[TaskSpec]
    entries: set[str]
    tokens: int
    order: dict[str, int]
    oversized: bool = False


class _Planner:
    """Greedy growth plus local search for the tasks of one dependency level."""

    def __init__(
        self,
        tasks: list[TaskSpec],
        max_entries: int,
        max_tokens: int | None,
        tokens: Callable[[str], int],
    ) -> None:
        self.tasks = tasks
        self.cap = max_entries
        self.token_cap = max_tokens
        self.tokens = tokens
        self.sets = [frozenset(t.required_entry_ids) for t in tasks]
        self.weights = [sum(tokens(e) for e in s) for s in self.sets]
        self.order = {t.id: i for i, t in enumerate(tasks)}
        frequency = Counter(e for s in self.sets for e in s)
        hub_limit = max(8, len(tasks) // 10)
        self._buckets: dict[int, list[int]] = defaultdict(list)
        for i, entries in enumerate(self.sets):
            self._buckets[len(entries)].append(i)
        self._max_size = max((len(s) for s in self.sets), default=0)
        self._hub_span = sum(1 for count in frequency.values() if count > hub_limit)
        self.index: dict[str, list[int]] = defaultdict(list)
        for i, entries in enumerate(self.sets):
            for e in entries:
                if frequency[e] <= hub_limit:
                    self.index[e].append(i)

    def fits(self, size: int, tokens: int) -> bool:
        return size <= self.cap and (self.token_cap is None or tokens <= self.token_cap)

    def plan(self, passes: int) -> list[_Group]:
        placed = [False] * len(self.tasks)
        by_size = sorted(
            range(len(self.tasks)), key=lambda i: (-len(self.sets[i]), -self.tasks[i].priority, i)
        )
        groups: list[list[int]] = []
        oversized: list[int] = []
        cursor = 0
        while True:
            while cursor < len(by_size) and placed[by_size[cursor]]:
                cursor += 1
            if cursor == len(by_size):
                break
            seed = by_size[cursor]
            placed[seed] = True
            if not self.fits(len(self.sets[seed]), self.weights[seed]):
                oversized.append(seed)
                continue
            groups.append(self._grow(seed, placed))
        members = [list(g) for g in groups]
        members = self._improve(members, passes)
        members = self._merge(members)
        result = [self._group(m) for m in members if m]
        for i in oversized:
            group = self._group([i])
            group.oversized = True
            result.append(group)
        return result

    def _grow(self, seed: int, placed: list[bool]) -> list[int]:
        members = [seed]
        union = set(self.sets[seed])
        weight = self.weights[seed]
        overlap: Counter[int] = Counter()
        heap: list[tuple[float, int]] = []

        def absorb(entries: Iterable[str]) -> None:
            for e in entries:
                for j in self.index.get(e, ()):
                    if not placed[j]:
                        overlap[j] += 1
                        heapq.heappush(heap, (-(overlap[j] / len(self.sets[j])), j))

        absorb(union)
        rejected: set[int] = set()
        while True:
            chosen = -1
            while heap:
                _, j = heapq.heappop(heap)
                if placed[j] or j in rejected:
                    continue
                new = self.sets[j] - union
                if self.fits(len(union) + len(new), weight + sum(self.tokens(e) for e in new)):
                    chosen = j
                    break
                rejected.add(j)
            if chosen < 0:
                chosen = self._filler(union, weight, placed)
                if chosen < 0:
                    return members
            new = self.sets[chosen] - union
            placed[chosen] = True
            members.append(chosen)
            union |= new
            weight += sum(self.tokens(e) for e in new)
            absorb(new)

    def _filler(self, union: set[str], weight: int, placed: list[bool]) -> int:
        """The largest unplaced task that still fits (sizes bucketed: no full scans)."""
        room = self.cap - len(union)
        if room <= 0:
            return -1
        for size in range(min(room + self._hub_span, self._max_size), 0, -1):
            bucket = self._buckets.get(size)
            if not bucket:
                continue
            bucket[:] = [i for i in bucket if not placed[i]]
            for i in bucket:
                new = self.sets[i] - union
                if self.fits(len(union) + len(new), weight + sum(self.tokens(e) for e in new)):
                    return i
        return -1

    def _improve(self, groups: list[list[int]], passes: int) -> list[list[int]]:
        """Move a task to another batch when that loads fewer entries in all."""
        counts = [Counter(e for i in g for e in self.sets[i]) for g in groups]
        home = {i: b for b, g in enumerate(groups) for i in g}
        where: dict[str, set[int]] = defaultdict(set)
        for b, c in enumerate(counts):
            for e in c:
                if e in self.index:
                    where[e].add(b)
        for _ in range(passes):
            moved = 0
            for i in list(home):
                a = home[i]
                entries = self.sets[i]
                saving = sum(1 for e in entries if counts[a][e] == 1)
                if saving == 0:
                    continue
                shared = Counter(b for e in entries if e in self.index for b in where[e])
                shared.pop(a, None)
                best, best_cost = -1, saving
                for b, _ in shared.most_common(3):
                    new = [e for e in entries if e not in counts[b]]
                    size = len(counts[b]) + len(new)
                    tokens = sum(self.tokens(e) for e in counts[b]) if self.token_cap else 0
                    if len(new) < best_cost and self.fits(
                        size, tokens + sum(self.tokens(e) for e in new)
                    ):
                        best, best_cost = b, len(new)
                if best < 0:
                    continue
                for e in entries:
                    counts[a][e] -= 1
                    if counts[a][e] == 0:
                        del counts[a][e]
                        where[e].discard(a)
                    counts[best][e] += 1
                    if e in self.index:
                        where[e].add(best)
                groups[a].remove(i)
                groups[best].append(i)
                home[i] = best
                moved += 1
            if not moved:
                break
        return [g for g in groups if g]

    def _merge(self, groups: list[list[int]]) -> list[list[int]]:
        """Merge batches whose union fits (never loads more; often fewer batches)."""
        unions = [set().union(*(self.sets[i] for i in g)) for g in groups]
        order = sorted(range(len(groups)), key=lambda b: len(unions[b]))
        alive = [True] * len(groups)
        for small in order:
            if not alive[small] or len(unions[small]) > self.cap // 2:
                continue
            best, best_size = -1, self.cap + 1
            for other in range(len(groups)):
                if other == small or not alive[other]:
                    continue
                merged = unions[other] | unions[small]
                tokens = sum(self.tokens(e) for e in merged) if self.token_cap else 0
                if len(merged) < best_size and self.fits(len(merged), tokens):
                    best, best_size = other, len(merged)
            if best >= 0:
                groups[best].extend(groups[small])
                unions[best] |= unions[small]
                alive[small] = False
        return [g for b, g in enumerate(groups) if alive[b]]

    def _group(self, members: list[int]) -> _Group:
        entries: set[str] = set().union(*(self.sets[i] for i in members)) if members else set()
        return _Group(
            [self.tasks[i] for i in members],
            entries,
            sum(self.tokens(e) for e in entries),
            self.order,
        )


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
    """The baseline: fill one batch at a time in input order."""
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
    for task in sorted(tasks, key=lambda t: -len(t.required_entry_ids)):
        entries = set(task.required_entry_ids)
        for members, covered in batches:
            if len(covered | entries) <= capacity:
                members.append(task)
                covered.update(entries)
                break
        else:
            batches.append(([task], entries))
    return [members for members, _ in batches]


def loaded_entries(groups: Iterable[Sequence[TaskSpec]]) -> int:
    """Entries loaded by groups of tasks (the sum of their unions)."""
    return sum(len(set().union(*(set(t.required_entry_ids) for t in g))) for g in groups)

"""The batch planner for one dependency level: greedy growth, then local search.

Every iteration below runs over lists in input order (never over a set of strings), and
every tie is broken by task index, so a plan depends only on its input, never on the
process (``PYTHONHASHSEED``) it is made in. Without a token bound no token is counted.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain

from batchline.context.tasks import TaskSpec

FILLER_PROBES = 64
"""Candidates the filler examines that need a set difference (bounds its cost)."""


@dataclass
class Group:
    """Tasks planned together, with the union of their entries."""

    tasks: list[TaskSpec]
    entries: set[str]
    tokens: int
    oversized: bool = False


class Planner:
    """Plans the tasks of one dependency level into groups within the bounds."""

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
        self.lists = [tuple(t.required_entry_ids) for t in tasks]  # deduplicated, ordered
        if max_tokens is None:
            self.weights = [0] * len(tasks)
        else:
            self.weights = [sum(map(tokens, entries)) for entries in self.lists]
        frequency = Counter(chain.from_iterable(self.lists))
        hub_limit = max(8, len(tasks) // 10)
        self._buckets: dict[int, list[int]] = defaultdict(list)
        for i, entries in enumerate(self.lists):
            self._buckets[len(entries)].append(i)
        self._max_size = max((len(s) for s in self.lists), default=0)
        self._hub_span = sum(1 for count in frequency.values() if count > hub_limit)
        self.index: dict[str, list[int]] = defaultdict(list)
        self.linked: list[tuple[str, ...]] = []  # a task's entries that are in the index
        self.hubs: list[tuple[str, ...]] = []  # and the others (shared by most tasks)
        for i, entries in enumerate(self.lists):
            linked = tuple([e for e in entries if frequency[e] <= hub_limit])
            self.linked.append(linked)
            self.hubs.append(tuple([e for e in entries if frequency[e] > hub_limit]))
            for e in linked:
                self.index[e].append(i)

    def weigh(self, entries: list[str] | set[str] | tuple[str, ...]) -> int:
        """Tokens of ``entries`` (0 without a token bound: nothing is counted)."""
        return 0 if self.token_cap is None else sum(map(self.tokens, entries))

    def fits(self, size: int, tokens: int) -> bool:
        return size <= self.cap and (self.token_cap is None or tokens <= self.token_cap)

    def plan(self, passes: int) -> list[Group]:
        placed = [False] * len(self.tasks)
        by_size = sorted(
            range(len(self.tasks)), key=lambda i: (-len(self.lists[i]), -self.tasks[i].priority, i)
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
            if not self.fits(len(self.lists[seed]), self.weights[seed]):
                oversized.append(seed)
                continue
            groups.append(self._grow(seed, placed))
        members = self._improve(groups, passes)
        members = self._merge(members)
        result = [self._group(m) for m in members if m]
        for i in oversized:
            group = self._group([i])
            group.oversized = True
            result.append(group)
        return result

    def _grow(self, seed: int, placed: list[bool]) -> list[int]:
        members = [seed]
        union = set(self.lists[seed])
        weight = self.weights[seed]
        overlap: dict[int, int] = {}
        heap: list[tuple[float, int]] = []
        index = self.index
        sizes = self.lists

        def absorb(entries: tuple[str, ...] | list[str]) -> None:
            touched: dict[int, None] = {}
            for e in entries:
                for j in index.get(e, ()):
                    if not placed[j]:
                        overlap[j] = overlap.get(j, 0) + 1
                        touched[j] = None
            for j in touched:  # one push per task with its new overlap (the best one)
                heapq.heappush(heap, (-overlap[j] / len(sizes[j]), j))

        absorb(self.linked[seed])
        rejected: set[int] = set()
        while True:
            chosen = -1
            while heap:
                _, j = heapq.heappop(heap)
                if placed[j] or j in rejected:
                    continue
                if self.token_cap is None:
                    # Its indexed entries in the union are counted; only hubs are checked.
                    new_count = len(self.linked[j]) - overlap[j]
                    new_count += sum(1 for e in self.hubs[j] if e not in union)
                    if len(union) + new_count <= self.cap:
                        chosen = j
                        break
                else:
                    new = [e for e in sizes[j] if e not in union]
                    if self.fits(len(union) + len(new), weight + self.weigh(new)):
                        chosen = j
                        break
                rejected.add(j)
            if chosen < 0:
                chosen = self._filler(union, weight, placed)
                if chosen < 0:
                    return members
            new = [e for e in self.lists[chosen] if e not in union]
            placed[chosen] = True
            members.append(chosen)
            union.update(new)
            weight += self.weigh(new)
            absorb([e for e in new if e in index])

    def _filler(self, union: set[str], weight: int, placed: list[bool]) -> int:
        """The largest unplaced task that still fits (sizes bucketed: no full scans)."""
        room = self.cap - len(union)
        if room <= 0:
            return -1
        probes = 0
        for size in range(min(room + self._hub_span, self._max_size), 0, -1):
            bucket = self._buckets.get(size)
            if not bucket:
                continue
            bucket[:] = [i for i in bucket if not placed[i]]
            for i in bucket:
                if size <= room and self.token_cap is None:
                    return i  # fits whatever it shares
                if probes >= FILLER_PROBES and size > room:
                    break
                probes += 1
                new = [e for e in self.lists[i] if e not in union]
                if self.fits(len(union) + len(new), weight + self.weigh(new)):
                    return i
        return -1

    def _improve(self, groups: list[list[int]], passes: int) -> list[list[int]]:
        """Move a task to another batch when that loads fewer entries in all."""
        counts = [Counter(e for i in g for e in self.lists[i]) for g in groups]
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
                entries = self.lists[i]
                mine = counts[a]
                saving = sum(1 for e in entries if mine[e] == 1)
                if saving == 0:
                    continue
                shared: dict[int, int] = {}
                for e in self.linked[i]:
                    for b in where[e]:
                        if b != a:
                            shared[b] = shared.get(b, 0) + 1
                if not shared:
                    continue
                best, best_cost = -1, saving
                linked = len(self.linked[i])
                for b in sorted(shared, key=lambda b: (-shared[b], b))[:3]:
                    if linked - shared[b] >= best_cost:
                        continue  # at least that many of its entries are new there
                    theirs = counts[b]
                    new = [e for e in entries if e not in theirs]
                    if len(new) >= best_cost:
                        continue
                    tokens = self.weigh(list(theirs)) if self.token_cap is not None else 0
                    if self.fits(len(theirs) + len(new), tokens + self.weigh(new)):
                        best, best_cost = b, len(new)
                if best < 0:
                    continue
                for e in entries:
                    mine[e] -= 1
                    if mine[e] == 0:
                        del mine[e]
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
        unions = [set().union(*(self.lists[i] for i in g)) for g in groups]
        order = sorted(range(len(groups)), key=lambda b: len(unions[b]))
        alive = [True] * len(groups)
        for small in order:
            if not alive[small] or len(unions[small]) > self.cap // 2:
                continue
            best, best_size = -1, self.cap + 1
            for other in range(len(groups)):
                if other == small or not alive[other]:
                    continue
                size = len(unions[other]) + len(unions[small] - unions[other])
                if size >= best_size or size > self.cap:
                    continue
                if self.token_cap is not None:
                    merged = unions[other] | unions[small]
                    if not self.fits(len(merged), self.weigh(merged)):
                        continue
                best, best_size = other, size
            if best >= 0:
                groups[best].extend(groups[small])
                unions[best] |= unions[small]
                alive[small] = False
        return [g for b, g in enumerate(groups) if alive[b]]

    def _group(self, members: list[int]) -> Group:
        entries: set[str] = set().union(*(self.lists[i] for i in members)) if members else set()
        return Group([self.tasks[i] for i in members], entries, self.weigh(entries))

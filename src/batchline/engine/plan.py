"""The plan: the input cut into consecutive batches of ``chunk_size`` keyed items.

The plan is a pure function of the (deduplicated) item keys and the chunk size, so a
resumed run over the same input sees the same batches. It is read lazily, one batch
ahead, so a generator of a million items is never held in memory; the look-ahead is
how a batch knows it is the last even when the input's length is unknown.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any, Generic, TypeVar

from batchline.engine.keys import Key, KeyIndex, KeysOf

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Batch(Generic[T]):
    """Consecutive items of one plan, handed to the batch function.

    Attributes:
        index: 0-based position of the batch in the plan.
        number: 1-based position (``index + 1``).
        total: number of batches in the plan, or None while the input's length is unknown.
        items: the items to process (on a resume, only those without a committed result).
        keys: the items' keys, aligned with ``items``.
        positions: the items' 0-based positions in the input, aligned with ``items``.
        is_last: True for the final batch of the plan.
    """

    index: int
    number: int
    total: int | None
    items: Sequence[T]
    keys: Sequence[Key]
    positions: Sequence[int]
    is_last: bool

    @property
    def size(self) -> int:
        """Number of items in the batch."""
        return len(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        total = "?" if self.total is None else self.total
        return f"Batch(number={self.number}/{total}, size={len(self.items)})"

    def subset(self, offsets: Sequence[int]) -> Batch[T]:
        """The same batch restricted to the items at ``offsets`` (used on resume)."""
        return Batch(
            index=self.index,
            number=self.number,
            total=self.total,
            items=[self.items[i] for i in offsets],
            keys=[self.keys[i] for i in offsets],
            positions=[self.positions[i] for i in offsets],
            is_last=self.is_last,
        )


def total_batches(total_items: int | None, chunk_size: int) -> int | None:
    """Number of batches for ``total_items`` items, or None when unknown."""
    if total_items is None:
        return None
    return -(-total_items // chunk_size)


class Planner(Generic[T]):
    """Cuts an iterable into keyed batches, finding duplicate keys as it goes.

    Iterate it to get batches in plan order. ``total_items`` is known up front for
    sized inputs (lists, ranges); for generators it becomes known at the end. With
    ``skip_duplicates`` a repeated key is dropped (the first is kept) and counted in
    ``duplicates``; the plan then chunks the deduplicated sequence.
    """

    def __init__(
        self,
        items: Iterable[T],
        *,
        chunk_size: int,
        keys_of: KeysOf,
        skip_duplicates: bool,
    ) -> None:
        self._source: Iterator[T] = iter(items)
        self._chunk_size = chunk_size
        self._keys_of = keys_of
        self._skip = skip_duplicates
        self._index = KeyIndex()
        self._read = 0
        size = _known_length(items)
        self.total_items: int | None = size if not skip_duplicates else None
        self.duplicates = 0
        self.planned_items = 0

    @property
    def total_batches(self) -> int | None:
        """Number of batches in the plan, once known."""
        return total_batches(self.total_items, self._chunk_size)

    def __iter__(self) -> Iterator[Batch[T]]:
        chunk_size = self._chunk_size
        pending = self._next_chunk()
        index = 0
        while pending is not None:
            items, keys, positions = pending
            following = self._next_chunk()
            is_last = following is None
            if is_last:
                self.total_items = self.planned_items
            yield Batch(
                index=index,
                number=index + 1,
                total=total_batches(self.total_items, chunk_size),
                items=items,
                keys=keys,
                positions=positions,
                is_last=is_last,
            )
            index += 1
            pending = following
        if self.total_items is None:
            self.total_items = self.planned_items

    def _next_chunk(self) -> tuple[list[T], list[Key], Sequence[int]] | None:
        size = self._chunk_size
        items: list[T] = []
        keys: list[Key] = []
        positions: list[int] | range = []
        while len(items) < size:
            want = size - len(items)
            raw = list(islice(self._source, want))
            if not raw:
                break
            start = self._read
            self._read += len(raw)
            raw_keys = self._keys_of(raw, start)
            keep = self._index.add_batch(raw_keys, start, skip=self._skip)
            if keep is None:
                if not items:
                    items, keys, positions = raw, raw_keys, range(start, start + len(raw))
                    continue
                items.extend(raw)
                keys.extend(raw_keys)
                positions = [*positions, *range(start, start + len(raw))]
            else:
                self.duplicates += len(raw) - len(keep)
                items.extend(raw[i] for i in keep)
                keys.extend(raw_keys[i] for i in keep)
                positions = [*positions, *(start + i for i in keep)]
        if not items:
            return None
        self.planned_items += len(items)
        return items, keys, positions


def _known_length(items: Iterable[Any]) -> int | None:
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None

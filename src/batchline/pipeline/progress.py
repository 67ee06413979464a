"""The progress object pipeline hooks receive: immutable, printable, serialisable."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from batchline.pipeline.frozen import freeze


@dataclass(frozen=True, slots=True)
class BatchProgressContext:
    """Where a batching scope is, as seen by a hook (immutable, deeply).

    ``items`` is a read-only copy of the batch's items (a tuple of frozen values): a
    hook can read them but never change what the agents are about to read. Assigning
    an attribute raises ``dataclasses.FrozenInstanceError`` (an ``AttributeError``),
    changing an item raises ``TypeError``.

    Attributes:
        batch_number: 1-based number of the batch.
        total_batches: batches in the scope.
        batch_size: items in this batch.
        items: the batch's items (read-only).
        completed_items: items finished so far (this batch included once complete).
        total_items: items in the scope.
        percentage: ``completed_items / total_items * 100``.
        is_first: this is batch 1.
        is_last: this is the final batch.
        scope: name of the scope's trigger agent.
        run_id: the scope's run id in the state store.
        elapsed: seconds since the scope started.
        attempt: the attempt this event is about.
    """

    batch_number: int
    total_batches: int
    batch_size: int
    items: Sequence[Any] = field(repr=False)
    completed_items: int
    total_items: int
    percentage: float
    is_first: bool
    is_last: bool
    scope: str = ""
    run_id: str = ""
    elapsed: float = 0.0
    attempt: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", freeze(list(self.items)))

    def to_dict(self) -> dict[str, Any]:
        """Every field but ``items`` as plain data (``batch_size`` says how many)."""
        return {
            "scope": self.scope,
            "run_id": self.run_id,
            "batch_number": self.batch_number,
            "total_batches": self.total_batches,
            "batch_size": self.batch_size,
            "completed_items": self.completed_items,
            "total_items": self.total_items,
            "percentage": round(self.percentage, 2),
            "is_first": self.is_first,
            "is_last": self.is_last,
            "elapsed": round(self.elapsed, 3),
            "attempt": self.attempt,
        }

    def __str__(self) -> str:
        scope = f"scope `{self.scope}` " if self.scope else ""
        retry = f", attempt {self.attempt}" if self.attempt > 1 else ""
        return (
            f"{scope}batch {self.batch_number}/{self.total_batches}: {self.batch_size} items, "
            f"{self.completed_items}/{self.total_items} done ({self.percentage:.1f}%){retry}"
        )

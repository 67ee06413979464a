"""The progress object pipeline hooks receive."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class BatchProgressContext:
    """Where a batching scope is, as seen by a hook (immutable).

    Attributes:
        batch_number: 1-based number of the batch.
        total_batches: batches in the scope.
        batch_size: items in this batch.
        items: the batch's items.
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

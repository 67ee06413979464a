"""The one immutable progress object that every hook receives."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """Where a run is, as seen by a hook.

    Attributes:
        run_id: the run's id.
        batch_number: 1-based number of the batch this event is about.
        total_batches: batches in the plan, or None while the input length is unknown.
        batch_size: items in this batch.
        completed_items: items finished (succeeded or failed) so far, this batch included
            once it has completed.
        total_items: items in the plan, or None while unknown.
        percentage: ``completed_items / total_items * 100``, or None while unknown.
        elapsed: seconds since the run started.
        is_first: this is batch 1.
        is_last: this is the final batch of the plan.
        attempt: the attempt this event is about (1 for the first).
        failed_items: items that failed so far.
    """

    run_id: str
    batch_number: int
    total_batches: int | None
    batch_size: int
    completed_items: int
    total_items: int | None
    percentage: float | None
    elapsed: float
    is_first: bool
    is_last: bool
    attempt: int = 1
    failed_items: int = 0


def percentage(done: int, total: int | None) -> float | None:
    """``done / total`` in percent, 100.0 for an empty total, None when unknown."""
    if total is None:
        return None
    if total == 0:
        return 100.0
    return min(100.0, done * 100.0 / total)

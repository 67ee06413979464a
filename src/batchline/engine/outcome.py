"""What a run hands back: per-batch outcomes, failures, statistics and the final result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from batchline.engine.keys import Key
from batchline.engine.plan import Batch

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class BatchFailure:
    """Items of one batch that failed after every attempt.

    Attributes:
        batch_number: 1-based number of the batch in the plan.
        keys: keys of the failed items.
        error_type: class name of the last error.
        message: text of the last error.
        attempts: attempts made (the first included).
        traceback: formatted traceback of the last error, when it was raised here.
    """

    batch_number: int
    keys: tuple[Key, ...]
    error_type: str
    message: str
    attempts: int
    traceback: str | None = field(default=None, repr=False, compare=False)


class ItemFailed:
    """Return this in place of one item's result to fail that item alone.

    For front doors that run (and retry) items one by one inside a batch: the other
    items of the batch are committed as results, this one is recorded as failed with
    ``error`` and ``attempts`` (and a resume runs it again).
    """

    __slots__ = ("attempts", "error_type", "message")

    def __init__(self, error: BaseException | str, attempts: int = 1) -> None:
        if isinstance(error, BaseException):
            self.error_type = type(error).__name__
            self.message = str(error)
        else:
            self.error_type = "Error"
            self.message = error
        self.attempts = attempts

    def __repr__(self) -> str:
        return f"ItemFailed({self.error_type}: {self.message!r}, attempts={self.attempts})"


class ItemNotRun:
    """Return this in place of an item's result when the item was not started.

    For front doors that start the items of a batch one by one: once the run is asked to
    stop (``batchline.engine.stop_requested()``), they start no new item and return
    ``ItemNotRun()`` for the rest. Those items are neither committed nor failed (a resume
    runs them), the finished items of the batch are committed, and the run stops.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "ItemNotRun()"


@dataclass(frozen=True, slots=True)
class BatchOutcome(Generic[T, R]):
    """A finished batch, as streamed to the caller once its state is committed.

    Attributes:
        batch: the planned batch (all of its items, including resumed ones).
        results: one per item of ``batch.items``, in order; None where the item failed.
        failures: the failed items, grouped (empty when all succeeded).
        resumed: True when nothing ran: every result came from the state store.
        resumed_items: how many of the batch's items came from the state store.
        attempts: attempts made for the items that ran (0 when fully resumed).
        duration: seconds spent running the batch, retries included.
    """

    batch: Batch[T]
    results: list[R | None]
    failures: tuple[BatchFailure, ...] = ()
    resumed: bool = False
    resumed_items: int = 0
    attempts: int = 1
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every item of the batch has a result."""
        return not self.failures

    @property
    def failed_keys(self) -> set[Key]:
        """Keys of the items that failed."""
        return {key for failure in self.failures for key in failure.keys}


@dataclass(slots=True)
class RunStats:
    """Counts and timing of a run.

    Attributes:
        total: items in the plan (after removing skipped duplicates).
        succeeded: items with a result, resumed ones included.
        failed: items without a result.
        resumed: items whose state was loaded from the store instead of run.
        batches: batches in the plan.
        retries: retry attempts made (attempts beyond the first, over all batches).
        duration: seconds from start to end.
        skipped: duplicate items skipped with ``duplicates="skip"``.
    """

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    resumed: int = 0
    batches: int = 0
    retries: int = 0
    duration: float = 0.0
    skipped: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The stats as a plain dict."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class RunResult(Generic[R]):
    """Everything a run produced.

    Attributes:
        run_id: the run's id (pass it again with the same store to resume).
        results: one per input item, in input order; None where the item failed.
        failures: the failed batches' items, in plan order.
        stats: counts and timing.
        keys: the item keys, aligned with ``results``.
    """

    run_id: str
    results: list[R | None]
    failures: list[BatchFailure]
    stats: RunStats
    keys: list[Key] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """True when no item failed."""
        return not self.failures

    @property
    def failed_keys(self) -> list[Key]:
        """Keys of every failed item, in plan order."""
        return [key for failure in self.failures for key in failure.keys]

    def __repr__(self) -> str:
        stats = self.stats
        return (
            f"RunResult(run_id={self.run_id!r}, ok={self.ok}, total={stats.total}, "
            f"succeeded={stats.succeeded}, failed={stats.failed}, resumed={stats.resumed})"
        )


def group_failures(
    batch_number: int, rows: Sequence[tuple[Key, str, str, int]]
) -> tuple[BatchFailure, ...]:
    """Group failed rows ``(key, error_type, message, attempts)`` of one batch by error."""
    groups: dict[tuple[str, str, int], list[Key]] = {}
    for key, error_type, message, attempts in rows:
        groups.setdefault((error_type, message, attempts), []).append(key)
    return tuple(
        BatchFailure(batch_number, tuple(keys), error_type, message, attempts)
        for (error_type, message, attempts), keys in groups.items()
    )

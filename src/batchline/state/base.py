"""The StateStore protocol and the records it keeps.

A store keeps, per run: its id, status, metadata and a lease (who drives it now);
per item: key, position, status (``done`` or ``failed``), result or error, attempts;
per batch: attempts and timing. The engine writes one transaction per batch through
``commit_batch``; the CLI and the front doors read through the other methods.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

from batchline.state.keys import Key

ItemStatus = Literal["done", "failed"]
RunStatus = Literal["running", "completed", "failed", "stopped", "interrupted"]


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof that this process drives a run; pass it back to write or release."""

    run_id: str
    token: str
    committed_items: int
    resumed: bool


class ItemRecord(NamedTuple):
    """One item's committed state (a named tuple: cheap to make by the hundred thousand)."""

    key: Key
    position: int
    batch_number: int
    status: ItemStatus
    attempts: int
    result: Any = None
    error_type: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A run as listed by ``StateStore.list_runs``."""

    run_id: str
    created_at: float
    updated_at: float
    status: str
    succeeded: int
    failed: int
    total_items: int | None
    meta: Mapping[str, Any] = field(default_factory=dict)
    active_pid: int | None = None
    active_host: str | None = None

    @property
    def pending(self) -> int | None:
        """Items neither succeeded nor failed, when the total is known."""
        if self.total_items is None:
            return None
        return max(0, self.total_items - self.succeeded - self.failed)


@dataclass(frozen=True, slots=True)
class BatchCommit:
    """Everything one finished batch writes, in one transaction.

    ``results`` align with ``keys`` for succeeded items; ``failed`` rows are
    ``(key, position, error_type, message, attempts)``.
    """

    batch_number: int
    keys: Sequence[Key]
    positions: Sequence[int]
    results: Sequence[Any]
    failed: Sequence[tuple[Key, int, str, str, int]]
    attempts: int
    started_at: float
    duration: float


@runtime_checkable
class StateStore(Protocol):
    """Where runs keep their state. ``SQLiteStateStore`` and ``MemoryStateStore`` implement it."""

    @property
    def location(self) -> str:
        """Where the state lives, for messages (a path, or ``memory``)."""
        ...

    def acquire(self, run_id: str, *, meta: Mapping[str, Any] | None = None) -> Lease:
        """Create or resume ``run_id`` and take its lease; raise ``RunActiveError`` if held."""
        ...

    def heartbeat(self, lease: Lease) -> None:
        """Tell other processes the lease holder is alive."""
        ...

    def release(self, lease: Lease, status: RunStatus, *, total_items: int | None = None) -> None:
        """Give up the lease, recording the run's final status."""
        ...

    def lookup(self, run_id: str, keys: Sequence[Key]) -> dict[Key, ItemRecord]:
        """Committed records among ``keys`` (absent keys have no record)."""
        ...

    def commit_batch(self, lease: Lease, commit: BatchCommit) -> None:
        """Write one batch's results and failures atomically.

        Raises:
            BatchResultError: a result is not JSON-serialisable (nothing is written).
        """
        ...

    def list_runs(self) -> list[RunInfo]:
        """Every run, newest first."""
        ...

    def get_run(self, run_id: str) -> RunInfo:
        """One run; ``StateError`` when unknown."""
        ...

    def iter_items(self, run_id: str, status: ItemStatus | None = None) -> Iterator[ItemRecord]:
        """A run's committed items in input order, optionally of one status."""
        ...

    def delete_run(self, run_id: str) -> None:
        """Forget a run and all its items."""
        ...

    def close(self) -> None:
        """Release resources; the store is unusable afterwards."""
        ...

"""What a pipeline run hands back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class PipelineFailure:
    """A batch of a scope that failed after every attempt.

    Attributes:
        scope: the scope's trigger agent.
        batch_number: 1-based number of the batch.
        agent: the agent that raised.
        items: the batch's items (left out of the merged fields).
        error_type: class name of the error.
        message: text of the error.
        attempts: attempts made.
    """

    scope: str
    batch_number: int
    agent: str
    items: Sequence[Any] = field(repr=False)
    error_type: str
    message: str
    attempts: int


@dataclass(slots=True)
class PipelineStats:
    """Counts over every scope of a run."""

    scopes: int = 0
    batches: int = 0
    items: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    resumed: int = 0
    retries: int = 0
    duration: float = 0.0


@dataclass(slots=True)
class PipelineResult:
    """The final context, the failures, and the counts of a pipeline run."""

    context: dict[str, Any]
    failures: list[PipelineFailure]
    stats: PipelineStats
    run_id: str | None = None

    @property
    def ok(self) -> bool:
        """True when no batch failed."""
        return not self.failures


@dataclass(frozen=True, slots=True)
class PipelineUpdate:
    """Handed out by ``Pipeline.stream`` after every finished batch (and once at the end).

    Attributes:
        scope: the scope's trigger agent ("" for the final update).
        batch_number: 1-based number of the batch (0 for the final update).
        total_batches: batches in the scope.
        results: the fields this batch produced (empty when it failed).
        context: the scope's merged fields so far over the context before the scope.
        failure: the batch's failure, if it failed.
        resumed: the batch was loaded from the state store, not run.
        done: True for the final update, whose ``result`` is set.
        result: the pipeline's result (final update only).
    """

    scope: str
    batch_number: int
    total_batches: int
    results: Mapping[str, Any]
    context: Mapping[str, Any]
    failure: PipelineFailure | None = None
    resumed: bool = False
    done: bool = False
    result: PipelineResult | None = None

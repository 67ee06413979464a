"""Errors of the pipeline front door."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from batchline.errors import BatchlineError, BatchRunError, ConfigurationError, RunInterrupted

if TYPE_CHECKING:
    from batchline.pipeline.result import PipelineResult


class BatchingConfigurationError(ConfigurationError):
    """A batching scope is declared or placed wrongly (also a ``ValueError``)."""


class PipelineWarning(UserWarning):
    """Something worth knowing that does not stop the run (e.g. a branch field conflict)."""


class StepError(BatchlineError):
    """An agent failed, or broke its contract (missing inputs, a non-dict output)."""

    def __init__(self, message: str, step_name: str = "") -> None:
        super().__init__(message)
        self.step_name = step_name

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.step_name))


class PipelineBatchError(BatchRunError):
    """A scope stopped after a failed batch (``on_error="stop"``); ``.result`` is partial.

    ``__cause__`` is the exception that failed the batch (its type and text are also in
    the message), so ``except`` clauses and tracebacks see the original error.
    """

    def __init__(self, message: str, result: PipelineResult | None = None) -> None:
        BatchlineError.__init__(self, message)
        self.result = result  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.result))


class PipelineInterrupted(RunInterrupted):
    """SIGINT/SIGTERM (Ctrl-C) stopped a pipeline; ``.result`` is the partial result.

    A ``RunInterrupted`` (so also a ``KeyboardInterrupt``): an uncaught one ends a script
    the way Ctrl-C does. The message names the pipeline's ``run_id`` and says whether and
    how the run resumes.
    """

    def __init__(
        self,
        message: str,
        result: PipelineResult | None = None,
        signal_number: int | None = None,
        run_id: str | None = None,
    ) -> None:
        RunInterrupted.__init__(self, message, None, signal_number)
        self.result = result  # type: ignore[assignment]
        self.run_id = run_id

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.result, self.signal_number, self.run_id))

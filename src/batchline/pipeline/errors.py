"""Errors of the pipeline front door."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from batchline.errors import BatchlineError, BatchRunError, ConfigurationError

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
    """A scope stopped after a failed batch (``on_error="stop"``); ``.result`` is partial."""

    def __init__(self, message: str, result: PipelineResult | None = None) -> None:
        BatchlineError.__init__(self, message)
        self.result = result  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.result))

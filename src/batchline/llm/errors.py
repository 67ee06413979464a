"""Errors of LLM calls, classed for the retry policy: transient or terminal."""

from __future__ import annotations

from typing import Any

from batchline.errors import (
    BatchlineError,
    ConfigurationError,
    StopRun,
    TerminalError,
    TransientError,
)


class LLMError(BatchlineError):
    """Root of the LLM errors."""


class LLMTransientError(TransientError, LLMError):
    """A 429, a 5xx, a timeout or a dropped connection: worth retrying."""

    def __init__(
        self, message: str = "", *, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), self.retry_after, self.status))


def _rebuild(
    cls: type[LLMTransientError], message: str, retry_after: float | None, status: int | None
) -> LLMTransientError:
    return cls(message, retry_after=retry_after, status=status)


class RateLimitedError(LLMTransientError):
    """HTTP 429 from the provider."""


class LLMRequestError(TerminalError, LLMError):
    """A 4xx other than 429: the request itself is wrong; never retried."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.status))


class StructuredOutputError(TerminalError, LLMError):
    """The answer was not valid JSON for the schema, after every repair attempt."""


class BudgetExceededError(StopRun, LLMError):
    """``max_cost_usd`` was reached: no new calls; the run stops and can be resumed."""


class MissingAPIKeyError(ConfigurationError, LLMError):
    """No API key for the default OpenAI endpoint."""

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
    """``max_cost_usd`` was reached: no new calls; the run stops and can be resumed.

    Attributes:
        max_cost_usd: the budget.
        spent_usd: what was spent when the call was refused.
    """

    def __init__(self, message: str, max_cost_usd: float = 0.0, spent_usd: float = 0.0) -> None:
        super().__init__(message)
        self.max_cost_usd = max_cost_usd
        self.spent_usd = spent_usd

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.max_cost_usd, self.spent_usd))


class MissingAPIKeyError(ConfigurationError, LLMError):
    """No API key for the default OpenAI endpoint."""


class UnknownPriceError(ConfigurationError, LLMError):
    """A budget was set for a model with no known price (raised before the first call)."""


class LLMTruncatedError(TerminalError, LLMError):
    """The answer was cut off at ``max_tokens`` (``finish_reason: "length"``).

    Attributes:
        max_tokens: the limit that cut it (None: the server's default).
        text: the truncated answer.
    """

    def __init__(self, message: str, max_tokens: int | None = None, text: str = "") -> None:
        super().__init__(message)
        self.max_tokens = max_tokens
        self.text = text

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.max_tokens, self.text))


class RateLimitTimeoutError(TerminalError, LLMError):
    """A call waited out 429s for longer than ``max_wait`` seconds (never retried further:
    the item fails, a resume tries it again)."""

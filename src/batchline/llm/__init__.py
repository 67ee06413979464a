"""LLM calls: an OpenAI-compatible client with limits, retries, a cache and cost accounting.

The adapters live in the front doors they adapt (``batchline.pipeline.LLMAgent``, the
workflow ``llm`` task in ``batchline.workflow.llm_task``, ``batchline.context.context_handler``);
this package imports no front door."""

from batchline.llm.budget import Budget, format_usd
from batchline.llm.cache import ResponseCache, request_key
from batchline.llm.errors import (
    BudgetExceededError,
    LLMError,
    LLMRequestError,
    LLMTransientError,
    LLMTruncatedError,
    MissingAPIKeyError,
    RateLimitedError,
    RateLimitTimeoutError,
    StructuredOutputError,
    UnknownPriceError,
)
from batchline.llm.limits import AdaptiveLimiter, TokenBucket
from batchline.llm.model import ChatModel, Completion
from batchline.llm.packing import acomplete_items
from batchline.llm.prices import DEFAULT_PRICES, PriceBook, Usage
from batchline.llm.ratelimit import RateGovernor
from batchline.llm.ratelimit_headers import RateLimitHeaders, parse_duration, read_headers

__all__ = [
    "DEFAULT_PRICES",
    "AdaptiveLimiter",
    "Budget",
    "BudgetExceededError",
    "ChatModel",
    "Completion",
    "LLMError",
    "LLMRequestError",
    "LLMTransientError",
    "LLMTruncatedError",
    "MissingAPIKeyError",
    "PriceBook",
    "RateGovernor",
    "RateLimitHeaders",
    "RateLimitTimeoutError",
    "RateLimitedError",
    "ResponseCache",
    "StructuredOutputError",
    "TokenBucket",
    "UnknownPriceError",
    "Usage",
    "acomplete_items",
    "format_usd",
    "parse_duration",
    "read_headers",
    "request_key",
]

"""LLM calls: an OpenAI-compatible client with limits, retries, a cache and cost accounting.

The adapters live in the front doors they adapt (``batchline.pipeline.LLMAgent``, the
workflow ``llm`` task in ``batchline.workflow.llm_task``, ``batchline.context.context_handler``);
this package imports no front door."""

from batchline.llm.cache import ResponseCache, request_key
from batchline.llm.errors import (
    BudgetExceededError,
    LLMError,
    LLMRequestError,
    LLMTransientError,
    MissingAPIKeyError,
    RateLimitedError,
    StructuredOutputError,
)
from batchline.llm.limits import AdaptiveLimiter, TokenBucket
from batchline.llm.model import ChatModel, Completion
from batchline.llm.packing import acomplete_items
from batchline.llm.prices import DEFAULT_PRICES, Usage

__all__ = [
    "DEFAULT_PRICES",
    "AdaptiveLimiter",
    "BudgetExceededError",
    "ChatModel",
    "Completion",
    "LLMError",
    "LLMRequestError",
    "LLMTransientError",
    "MissingAPIKeyError",
    "RateLimitedError",
    "ResponseCache",
    "StructuredOutputError",
    "TokenBucket",
    "Usage",
    "acomplete_items",
    "request_key",
]

"""How ``ChatModel`` is wired to a provider: endpoints, keys, the batch collector.

Kept out of ``llm/model.py`` so the client's hooks stay small: ``endpoint`` resolves the
base URL and key of a provider, ``batch_collector`` builds the collector of a model in
``mode="batch"`` (batch prices, budget, journal).
"""

from __future__ import annotations

import contextvars
import copy
import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from batchline.llm.batch.collector import BatchCollector
from batchline.llm.batch.journal import BatchJournal
from batchline.llm.batch.providers import AnthropicBatches, BatchProvider, OpenAIBatches
from batchline.llm.errors import MissingAPIKeyError
from batchline.llm.prices import Usage, cost
from batchline.llm.providers.anthropic import ANTHROPIC_URL, AnthropicTransport

__all__ = [
    "BATCH_DISCOUNT",
    "MODES",
    "PROVIDERS",
    "AnthropicTransport",
    "batch_collector",
    "batch_twin",
    "check_choice",
    "endpoint",
    "request_name",
]

OPENAI_URL = "https://api.openai.com/v1"
PROVIDERS = ("openai", "anthropic")
MODES = ("online", "batch")
BATCH_DISCOUNT = 0.5
"""Batch price / online price at OpenAI and Anthropic (when no ``batch_prices`` say else)."""

_NAME: contextvars.ContextVar[str | None] = contextvars.ContextVar("batchline_request_name")


@contextmanager
def request_name(name: str | None) -> Iterator[None]:
    """Name the requests made inside the block (the item's key): in batch mode it becomes
    the request's ``custom_id``."""
    token = _NAME.set(None if name is None else str(name))
    try:
        yield
    finally:
        _NAME.reset(token)


def current_request_name() -> str | None:
    """The name set by ``request_name`` around the current call, if any."""
    return _NAME.get(None)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a ``ValueError`` that lists them."""
    if value not in choices:
        raise ValueError(f"`{name}` is {value!r}; expected one of {', '.join(choices)}")
    return value


def endpoint(provider: str, base_url: str | None, api_key: str | None) -> tuple[str, str]:
    """``(base_url, api_key)`` of ``provider`` from the arguments or the environment
    (``OPENAI_BASE_URL``/``OPENAI_API_KEY``, ``ANTHROPIC_BASE_URL``/``ANTHROPIC_API_KEY``).

    Raises:
        MissingAPIKeyError: no key for the provider's own endpoint.
    """
    if provider == "anthropic":
        base = (base_url or os.environ.get("ANTHROPIC_BASE_URL") or ANTHROPIC_URL).rstrip("/")
        base = re.sub(r"/v1$", "", base)  # the Messages API paths start with /v1
        key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not key and base == ANTHROPIC_URL:
            raise MissingAPIKeyError(
                "no API key for api.anthropic.com: set ANTHROPIC_API_KEY (or pass api_key=), "
                "or point ANTHROPIC_BASE_URL / base_url= at a server speaking Anthropic's "
                "Messages API (`python -m batchline.testing.server`)."
            )
        return base, key or "not-needed"
    base = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
    key = api_key or os.environ.get("OPENAI_API_KEY")
    if not key and base == OPENAI_URL:
        raise MissingAPIKeyError(
            "no API key for api.openai.com: set OPENAI_API_KEY (or pass api_key=), or point "
            "OPENAI_BASE_URL / base_url= at a compatible server (vLLM, Ollama, "
            "`python -m batchline.testing.server`)."
        )
    return base, key or "not-needed"


def batch_collector(
    model: Any,
    *,
    usage_of: Callable[[dict[str, Any]], Usage],
    journal: BatchJournal | None,
    poll_interval: float,
    batch_prices: Mapping[str, tuple[float, float, float]] | None,
    cancel_jobs: bool | None,
    cache_dir: str | Path,
    max_attempts: int,
) -> BatchCollector:
    """The collector of ``model`` (a ``ChatModel`` in batch mode)."""
    provider: BatchProvider
    if model.provider == "anthropic":
        provider = AnthropicBatches(model.base_url, model.api_key)
    else:
        provider = OpenAIBatches(model.base_url, model.api_key)
    if journal is None:
        journal = BatchJournal.in_directory(
            cache_dir, f"llm-batches:{model.provider}:{model.model}"
        )
    prices = dict(batch_prices) if batch_prices else None

    def batch_usage(response: dict[str, Any]) -> Usage:
        usage = usage_of(response)
        if prices is not None:
            usage.cost_usd = cost(
                model.model,
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens,
                prices,
            )
        else:
            usage.cost_usd *= BATCH_DISCOUNT
        return usage

    def estimate(body: dict[str, Any]) -> float:
        text = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
        prompt = text // 4 + 1
        output = int(body.get("max_tokens") or 256)
        if prices is not None:
            return cost(model.model, prompt, output, 0, prices)
        return float(model.price_book.cost(prompt, output)) * BATCH_DISCOUNT

    def budget() -> tuple[float | None, float]:
        return model.max_cost_usd, float(model.usage.cost_usd)

    if cancel_jobs is None:
        cancel_jobs = os.environ.get("BATCHLINE_CANCEL_JOBS", "") not in ("", "0")
    return BatchCollector(
        provider,
        journal,
        usage_of=batch_usage,
        on_usage=model.usage.add,
        estimate=estimate,
        budget=budget,
        poll_interval=poll_interval,
        max_attempts=max_attempts,
        cancel_on_interrupt=cancel_jobs,
        label=f"{model.provider} model {model.model!r}",
    )


def batch_twin(
    model: Any, usage_of: Callable[[dict[str, Any]], Usage], options: Mapping[str, Any]
) -> Any:
    """A shallow copy of ``model`` in batch mode (shares its cache, limits and usage)."""
    twin = copy.copy(model)
    twin.mode = "batch"
    known = {"poll_interval", "batch_prices", "batch_journal", "cancel_jobs", "cache_dir"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown batch option(s) {unknown}; expected some of {sorted(known)}")
    previous = getattr(model.batch, "poll_interval", 30.0)
    twin.batch = batch_collector(
        twin,
        usage_of=usage_of,
        journal=options.get("batch_journal"),
        poll_interval=float(options.get("poll_interval", previous)),
        batch_prices=options.get("batch_prices"),
        cancel_jobs=options.get("cancel_jobs"),
        cache_dir=str(options.get("cache_dir") or getattr(model, "cache_dir", ".batchline")),
        max_attempts=model.retry.max_attempts,
    )
    return twin

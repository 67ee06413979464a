"""Prices and cost accounting.

Where a model's price comes from, first match wins:

1. ``prices=`` given to ``ChatModel`` (YAML: ``prices:`` on the ``llm`` task or in the
   workflow's ``settings``): ``{model_prefix: (input, cached_input, output)}`` in USD per
   1M tokens, longest prefix first;
2. the maintained `genai-prices <https://pypi.org/project/genai-prices/>`_ table (OpenAI,
   Anthropic, Google, Mistral, ... with provider prefixes such as ``openai/gpt-4o-mini``);
3. ``DEFAULT_PRICES``: only the local test server's ``test-model``.

A proxy that reports the cost of each call (LiteLLM's ``x-litellm-response-cost``) is
believed over all of these. A model with no price anywhere costs 0 with a warning (once per
model), and is refused when a budget is set (``UnknownPriceError``).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from batchline.llm.errors import UnknownPriceError

# model prefix -> (input, cached input, output) USD per 1M tokens
DEFAULT_PRICES: dict[str, tuple[float, float, float]] = {
    "test-model": (1.00, 0.50, 2.00),  # the local test server's model
}

PriceTable = Mapping[str, tuple[float, float, float]]


def price_of(model: str, prices: PriceTable) -> tuple[float, float, float] | None:
    """The price row of the longest prefix of ``model`` in ``prices`` (None if none)."""
    best = ""
    for name in prices:
        if model.startswith(name) and len(name) > len(best):
            best = name
    return tuple(prices[best]) if best else None  # type: ignore[return-value]


def _genai_price(model: str, prompt: int, completion: int, cached: int) -> float | None:
    """USD from genai-prices, or None if it does not know the model."""
    try:
        from genai_prices import Usage as GenaiUsage  # noqa: PLC0415 - loads its data
        from genai_prices import calc_price  # noqa: PLC0415
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    usage = GenaiUsage(input_tokens=prompt, cache_read_tokens=cached, output_tokens=completion)
    provider, slash, name = model.partition("/")
    attempts: list[tuple[str, str | None]] = [(model, None)]
    if slash:
        attempts = [(name, provider), (name, None), (model, None)]
    for ref, provider_id in attempts:
        try:
            result: Any = calc_price(usage, ref, provider_id=provider_id)
        except (LookupError, ValueError):
            continue
        return float(result.total_price)
    return None


class PriceBook:
    """The price of one model, from the first source that knows it.

    Args:
        model: the model name as sent to the server.
        overrides: ``prices=`` (USD per 1M tokens by model prefix), checked first.
    """

    def __init__(self, model: str, overrides: PriceTable | None = None) -> None:
        self.model = model
        self.overrides = dict(overrides or {})
        self._row = price_of(model, self.overrides)
        self.source: str | None = "prices=" if self._row is not None else None
        if self._row is None and _genai_price(model, 1000, 1000, 0) is not None:
            self.source = "genai-prices"
        if self.source is None:
            self._row = price_of(model, DEFAULT_PRICES)
            self.source = "built-in" if self._row is not None else None

    @property
    def known(self) -> bool:
        """Whether any source has a price for the model."""
        return self.source is not None

    def cost(self, prompt: int, completion: int, cached: int = 0) -> float:
        """USD for one call (0 for an unknown model)."""
        if self._row is not None:
            fresh_in, cached_in, out = self._row
            return ((prompt - cached) * fresh_in + cached * cached_in + completion * out) / 1e6
        if self.source == "genai-prices":
            return _genai_price(self.model, prompt, completion, cached) or 0.0
        return 0.0

    def warn_if_unknown(self) -> None:
        """Warn once per model and process that its calls are counted as free."""
        if self.known:
            return
        with _WARNED_LOCK:
            if self.model in _WARNED:
                return
            _WARNED.add(self.model)
        warnings.warn(unknown_price_message(self.model, budget=False), stacklevel=3)

    def require_known(self, max_cost_usd: float) -> None:
        """Refuse a budget for a model without a price (before any call)."""
        if not self.known:
            raise UnknownPriceError(
                unknown_price_message(self.model, budget=True, max_cost_usd=max_cost_usd)
            )


_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()


def unknown_price_message(model: str, *, budget: bool, max_cost_usd: float = 0.0) -> str:
    """Why the model has no price, and how to give one."""
    how = (
        f"give its price in USD per 1M tokens: ChatModel(..., prices={{{model!r}: "
        "(input, cached_input, output)}), or in YAML `prices: {"
        f"{model}: [input, cached_input, output]}}` on the llm task or in the workflow's "
        "`settings`"
    )
    if budget:
        return (
            f"model `{model}` has no known price (not in `prices=`, genai-prices, or the "
            f"built-in table), so a budget of ${max_cost_usd:g} cannot be enforced; {how}."
        )
    return f"model `{model}` has no known price: its calls are counted as $0; {how}."


@dataclass
class Usage:
    """Tokens and dollars, summed over calls.

    Attributes:
        calls, cached_calls: requests answered (from the cache: free).
        prompt_tokens, completion_tokens, cached_tokens: tokens as reported by the server.
        cost_usd: dollars spent.
        retries: requests repeated after a 5xx, timeout or connection error.
        rate_limited: 429 answers (waited out, never counted against an item's attempts).
    """

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
    retries: int = 0
    rate_limited: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, other: Usage) -> None:
        """Add another usage into this one."""
        with self._lock:
            self.calls += other.calls
            self.cached_calls += other.cached_calls
            self.prompt_tokens += other.prompt_tokens
            self.completion_tokens += other.completion_tokens
            self.cached_tokens += other.cached_tokens
            self.cost_usd += other.cost_usd
            self.retries += other.retries
            self.rate_limited += other.rate_limited

    def as_dict(self) -> dict[str, float | int]:
        """Plain data (the cost unrounded: a cheap model's calls cost fractions of a cent)."""
        return {
            "calls": self.calls,
            "cached_calls": self.cached_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "cost_usd": self.cost_usd,
            "retries": self.retries,
            "rate_limited": self.rate_limited,
        }


def cost(
    model: str,
    prompt: int,
    completion: int,
    cached: int,
    prices: PriceTable,
) -> float:
    """Dollars for one call at ``prices`` over genai-prices (0 for an unknown model)."""
    return PriceBook(model, prices).cost(prompt, completion, cached)


def parse_prices(raw: Any, where: str = "prices") -> dict[str, tuple[float, float, float]]:
    """Prices from YAML/JSON: ``{model: [input, cached_input, output]}`` or ``{model:
    {input: .., cached_input: .., output: ..}}`` (USD per 1M tokens; ``cached_input``
    defaults to ``input``).

    Raises:
        ConfigurationError: naming the model and what was found.
    """
    from batchline.errors import ConfigurationError  # noqa: PLC0415

    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(
            f"`{where}` is {type(raw).__name__}; expected a mapping model -> "
            "[input, cached_input, output] in USD per 1M tokens"
        )
    table: dict[str, tuple[float, float, float]] = {}
    for model, row in raw.items():
        values: list[Any]
        if isinstance(row, Mapping):
            fresh = row.get("input")
            values = [fresh, row.get("cached_input", fresh), row.get("output")]
        elif isinstance(row, list | tuple) and len(row) in (2, 3):
            values = [row[0], row[1], row[2]] if len(row) == 3 else [row[0], row[0], row[1]]
        else:
            values = [None]
        if len(values) != 3 or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in values
        ):
            raise ConfigurationError(
                f"`{where}.{model}` is {row!r}; expected [input, cached_input, output] (or "
                "[input, output], or {input: .., output: ..}) in USD per 1M tokens, e.g. "
                f"{model}: [0.15, 0.075, 0.60]"
            )
        table[str(model)] = (float(values[0]), float(values[1]), float(values[2]))
    return table

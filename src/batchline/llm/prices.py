"""Prices in US dollars per million tokens, and cost accounting.

The table is a default that goes stale: pass ``ChatModel(prices={...})`` to override or
add models. A model with no price costs 0 (and its tokens are still counted).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

# model prefix -> (input, cached input, output) USD per 1M tokens
DEFAULT_PRICES: dict[str, tuple[float, float, float]] = {
    "gpt-4o-mini": (0.15, 0.075, 0.60),
    "gpt-4o": (2.50, 1.25, 10.00),
    "gpt-4.1-nano": (0.10, 0.025, 0.40),
    "gpt-4.1-mini": (0.40, 0.10, 1.60),
    "gpt-4.1": (2.00, 0.50, 8.00),
    "o4-mini": (1.10, 0.275, 4.40),
    "test-model": (1.00, 0.50, 2.00),
}


def price_of(
    model: str, prices: Mapping[str, tuple[float, float, float]]
) -> tuple[float, float, float]:
    """The price row of the longest prefix of ``model`` in ``prices`` (0s if none)."""
    best = ""
    for name in prices:
        if model.startswith(name) and len(name) > len(best):
            best = name
    return prices[best] if best else (0.0, 0.0, 0.0)


@dataclass
class Usage:
    """Tokens and dollars, summed over calls."""

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0
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

    def as_dict(self) -> dict[str, float | int]:
        """Plain data."""
        return {
            "calls": self.calls,
            "cached_calls": self.cached_calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cached_tokens": self.cached_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


def cost(
    model: str,
    prompt: int,
    completion: int,
    cached: int,
    prices: Mapping[str, tuple[float, float, float]],
) -> float:
    """Dollars for one call."""
    fresh_in, cached_in, out = price_of(model, prices)
    return ((prompt - cached) * fresh_in + cached * cached_in + completion * out) / 1_000_000

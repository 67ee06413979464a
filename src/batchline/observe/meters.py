"""Live meters the progress display reads: what LLM calls have cost so far in this process.

Plug-ins (the LLM client) register a source; displays read the total. Nothing here
imports a plug-in, so the display works with or without LLM steps.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

_SOURCES: dict[str, Callable[[], float]] = {}
_LOCK = threading.Lock()


def add_cost_source(name: str, source: Callable[[], float]) -> None:
    """Register ``source() -> USD spent so far`` under ``name`` (once per name)."""
    with _LOCK:
        _SOURCES.setdefault(name, source)


def total_cost() -> float | None:
    """USD spent so far by every registered source, or None if there is none."""
    with _LOCK:
        sources = list(_SOURCES.values())
    if not sources:
        return None
    return sum(source() for source in sources)


def format_usd(amount: float) -> str:
    """Dollars with at least 4 significant digits: ``$0.0001234``, ``$1.234``, ``$12.35``."""
    if amount == 0:
        return "$0"
    if not math.isfinite(amount):
        return f"${amount}"
    magnitude = math.floor(math.log10(abs(amount)))
    decimals = max(2, 3 - magnitude)
    return f"${amount:,.{decimals}f}"


def cost_line(spent: float, done: int, total: int | None, elapsed: float) -> str:
    """``$0.01234 so far, ~$0.04936 projected, ETA 12s`` for a step ``done`` of ``total``."""
    parts = [f"{format_usd(spent)} so far"]
    if total and done:
        parts.append(f"~{format_usd(spent / done * total)} projected")
        left = elapsed / done * (total - done)
        parts.append(f"ETA {_duration(left)}")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


__all__ = ["add_cost_source", "cost_line", "format_usd", "total_cost"]

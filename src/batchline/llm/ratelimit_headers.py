"""Reading what a server says about its rate limits and costs, from response headers.

Every style seen in the wild is understood:

- ``Retry-After`` in seconds (``"2"``, ``"0.5"``) or as an HTTP date;
- ``retry-after-ms`` (OpenAI, Azure's ``x-ms-retry-after-ms``) in milliseconds;
- ``x-ratelimit-reset-requests`` / ``x-ratelimit-reset-tokens`` as Go-style durations
  (``"1.2s"``, ``"6m0s"``, ``"250ms"``, ``"1h2m3s"``) or plain seconds;
- ``x-ratelimit-limit-requests`` / ``-tokens`` and ``x-ratelimit-remaining-requests`` /
  ``-tokens`` (OpenAI, LiteLLM, vLLM routers), and Anthropic's
  ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}`` (reset as an RFC 3339 time);
- a proxy's own retry header (``x-retry-after``, ``x-litellm-retry-after``);
- LiteLLM's ``x-litellm-response-cost`` (USD for the call).

Pure functions, no I/O: the rate governor decides what to do with the result.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")


def parse_duration(text: str | None) -> float | None:
    """Seconds in ``"1.2s"``, ``"6m0s"``, ``"250ms"``, ``"1h2m3.5s"`` or ``"20"``; None if
    the text is none of these."""
    if text is None:
        return None
    value = text.strip().lower()
    if not value:
        return None
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        return number if math.isfinite(number) and number >= 0 else None
    position = 0
    total = 0.0
    for match in _PART.finditer(value):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    return total if position == len(value) and position > 0 else None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: seconds, or an HTTP date."""
    if value is None or not value.strip():
        return None
    seconds = parse_duration(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return _seconds_until_iso(value, now)
    if when is None:  # pragma: no cover - older Pythons returned None
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _seconds_until_iso(value: str, now: float | None) -> float | None:
    """Seconds until an RFC 3339 time (Anthropic's ``*-reset`` headers)."""
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """What one response said about limits and cost (None: not said).

    Attributes:
        retry_after: seconds to wait before the next request (from any retry header).
        limit_requests, remaining_requests, reset_requests: the request limit, what is
            left of it, and seconds until it is replenished.
        limit_tokens, remaining_tokens, reset_tokens: the same for tokens.
        cost_usd: the proxy's cost for this call (LiteLLM).
    """

    retry_after: float | None = None
    limit_requests: float | None = None
    remaining_requests: float | None = None
    reset_requests: float | None = None
    limit_tokens: float | None = None
    remaining_tokens: float | None = None
    reset_tokens: float | None = None
    cost_usd: float | None = None

    @property
    def wait_hint(self) -> float | None:
        """How long a 429 asks to wait: its retry header, else the reset of a used-up
        limit, else the nearest reset it gives (None: it does not say)."""
        if self.retry_after is not None:
            return self.retry_after
        if self.exhausted_for is not None:
            return self.exhausted_for
        resets = [r for r in (self.reset_requests, self.reset_tokens) if r is not None]
        return min(resets) if resets else None

    @property
    def exhausted_for(self) -> float | None:
        """Seconds to wait for a limit the server says is used up (remaining 0), else None.

        ``x-ratelimit-reset-*`` is the time until the limit is whole again (OpenAI's
        meaning); with the limit known, one request is back after ``reset / limit`` of it.
        """
        waits = []
        used_up = self.remaining_requests is not None and self.remaining_requests <= 0
        if used_up and self.reset_requests is not None:
            per = self.limit_requests if self.limit_requests else 1.0
            waits.append(self.reset_requests / max(1.0, per))
        tokens_used_up = self.remaining_tokens is not None and self.remaining_tokens <= 0
        if tokens_used_up and self.reset_tokens is not None:
            waits.append(self.reset_tokens)
        return max(waits) if waits else None


def read_headers(headers: Mapping[str, str] | None, now: float | None = None) -> RateLimitHeaders:
    """Parse the rate-limit and cost headers of one response (names are case-insensitive)."""
    if not headers:
        return RateLimitHeaders()
    h = {str(k).lower(): str(v) for k, v in headers.items()}
    retry_after = None
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        millis = _number(h.get(name))
        if millis is not None:
            retry_after = millis / 1000.0
            break
    if retry_after is None:
        for name in ("retry-after", "x-retry-after", "x-litellm-retry-after"):
            retry_after = parse_retry_after(h.get(name), now)
            if retry_after is not None:
                break

    def reset(kind: str) -> float | None:
        openai_style = parse_duration(h.get(f"x-ratelimit-reset-{kind}"))
        if openai_style is not None:
            return openai_style
        anthropic = h.get(f"anthropic-ratelimit-{kind}-reset")
        return _seconds_until_iso(anthropic, now) if anthropic else None

    def pick(kind: str, field: str) -> float | None:
        value = _number(h.get(f"x-ratelimit-{field}-{kind}"))
        if value is None:
            value = _number(h.get(f"anthropic-ratelimit-{kind}-{field}"))
        return value

    return RateLimitHeaders(
        retry_after=retry_after,
        limit_requests=pick("requests", "limit"),
        remaining_requests=pick("requests", "remaining"),
        reset_requests=reset("requests"),
        limit_tokens=pick("tokens", "limit"),
        remaining_tokens=pick("tokens", "remaining"),
        reset_tokens=reset("tokens"),
        cost_usd=_number(h.get("x-litellm-response-cost")),
    )


__all__ = ["RateLimitHeaders", "parse_duration", "parse_retry_after", "read_headers"]

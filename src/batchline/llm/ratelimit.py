"""The rate governor of one endpoint: cool-downs, an adaptive request rate, advertised limits.

One governor exists per endpoint (base URL and API key) in a process, shared by every
``ChatModel`` that talks to it, because the server's limit is shared too:

- **Global cool-down.** A 429 that says how long to wait (``Retry-After``,
  ``retry-after-ms``, ...) pauses *every* request to the endpoint until then, not just the
  one call; a 429 that says nothing starts a cool-down of its own that doubles while 429s
  go on (0.5 s, 1 s, 2 s, ... at most 60 s) and resets on a success. A response saying a
  limit is used up (``x-ratelimit-remaining-requests: 0`` with its reset) pauses the same
  way, before any 429.
- **Adaptive rate.** A 429 that does not say how long to wait sets a request rate from
  what the server accepted over the last minute, then cuts it (x0.7, at most every 2 s);
  every second of sending grows it (5%, at least 0.2 requests/s), so a run settles at the
  server's rate instead of bursting into it. A server that says how long to wait is
  followed exactly instead: its waits are the pacing (a sliding window frees its slots in
  bursts that a fixed rate would waste).
- **Advertised limits.** ``x-ratelimit-limit-requests`` / ``-tokens`` (per minute, as
  OpenAI, Azure and LiteLLM report them) become request and token buckets holding up to a
  minute's worth, kept in step with ``x-ratelimit-remaining-*``.

State is guarded by a thread lock and waiting is ``asyncio.sleep`` in short steps, so it
works across the chunk threads' event loops.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
import time
from collections import deque

from batchline.llm.limits import TokenBucket
from batchline.llm.ratelimit_headers import RateLimitHeaders

MIN_RATE = 0.05  # requests per second: the slowest the adaptive rate ever goes
GROWTH = 0.05  # the adaptive rate grows by this share per second of sending
MIN_GROWTH = 0.2  # and by at least this many requests per second, per second
CUT_EVERY = 2.0  # seconds between two cuts of the rate
CUT = 0.7  # and is multiplied by this on each new cool-down
MAX_OWN_COOLDOWN = 60.0  # seconds, for 429s that do not say how long to wait


class RateGovernor:
    """Cool-downs, an adaptive request rate and advertised limits for one endpoint.

    Args:
        adaptive: adapt the request rate to 429s (False: only cool-downs).
    """

    def __init__(self, *, adaptive: bool = True) -> None:
        self.adaptive = adaptive
        self.rate: float | None = None  # requests per second; None: not limited
        self.cooldown_until = 0.0
        self.rate_limited = 0  # 429s seen
        self.cooldowns = 0  # cool-downs started
        self.advertised_rpm: TokenBucket | None = None
        self.advertised_tpm: TokenBucket | None = None
        self._advertised = (0.0, 0.0)
        self._allowance = 1.0
        self._stamp = time.monotonic()
        self._ok: deque[float] = deque()
        self._streak = 0
        self._last_cut = -CUT_EVERY
        self._lock = threading.Lock()

    # -- waiting ----------------------------------------------------------------------

    async def wait_turn(self, tokens: int = 0) -> float:
        """Wait for the cool-down, the adaptive rate and the advertised limits; return the
        seconds waited."""
        started = time.monotonic()
        while True:
            delay = self._delay()
            if delay <= 0:
                break
            await asyncio.sleep(min(delay, 0.5))
        if self.advertised_rpm is not None:
            await self.advertised_rpm.acquire(1)
        if self.advertised_tpm is not None and tokens:
            await self.advertised_tpm.acquire(tokens)
        return time.monotonic() - started

    def _delay(self) -> float:
        with self._lock:
            now = time.monotonic()
            if now < self.cooldown_until:
                self._stamp = now  # no growth while cooling down
                return self.cooldown_until - now
            if self.rate is None:
                return 0.0
            elapsed = min(1.0, now - self._stamp)
            self._stamp = now
            self.rate += max(GROWTH * self.rate, MIN_GROWTH) * elapsed
            self._allowance = min(max(1.0, self.rate), self._allowance + elapsed * self.rate)
            if self._allowance >= 1.0:
                self._allowance -= 1.0
                return 0.0
            return (1.0 - self._allowance) / self.rate

    # -- what the server said ---------------------------------------------------------

    def succeeded(self) -> None:
        """A request was accepted."""
        with self._lock:
            now = time.monotonic()
            self._ok.append(now)
            while self._ok and now - self._ok[0] > 60.0:
                self._ok.popleft()
            self._streak = 0

    def limited(self, retry_after: float | None) -> float:
        """A 429: start (or extend) the endpoint's cool-down; return its seconds left."""
        with self._lock:
            now = time.monotonic()
            self.rate_limited += 1
            new_episode = now >= self.cooldown_until
            if retry_after is None:
                if new_episode:  # one step per cool-down, however many 429s were in flight
                    self._streak += 1
                wait = min(MAX_OWN_COOLDOWN, 0.5 * 2 ** min(self._streak - 1, 10))
                wait *= 1.0 + 0.25 * random.random()
            else:
                wait = retry_after
            if new_episode:
                self.cooldowns += 1
                # A server that says how long to wait paces us exactly with it (a sliding
                # window frees its slots in bursts that pacing would waste); one that says
                # nothing gets a learnt request rate.
                if self.adaptive and retry_after is None and now - self._last_cut >= CUT_EVERY:
                    self._cut_rate(now)
            self.cooldown_until = max(self.cooldown_until, now + wait)
            return self.cooldown_until - now

    def _cut_rate(self, now: float) -> None:
        while self._ok and now - self._ok[0] > 60.0:
            self._ok.popleft()
        span = min(60.0, max(1.0, now - self._ok[0])) if self._ok else 60.0
        measured = max(MIN_RATE, len(self._ok) / span)
        self._last_cut = now
        self.rate = (
            measured * 0.9 if self.rate is None else max(MIN_RATE, min(self.rate, measured) * CUT)
        )
        self._allowance = min(self._allowance, 1.0)

    def observe(self, info: RateLimitHeaders) -> None:
        """Use what a response's headers said: used-up limits pause, advertised limits
        become buckets."""
        exhausted = info.exhausted_for
        with self._lock:
            if exhausted is not None:
                self.cooldown_until = max(self.cooldown_until, time.monotonic() + exhausted)
            advertised = (info.limit_requests or 0.0, info.limit_tokens or 0.0)
            if advertised not in (self._advertised, (0.0, 0.0)):
                self._advertised = advertised
                requests, tokens = advertised
                if requests:
                    self.advertised_rpm = TokenBucket(requests, burst=requests)
                if tokens:
                    self.advertised_tpm = TokenBucket(tokens, burst=tokens)
            rpm, tpm = self.advertised_rpm, self.advertised_tpm
        if rpm is not None and info.remaining_requests is not None:
            rpm.sync(info.remaining_requests)  # the server's count beats our estimate
        if tpm is not None and info.remaining_tokens is not None:
            tpm.sync(info.remaining_tokens)


_GOVERNORS: dict[tuple[str, str, bool], RateGovernor] = {}
_REGISTRY_LOCK = threading.Lock()


def governor_for(base_url: str, api_key: str, *, adaptive: bool = True) -> RateGovernor:
    """The process's governor for an endpoint (a base URL with an API key)."""
    key = (base_url, hashlib.sha256(api_key.encode()).hexdigest()[:16], adaptive)
    with _REGISTRY_LOCK:
        governor = _GOVERNORS.get(key)
        if governor is None:
            governor = _GOVERNORS[key] = RateGovernor(adaptive=adaptive)
        return governor


__all__ = ["RateGovernor", "governor_for"]

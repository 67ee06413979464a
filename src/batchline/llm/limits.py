"""Client-side limits: requests and tokens per minute, and adaptive concurrency (AIMD).

The limiters are shared by every thread and event loop that uses one ``ChatModel``:
state is guarded by a thread lock and waiting is ``await asyncio.sleep`` in short steps,
so 64 requests in flight are 64 coroutines, never 64 blocked threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque


class TokenBucket:
    """``rate_per_minute`` units per minute, with a burst of one second's worth (or
    ``burst``: a server that advertises its limit lets a whole minute's worth go at once).

    ``safety`` keeps the client just under the provider's limit (0.98 = 2% headroom), so a
    run settles below it instead of hammering it.
    """

    def __init__(
        self, rate_per_minute: float, *, safety: float = 0.98, burst: float | None = None
    ) -> None:
        self.rate = rate_per_minute * safety / 60.0
        self.capacity = max(1.0, self.rate if burst is None else burst)
        self._tokens = self.capacity
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def _take(self, amount: float) -> float:
        """Take ``amount`` if available (return 0) or return the seconds to wait."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            need = min(amount, self.capacity)
            if self._tokens >= need:
                self._tokens -= amount
                return 0.0
            return (need - self._tokens) / self.rate

    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until ``amount`` units are available and take them."""
        while True:
            wait = self._take(amount)
            if wait <= 0:
                return
            await asyncio.sleep(min(wait, 1.0))

    def sync(self, remaining: float) -> None:
        """Set what is left to what the server says is left (``x-ratelimit-remaining-*``)."""
        with self._lock:
            self._tokens = min(self.capacity, float(remaining))
            self._stamp = time.monotonic()

    def pause(self, seconds: float) -> None:
        """Spend the bucket so nothing goes out for ``seconds`` (after a 429)."""
        with self._lock:
            self._tokens = min(self._tokens, -seconds * self.rate)
            self._stamp = time.monotonic()


class _Waiter:
    __slots__ = ("cancelled", "future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
        self.loop = loop
        self.future = future
        self.granted = False
        self.cancelled = False


def _current_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AdaptiveLimiter:
    """Concurrency that grows by one per round of successes and halves on a 429 (AIMD).

    Args:
        maximum: the most requests in flight.
        minimum: the fewest it ever drops to.
        adaptive: False keeps the limit at ``maximum``.
    """

    def __init__(self, maximum: int, *, minimum: int = 1, adaptive: bool = True) -> None:
        self.maximum = maximum
        self.minimum = minimum
        self.adaptive = adaptive
        self.limit = float(maximum)
        self.in_flight = 0
        self.peak = 0
        self._last_cut = 0.0
        self._lock = threading.Lock()
        # Waiters from any thread's event loop, woken first come, first served.
        self._waiters: deque[_Waiter] = deque()

    async def acquire(self) -> None:
        """Wait for a free slot (no polling: a release wakes the next waiter)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self.in_flight < int(self.limit) and not self._waiters:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
                return
            waiter = _Waiter(loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            with self._lock:
                waiter.cancelled = True
                if waiter.granted:
                    self._release_locked()  # the slot was handed to us: pass it on
            raise

    def release(self, *, success: bool = True) -> None:
        """Free a slot; a success grows the limit by ``1 / limit`` (one per round)."""
        with self._lock:
            if success and self.adaptive and self.limit < self.maximum:
                self.limit = min(float(self.maximum), self.limit + 1.0 / self.limit)
            self._release_locked()

    def _release_locked(self) -> None:
        self.in_flight -= 1
        while self._waiters and self.in_flight < int(self.limit):
            waiter = self._waiters.popleft()
            if waiter.cancelled:
                continue
            waiter.granted = True
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            if waiter.loop is _current_loop():
                waiter.loop.call_soon(_wake, waiter.future)  # same loop: no self-pipe write
            else:
                waiter.loop.call_soon_threadsafe(_wake, waiter.future)

    def rate_limited(self) -> None:
        """A 429: halve the limit (at most once a second, however many 429s arrive)."""
        if not self.adaptive:
            return
        with self._lock:
            now = time.monotonic()
            if now - self._last_cut >= 1.0:
                self.limit = max(float(self.minimum), self.limit / 2)
                self._last_cut = now

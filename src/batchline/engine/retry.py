"""Retry policy: which errors are retried, how often, and how long to wait.

The policy is a pure decision (``delay_for``) with no sleeping in it; the sync and
asyncio drivers carry the decision out. Retries are per batch, exponential with
jitter: attempt ``n`` waits ``backoff * multiplier ** (n - 1)`` seconds, capped at
``max_backoff``, minus a random share of up to ``jitter`` of it, so that many batches
failing together do not retry together. An error carrying ``retry_after`` (seconds,
e.g. from an HTTP 429) never waits less than that.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from batchline.errors import (
    LOST_WORKER_ATTEMPTS,
    ConfigurationError,
    StopRun,
    TerminalError,
    TransientError,
    is_lost_worker,
)

RetryPredicate = Callable[[BaseException], bool]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed batch is retried.

    Attributes:
        max_attempts: attempts in all, the first included (1 = never retry).
        backoff: seconds to wait before the second attempt.
        max_backoff: the longest wait between two attempts.
        multiplier: growth of the wait from one attempt to the next.
        jitter: share (0..1) of each wait that is randomised away.
        retry_on: exception classes worth retrying, or a predicate. ``TerminalError``
            is never retried and ``TransientError`` always is (while attempts remain). A
            lost worker (``WorkerLostError``, Ray's ``NodeDiedError``, ...) gets at least
            ``LOST_WORKER_ATTEMPTS`` attempts, whatever ``max_attempts`` says.
    """

    max_attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    retry_on: tuple[type[BaseException], ...] | RetryPredicate = (Exception,)

    def __post_init__(self) -> None:
        if type(self.max_attempts) is not int or self.max_attempts < 1:
            raise ConfigurationError(
                f"RetryPolicy `max_attempts` is {self.max_attempts!r}; expected an integer >= 1 "
                "(1 means no retries)."
            )
        for name in ("backoff", "max_backoff", "multiplier"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(
                    f"RetryPolicy `{name}` is {value!r}; expected a number >= 0."
                )
        if not isinstance(self.jitter, int | float) or not 0 <= self.jitter <= 1:
            raise ConfigurationError(
                f"RetryPolicy `jitter` is {self.jitter!r}; expected a number from 0 to 1."
            )
        if not callable(self.retry_on) and not (
            isinstance(self.retry_on, tuple)
            and all(isinstance(t, type) and issubclass(t, BaseException) for t in self.retry_on)
        ):
            raise ConfigurationError(
                f"RetryPolicy `retry_on` is {self.retry_on!r}; expected a tuple of exception "
                "classes or a callable error -> bool."
            )

    @classmethod
    def none(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_attempts=1)

    def replace(self, **changes: object) -> RetryPolicy:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def is_retryable(self, error: BaseException) -> bool:
        """Whether ``error`` is worth another attempt, by its class."""
        if isinstance(error, TerminalError | StopRun | KeyboardInterrupt):
            return False
        if isinstance(error, TransientError) or is_lost_worker(error):
            return True
        if not isinstance(error, Exception):
            return False
        if isinstance(self.retry_on, tuple):
            return isinstance(error, self.retry_on)
        return bool(self.retry_on(error))

    def delay_for(
        self, attempt: int, error: BaseException, rng: random.Random | None = None
    ) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None to give up.

        Args:
            attempt: the attempt that just failed (1-based).
            error: what it failed with.
            rng: source of jitter (tests pass a seeded one).
        """
        limit = self.max_attempts
        if is_lost_worker(error):  # lost infrastructure, not a faulty batch
            limit = max(limit, LOST_WORKER_ATTEMPTS)
        if attempt >= limit or not self.is_retryable(error):
            return None
        wait = min(self.max_backoff, self.backoff * self.multiplier ** (attempt - 1))
        if self.jitter and wait:
            wait -= wait * self.jitter * (rng or random).random()
        retry_after = getattr(error, "retry_after", None)
        if isinstance(retry_after, int | float) and retry_after > wait:
            wait = float(retry_after)
        return wait


@dataclass(frozen=True, slots=True)
class Attempts:
    """What ``retry_call`` ended with: a value, or the last error, and the attempts made."""

    value: Any
    error: Exception | None
    attempts: int


OnRetry = Callable[[int, BaseException, float], object]


def retry_call(
    fn: Callable[[], Any],
    policy: RetryPolicy,
    *,
    stop: threading.Event | None = None,
    on_retry: OnRetry | None = None,
) -> Attempts:
    """Call ``fn`` until it succeeds or ``policy`` gives up: the sync driver of the policy,
    for front doors that retry single items (a batch's retries are the engine's own).

    ``stop`` cuts a wait short (and ends the retrying); ``on_retry(attempt, error, delay)``
    is told before each wait. Interrupts (``KeyboardInterrupt``) are never caught.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return Attempts(fn(), None, attempt)
        except Exception as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            delay = policy.delay_for(attempt, exc)
            if delay is None or (stop is not None and stop.is_set()):
                return Attempts(None, exc, attempt)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            if stop is not None:
                if stop.wait(delay):
                    return Attempts(None, exc, attempt)
            else:
                time.sleep(delay)


async def aretry_call(
    fn: Callable[[], Awaitable[Any]],
    policy: RetryPolicy,
    *,
    stop: threading.Event | None = None,
    on_retry: OnRetry | None = None,
) -> Attempts:
    """The asyncio twin of ``retry_call``."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return Attempts(await fn(), None, attempt)
        except Exception as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            delay = policy.delay_for(attempt, exc)
            if delay is None or (stop is not None and stop.is_set()):
                return Attempts(None, exc, attempt)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            await asyncio.sleep(delay)

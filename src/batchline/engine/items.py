"""Per-item outcomes inside a batch: report, retry and isolate items one by one.

A batch function normally succeeds or fails as a whole. A function that works item by
item (the workflow ``batch`` task, LLM calls, a context handler answering many tasks)
returns ``ItemResults`` instead: one entry per item, an ``ItemFailed`` where that item
failed. The engine then commits the good items and records each failed one with its
error and attempts, and a result the store cannot keep (not JSON-serialisable, NaN, a
set, an object) fails that item alone instead of its neighbours. ``run_items`` and
``arun_items`` build ``ItemResults`` with item-level retries.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor
from typing import Any

from batchline.engine.outcome import ItemFailed
from batchline.engine.retry import Attempts, OnRetry, RetryPolicy, aretry_call, retry_call

__all__ = ["ItemResults", "arun_items", "item_outcome", "run_items"]


class ItemResults(list[Any]):
    """One outcome per item of a batch, in ``batch.items`` order: a result, or ``ItemFailed``.

    Return it from a batch function to ask for item-level outcomes: each failed item is
    recorded on its own (``ItemFailed(error, attempts)``, or the exception itself in place
    of the result) and a result the state store refuses fails only its item, never the
    batch. A plain list keeps the batch's
    all-or-nothing contract for results the store refuses.
    """

    __slots__ = ()

    @property
    def failed(self) -> list[int]:
        """Indexes of the items that failed."""
        return [i for i, value in enumerate(self) if type(value) is ItemFailed]


def item_outcome(done: Attempts, wrap: Callable[[Any, int], Any] | None = None) -> Any:
    """An item's entry for ``ItemResults`` from what ``retry_call`` ended with.

    Args:
        done: the attempts' outcome.
        wrap: turns ``(value, attempts)`` into the stored result (default: the value).
    """
    if done.error is not None:
        return ItemFailed(done.error, done.attempts)
    return done.value if wrap is None else wrap(done.value, done.attempts)


def run_items(
    items: Iterable[Any],
    fn: Callable[[Any], Any],
    policy: RetryPolicy | None = None,
    *,
    stop: threading.Event | None = None,
    on_retry: OnRetry | None = None,
    pool: Executor | None = None,
    wrap: Callable[[Any, int], Any] | None = None,
) -> ItemResults:
    """Call ``fn(item)`` for each item, each retried on its own by ``policy``.

    Args:
        items: the batch's items.
        fn: the per-item function.
        policy: item-level retries (default: none).
        stop: set to stop retrying (a run being interrupted).
        on_retry: told ``(attempt, error, delay)`` before each wait.
        pool: run items concurrently on this executor (default: one after another).
        wrap: turns ``(value, attempts)`` into the stored result.

    Returns:
        ``ItemResults``: an item that still fails after its attempts is ``ItemFailed``.
    """
    chosen = policy or RetryPolicy.none()

    def one(item: Any) -> Any:
        done = retry_call(lambda: fn(item), chosen, stop=stop, on_retry=on_retry)
        return item_outcome(done, wrap)

    if pool is None:
        return ItemResults(one(item) for item in items)
    futures = [pool.submit(one, item) for item in items]
    return ItemResults(future.result() for future in futures)


async def arun_items(
    items: Iterable[Any],
    fn: Callable[[Any], Awaitable[Any]],
    policy: RetryPolicy | None = None,
    *,
    concurrency: int | None = None,
    stop: threading.Event | None = None,
    on_retry: OnRetry | None = None,
    wrap: Callable[[Any, int], Any] | None = None,
) -> ItemResults:
    """The asyncio twin of ``run_items``: items run as coroutines, at most ``concurrency``
    attempts in flight (None: no bound)."""
    chosen = policy or RetryPolicy.none()
    gate = asyncio.Semaphore(concurrency) if concurrency else None

    async def attempt(item: Any) -> Any:
        if gate is None:
            return await fn(item)
        async with gate:
            return await fn(item)

    async def one(item: Any) -> Any:
        done = await aretry_call(lambda: attempt(item), chosen, stop=stop, on_retry=on_retry)
        return item_outcome(done, wrap)

    return ItemResults(await asyncio.gather(*(one(item) for item in items)))

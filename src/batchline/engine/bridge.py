"""The one sync/async bridge: run a coroutine (or await a result) from synchronous code.

Every front door and the LLM client cross from sync to async through here, so there is
one answer to "what if an event loop is already running in this thread" (the coroutine
runs on a fresh loop in a helper thread, and its exception is re-raised in the caller).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["resolve_awaitable", "run_coroutine"]


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to completion from sync code, even inside a running event loop.

    Without a running loop in this thread it runs on a new loop (``asyncio.run``). With one
    (a sync function called from async code), blocking that loop's thread would deadlock,
    so the coroutine runs on its own loop in a helper thread; its result or exception
    (``KeyboardInterrupt`` and ``StopRun`` included) comes back to the caller.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = False  # run below, outside this handler: its errors chain to nothing
    else:
        running = True
    if not running:
        return asyncio.run(coroutine)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coroutine)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="batchline-async-bridge")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: T = box["value"]
    return result


def resolve_awaitable(value: Any) -> Any:
    """Return ``value``, or what it resolves to when it is awaitable (a coroutine, a future,
    any object with ``__await__``): the result of an ``async def`` batch function or agent
    called from sync code."""
    if asyncio.iscoroutine(value):
        return run_coroutine(value)
    if hasattr(value, "__await__"):
        return run_coroutine(_await(value))
    return value


async def _await(value: Awaitable[Any]) -> Any:
    return await value

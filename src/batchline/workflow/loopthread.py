"""One event loop in a thread, shared by the chunks of an async batch step.

A step whose nested task is async (``llm``) runs every chunk's items as coroutines on one
loop: connections stay open from chunk to chunk, and while one chunk finishes its last
requests the next one's already fill the free slots of the step's shared gate, so the
requests in flight stay at ``max_concurrency`` instead of draining at every chunk's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """An event loop served by a daemon thread; other threads run coroutines on it.

    The loop is made when first asked for (in the process that runs the chunks, so a
    picklable owner can make it after being shipped).
    """

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the loop; block this thread until it ends; return its
        result or raise its exception here."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self, last: Callable[[], Awaitable[Any]] | None = None, *, wait: bool) -> None:
        """Run ``last`` (closing connections made on the loop), then stop the loop.

        With ``wait=False`` (a run being abandoned) nothing is awaited: the daemon thread
        ends with the process.
        """
        if not self.loop.is_running():
            return
        if not wait:
            self.loop.call_soon_threadsafe(self.loop.stop)
            return
        if last is not None:

            async def finish() -> None:
                await last()

            # a connection that fails to close must not fail a step whose items are stored
            with contextlib.suppress(OSError, RuntimeError, asyncio.TimeoutError):
                self.run(finish())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


__all__ = ["LoopThread"]

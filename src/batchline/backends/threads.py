"""A thread pool whose threads never hold the process up.

``concurrent.futures.ThreadPoolExecutor`` joins its threads when the interpreter exits,
so a batch abandoned by a second Ctrl-C would keep the process alive until it returned.
This pool's threads are daemons: a run that abandons its batches exits at once (their
results are never committed, so a resume runs them again). Otherwise it behaves like
``ThreadPoolExecutor``: threads are started on demand, up to ``max_workers``, and reused.
"""

from __future__ import annotations

import itertools
import queue
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

_COUNTER = itertools.count(1)
_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def shield_thread_from_signals() -> None:
    """Block SIGINT and SIGTERM in the calling (non-main) thread.

    The kernel hands a process-directed signal to any thread that does not block it. If
    a pool thread takes it, the main thread, blocked in a wait, never wakes up to run
    Python's handler; blocked here, the signal goes to the main thread. (Child processes
    started from these threads get a clean signal mask.)
    """
    if threading.current_thread() is not threading.main_thread():
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)


_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class DaemonThreadPool(Executor):
    """An executor of at most ``max_workers`` daemon threads.

    Args:
        max_workers: threads at most.
        thread_name_prefix: names the threads ``PREFIX-N``.
    """

    def __init__(self, max_workers: int, thread_name_prefix: str = "batchline") -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers is {max_workers}; expected at least 1")
        self._max = max_workers
        self._prefix = thread_name_prefix
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run ``fn(*args, **kwargs)`` on a pool thread."""
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to a pool that was shut down")
            future: Future[Any] = Future()
            self._queue.put((future, fn, args, kwargs))
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max:
                thread = threading.Thread(
                    target=self._work, name=f"{self._prefix}-{next(_COUNTER)}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        return future

    def _work(self) -> None:
        shield_thread_from_signals()
        while True:
            work = self._queue.get()
            if work is None:
                self._queue.put(None)  # wake the next thread too
                return
            future, fn, args, kwargs = work
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # handed to the caller through the future
                    future.set_exception(exc)
                    del exc
                else:
                    future.set_result(result)
            del work, future, fn, args, kwargs
            self._idle.release()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more work; cancel what has not started (``cancel_futures``); maybe wait."""
        with self._lock:
            self._closed = True
            if cancel_futures:
                while True:
                    try:
                        work = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if work is not None:
                        work[0].cancel()
            self._queue.put(None)
        if wait:
            current = threading.current_thread()
            for thread in self._threads:
                if thread is not current:
                    thread.join()


__all__ = ["DaemonThreadPool", "shield_thread_from_signals"]

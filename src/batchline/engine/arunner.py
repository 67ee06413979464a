"""The asyncio drivers: ``astream_batches`` and ``arun_batches``.

``async def`` batch functions run as tasks on the caller's event loop (64 batches in
flight are 64 tasks, not 64 threads); plain functions run on a thread pool of
``max_concurrency`` threads. The core is the same as for the sync drivers.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
import threading
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any, TypeVar

from batchline.backends import Backend
from batchline.engine.core import Job, RunCore, call_sync
from batchline.engine.keys import KeySpec
from batchline.engine.options import (
    DEFAULT_CHUNK_SIZE,
    CompleteHook,
    Duplicates,
    ErrorHook,
    OnError,
    StartHook,
    check_function,
    check_items,
)
from batchline.engine.outcome import BatchOutcome, RunResult
from batchline.engine.plan import Batch
from batchline.engine.retry import RetryPolicy
from batchline.engine.runner import Collector, make_options
from batchline.engine.signals import SIGNALS, enter_run, exit_run, handle_signal
from batchline.engine.stream import AsyncBatchStream
from batchline.engine.window import Window
from batchline.errors import BatchRunError
from batchline.state.base import StateStore

T = TypeVar("T")
AsyncBatchFunction = Callable[[Batch[T]], Any]


def _is_async(fn: Callable[..., Any]) -> bool:
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable objects with async __call__
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(call)


def astream_batches(
    items: Iterable[T],
    fn: AsyncBatchFunction[T],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    key: KeySpec = None,
    store: StateStore | None = None,
    run_id: str | None = None,
    max_concurrency: int = 1,
    retry: RetryPolicy | None = None,
    on_error: OnError = "continue",
    duplicates: Duplicates = "error",
    retry_failed: bool = True,
    on_batch_start: StartHook | None = None,
    on_batch_complete: CompleteHook | None = None,
    on_batch_error: ErrorHook | None = None,
    ordered: bool = True,
    progress: bool | None = None,
    handle_signals: bool = True,
    backend: str | Backend | None = None,
) -> AsyncBatchStream[T]:
    """The asyncio twin of ``stream_batches``: ``async for outcome in astream_batches(...)``.

    Same arguments and guarantees as ``stream_batches``; ``fn`` may be ``async def``. The
    returned ``AsyncBatchStream`` has the engine's final ``stats`` once iterated.
    """
    check_function(fn)
    options = make_options(
        chunk_size=chunk_size,
        key=key,
        store=store,
        run_id=run_id,
        max_concurrency=max_concurrency,
        retry=retry,
        on_error=on_error,
        duplicates=duplicates,
        retry_failed=retry_failed,
        on_batch_start=on_batch_start,
        on_batch_complete=on_batch_complete,
        on_batch_error=on_batch_error,
        ordered=ordered,
        progress=progress,
        handle_signals=handle_signals,
        backend=backend,
    )
    core = RunCore(check_items(items), options)
    return AsyncBatchStream(core, _adrive(core, fn))


async def arun_batches(
    items: Iterable[T],
    fn: AsyncBatchFunction[T],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    key: KeySpec = None,
    store: StateStore | None = None,
    run_id: str | None = None,
    max_concurrency: int = 1,
    retry: RetryPolicy | None = None,
    on_error: OnError = "continue",
    duplicates: Duplicates = "error",
    retry_failed: bool = True,
    on_batch_start: StartHook | None = None,
    on_batch_complete: CompleteHook | None = None,
    on_batch_error: ErrorHook | None = None,
    progress: bool | None = None,
    handle_signals: bool = True,
    backend: str | Backend | None = None,
) -> RunResult[Any]:
    """The asyncio twin of ``run_batches``: ``result = await arun_batches(...)``."""
    check_function(fn)
    options = make_options(
        chunk_size=chunk_size,
        key=key,
        store=store,
        run_id=run_id,
        max_concurrency=max_concurrency,
        retry=retry,
        on_error=on_error,
        duplicates=duplicates,
        retry_failed=retry_failed,
        on_batch_start=on_batch_start,
        on_batch_complete=on_batch_complete,
        on_batch_error=on_batch_error,
        ordered=True,
        progress=progress,
        handle_signals=handle_signals,
        backend=backend,
    )
    materialized = list(check_items(items))
    core = RunCore(materialized, options)
    collector = Collector(materialized)
    try:
        async for outcome in _adrive(core, fn):
            collector.add(outcome)
    except BatchRunError as exc:
        exc.result = collector.finish(core)
        raise
    return collector.finish(core)


class _LoopSignals:
    """Stop-on-signal handlers on the running loop (main thread, Unix).

    The first signal stops starting batches; the second cancels the batches in flight
    (abandoned: not committed) and kills what ``on_abandon`` callbacks kill.
    """

    def __init__(self, core: RunCore, tasks: dict[asyncio.Task[Any], Job]) -> None:
        self._core = core
        self._tasks = tasks
        self._loop = asyncio.get_running_loop()
        self._installed: dict[int, Any] = {}
        enter_run()
        if core.options.handle_signals and threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                previous = signal.getsignal(signum)
                try:
                    self._loop.add_signal_handler(signum, self._handle, signum)
                except (NotImplementedError, RuntimeError):  # pragma: no cover - not Unix
                    continue
                self._installed[signum] = previous

    def _handle(self, signum: int) -> None:
        if handle_signal(self._core.stop, signum):
            for task in self._tasks:
                task.cancel()

    def remove(self) -> None:
        for signum, previous in self._installed.items():
            self._loop.remove_signal_handler(signum)
            # remove_signal_handler installs the default; put back what was there.
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._installed.clear()
        exit_run()


class _Interrupt:
    """A ``BaseException`` a batch raised, carried out of its task as a value.

    asyncio re-raises ``KeyboardInterrupt`` and ``SystemExit`` out of the event loop
    itself, past the driver; carried as a value they stop the run like a signal.
    """

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def _adrive(
    core: RunCore, fn: AsyncBatchFunction[Any]
) -> AsyncGenerator[BatchOutcome[Any, Any], None]:
    limit = core.options.max_concurrency
    remote = core.options.backend.name != "local"
    is_async = _is_async(fn) and not remote
    pool: Any = None if is_async else core.options.backend.executor(limit)
    prepare = getattr(pool, "prepare", None)  # a remote backend checks fn before any batch
    if prepare is not None:
        try:
            prepare(fn)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    loop = asyncio.get_running_loop()
    running: dict[asyncio.Task[Any], Job] = {}
    retries: dict[asyncio.Task[Any], Job] = {}
    window = Window(core, core.plan(), ordered=core.options.ordered, width=2 * limit)
    error: BaseException | None = None

    async def call(batch: Batch[Any]) -> Any:
        try:
            if is_async:
                return await fn(batch)
            if remote:
                return await asyncio.wrap_future(pool.submit(call_sync, fn, batch))
            result = await loop.run_in_executor(pool, fn, batch)
            if inspect.isawaitable(result):
                return await result
            return result
        except (KeyboardInterrupt, SystemExit, GeneratorExit) as exc:
            return _Interrupt(exc)

    def submit(job: Job) -> None:
        core.begin_attempt(job)
        running[asyncio.ensure_future(call(job.work))] = job

    core.open()
    guard = _LoopSignals(core, running)
    try:
        while True:
            while not core.stop and len(running) + len(retries) < limit:
                job = window.take()
                if job is None:
                    break
                submit(job)
            released = window.release()
            if released:
                for outcome in released:
                    yield outcome
                continue
            if not running and not retries:
                break
            if core.stop and not running:
                break  # pending retries are abandoned: their items stay missing
            done, _ = await asyncio.wait([*running, *retries], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task in retries:
                    job = retries.pop(task)
                    if core.stop:
                        continue
                    submit(job)
                    continue
                job = running.pop(task)
                if task.cancelled():
                    continue  # abandoned by a second signal: not committed, resume runs it
                exc = task.exception()
                if exc is None:
                    value = task.result()
                    if isinstance(value, _Interrupt):
                        core.stop.interrupt(value.error)  # not committed, not failed
                        continue
                    window.finish(job, core.succeed(job, value))
                    continue
                decision = core.fail(job, exc)
                if isinstance(decision, BatchOutcome):
                    window.finish(job, decision)
                else:
                    retries[asyncio.ensure_future(asyncio.sleep(decision))] = job
        for outcome in window.drain():
            yield outcome
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        error = exc
        core.stop.set()
        core.stop.abandoned = True
        raise
    except BaseException as exc:
        error = exc
        raise
    finally:
        guard.remove()
        for task in [*running, *retries]:
            task.cancel()
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        core.close(error)
    stop = core.stop_error()
    if stop is not None:
        raise stop

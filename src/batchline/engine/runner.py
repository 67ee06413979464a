"""The synchronous drivers: ``stream_batches`` and ``run_batches``.

With ``max_concurrency=1`` batches run inline in the calling thread (no pool, the
lowest overhead). Above that, batch functions run on a thread pool while this
thread, the only one that touches the state store, commits, retries and reports.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any, TypeVar

from batchline.backends import Backend, resolve_backend
from batchline.engine.core import Job, RunCore, call_sync
from batchline.engine.keys import KeySpec
from batchline.engine.options import (
    DEFAULT_CHUNK_SIZE,
    CompleteHook,
    Duplicates,
    ErrorHook,
    OnError,
    RunOptions,
    StartHook,
    check_function,
    check_items,
    validate,
)
from batchline.engine.outcome import BatchOutcome, RunResult
from batchline.engine.plan import Batch
from batchline.engine.retry import RetryPolicy
from batchline.engine.signals import SignalGuard
from batchline.engine.stream import BatchStream
from batchline.engine.window import Window
from batchline.errors import BatchRunError, RunInterrupted
from batchline.state.base import StateStore

T = TypeVar("T")
R = TypeVar("R")
BatchFunction = Callable[[Batch[T]], Any]
_POLL = 0.25  # seconds: the longest the driving thread waits without looking up


def make_options(
    *,
    chunk_size: int,
    key: KeySpec,
    store: StateStore | None,
    run_id: str | None,
    max_concurrency: int,
    retry: RetryPolicy | None,
    on_error: OnError,
    duplicates: Duplicates,
    retry_failed: bool,
    on_batch_start: StartHook | None,
    on_batch_complete: CompleteHook | None,
    on_batch_error: ErrorHook | None,
    ordered: bool,
    progress: bool | None,
    handle_signals: bool,
    backend: str | Backend | None = None,
) -> RunOptions:
    """Validated options from the public keyword arguments."""
    return validate(
        RunOptions(
            backend=resolve_backend(backend),
            chunk_size=chunk_size,
            key=key,
            store=store,
            run_id=run_id,
            max_concurrency=max_concurrency,
            retry=RetryPolicy() if retry is None else retry,
            on_error=on_error,
            duplicates=duplicates,
            retry_failed=retry_failed,
            on_batch_start=on_batch_start,
            on_batch_complete=on_batch_complete,
            on_batch_error=on_batch_error,
            ordered=ordered,
            progress=progress,
            handle_signals=handle_signals,
        )
    )


def stream_batches(
    items: Iterable[T],
    fn: BatchFunction[T],
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
) -> BatchStream[T]:
    """Run ``fn`` over ``items`` in batches, yielding each batch's outcome once committed.

    Args:
        items: any iterable of JSON-serialisable items; a generator is read lazily.
        fn: ``fn(batch) -> list`` (one result per item of ``batch.items``, in order) or
            ``-> dict`` (``{key: result}``). May be ``async def`` (it then gets an event loop).
        chunk_size: items per batch.
        key: a field name, a callable ``item -> str | int``, or None to key items by a
            hash of their canonical JSON.
        store: where state lives; default: in memory for this call only.
        run_id: the run's id; the same id with the same store resumes the run, running
            only missing (and, with ``retry_failed``, failed) items.
        max_concurrency: batches running at once (threads when above 1).
        retry: the retry policy; default ``RetryPolicy()`` (3 attempts, backoff 0.5 s).
        on_error: ``"continue"`` records failures and goes on; ``"stop"`` starts no new
            batch after the first failure and raises ``BatchRunError`` at the end.
        duplicates: ``"error"`` raises on a repeated key; ``"skip"`` keeps the first.
        retry_failed: on resume, run items that failed before (False keeps them failed).
        on_batch_start: ``hook(progress)`` before each attempt of a batch.
        on_batch_complete: ``hook(progress, outcome)`` after a batch ran and committed.
        on_batch_error: ``hook(progress, error)`` when a batch failed for good.
        ordered: yield outcomes in plan order (True) or as batches finish (False).
        progress: show a progress bar (None: only when stderr is a terminal).
        handle_signals: stop gracefully on SIGINT/SIGTERM (main thread only).
        backend: ``"local"`` (threads), ``"ray"`` (Ray tasks; ``pip install
            "batchline[ray]"``), or a backend object such as ``RayBackend(address=...)``.

    Returns:
        A ``BatchStream``: iterate it for a ``BatchOutcome`` per batch, after its state is
        committed; its ``stats`` (and ``failures``, ``run_id``) are the engine's own
        counts, final once the iteration ended.

    Raises:
        ConfigurationError: an argument or the input is invalid (raised at once).
        DuplicateKeyError: two items share a key (raised when reached).
        BatchRunError: ``on_error="stop"`` ended the run after a failure.
        RunInterrupted: SIGINT/SIGTERM ended the run; the message says how to resume.
        RunActiveError: another live process drives the same run.
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
    return BatchStream(core, _drive(core, fn))


def _drive(core: RunCore, fn: BatchFunction[Any]) -> Generator[BatchOutcome[Any, Any], None, None]:
    error: BaseException | None = None
    core.open()
    try:
        with SignalGuard(core.stop, core.options.handle_signals):
            if core.options.max_concurrency == 1 and core.options.backend.name == "local":
                yield from _inline(core, fn)
            else:
                yield from _threaded(core, fn)
    except KeyboardInterrupt as exc:
        # A second signal (already a RunInterrupted), or Ctrl-C with signals not handled.
        error = exc
        core.stop.set()
        if isinstance(exc, RunInterrupted):
            raise
        core.stop.interrupt(exc)
        raise core.interrupted() from exc
    except GeneratorExit as exc:
        # The caller stopped iterating: what is committed stays committed.
        error = exc
        core.stop.set()
        raise
    except BaseException as exc:
        error = exc
        raise
    finally:
        core.close(error)
    stop = core.stop_error()
    if stop is not None:
        raise stop


def _inline(core: RunCore, fn: BatchFunction[Any]) -> Iterator[BatchOutcome[Any, Any]]:
    stop = core.stop
    for batch in core.plan():
        job = core.prepare(batch)
        while job.outcome is None:
            core.begin_attempt(job)
            if stop:
                return  # a hook stopped the run: the batch stays pending
            try:
                raw = call_sync(fn, job.work)
            except Exception as exc:
                decision = core.fail(job, exc)
                if isinstance(decision, BatchOutcome):
                    job.outcome = decision
                elif stop.wait(decision):
                    return  # stop asked while waiting to retry: leave the batch unfinished
                continue
            except BaseException as exc:
                if stop.abandoned:
                    raise  # a second signal: abandon
                core.stop.interrupt(exc)  # KeyboardInterrupt, SystemExit... from the batch
                return
            job.outcome = core.succeed(job, raw)
        yield job.outcome


def _threaded(core: RunCore, fn: BatchFunction[Any]) -> Iterator[BatchOutcome[Any, Any]]:
    limit = core.options.max_concurrency
    stop = core.stop
    window = Window(core, core.plan(), ordered=core.options.ordered, width=2 * limit)
    running: dict[Future[Any], Job] = {}
    retries: list[tuple[float, int, Job]] = []
    tiebreak = itertools.count()
    pool = core.options.backend.executor(limit)
    prepare = getattr(pool, "prepare", None)  # a remote backend checks fn before any batch
    if prepare is not None:
        try:
            prepare(fn)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise

    def submit(job: Job) -> None:
        core.begin_attempt(job)
        if stop:
            return  # a hook stopped the run: the batch stays pending
        running[pool.submit(call_sync, fn, job.work)] = job

    try:
        while True:
            now = time.monotonic()
            while retries and retries[0][0] <= now and len(running) < limit and not stop:
                submit(heapq.heappop(retries)[2])
            while not stop and len(running) < limit:
                job = window.take()
                if job is None:
                    break
                submit(job)
            released = window.release()
            if released:
                yield from released
                continue
            if not running:
                if stop or (window.exhausted and not retries):
                    break  # on a stop, pending retries are abandoned: resume runs them
                if retries:
                    stop.wait(max(0.0, retries[0][0] - time.monotonic()))
                continue
            # Never an unbounded wait: a signal taken by another thread must still reach
            # the handler, which runs only when this (main) thread wakes up.
            timeout = _POLL
            if retries:
                timeout = min(_POLL, max(0.0, retries[0][0] - time.monotonic()))
            done, _ = wait(list(running), timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done:
                job = running.pop(future)
                error = future.exception()
                if error is None:
                    window.finish(job, core.succeed(job, future.result()))
                    continue
                if not isinstance(error, Exception):
                    stop.interrupt(error)  # KeyboardInterrupt, SystemExit... from the batch
                    continue  # not committed, not failed: a resume runs it
                decision = core.fail(job, error)
                if isinstance(decision, BatchOutcome):
                    window.finish(job, decision)
                else:
                    heapq.heappush(retries, (time.monotonic() + decision, next(tiebreak), job))
        # Stopped: outcomes already committed are still handed out, in order.
        yield from window.drain()
    except KeyboardInterrupt:
        stop.abandoned = True  # a second signal, or Ctrl-C with signals not handled
        raise
    finally:
        # Abandoned: never wait for the batches in flight (the local pool's threads are
        # daemons, so they do not hold the process up; their results are not committed).
        pool.shutdown(wait=not (running and stop.abandoned), cancel_futures=True)


def run_batches(
    items: Iterable[T],
    fn: BatchFunction[T],
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
    """Run ``fn`` over ``items`` in batches and return every result in input order.

    Takes the same arguments as ``stream_batches`` (see there). ``result.results``
    has one entry per input item, None where the item failed; with
    ``duplicates="skip"`` a skipped item gets the result of the first item with its key.

    Raises:
        BatchRunError: ``on_error="stop"`` ended the run; ``.result`` holds the partial result.
        RunInterrupted: SIGINT/SIGTERM ended the run; ``.result`` holds the partial result.
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
        ordered=True,
        progress=progress,
        handle_signals=handle_signals,
        backend=backend,
    )
    materialized = list(check_items(items))
    core = RunCore(materialized, options)
    collector = Collector(materialized)
    try:
        for outcome in _drive(core, fn):
            collector.add(outcome)
    except BatchRunError as exc:
        exc.result = collector.finish(core)
        raise
    return collector.finish(core)


class Collector:
    """Places streamed outcomes into one result list aligned with the input."""

    def __init__(self, items: list[Any]) -> None:
        self._items = items
        self.results: list[Any] = [None] * len(items)
        self.keys: list[Any] = [None] * len(items)
        self._filled = bytearray(len(items))

    def add(self, outcome: BatchOutcome[Any, Any]) -> None:
        """Put a batch's results at their input positions."""
        batch = outcome.batch
        positions = batch.positions
        if isinstance(positions, range) and positions.step == 1:
            self.results[positions.start : positions.stop] = outcome.results
            self.keys[positions.start : positions.stop] = batch.keys
            self._filled[positions.start : positions.stop] = b"\x01" * len(positions)
        else:
            for position, key, value in zip(positions, batch.keys, outcome.results, strict=True):
                self.results[position] = value
                self.keys[position] = key
                self._filled[position] = 1

    def finish(self, core: RunCore) -> RunResult[Any]:
        """The run's result with the collected results (skipped duplicates filled by key)."""
        if core.planner.duplicates:
            self._fill_duplicates(core)
        result = core.partial(self.results)
        result.keys = self.keys
        return result

    def _fill_duplicates(self, core: RunCore) -> None:
        first: dict[Any, int] = {}
        for position, key in enumerate(self.keys):
            if self._filled[position] and key not in first:
                first[key] = position
        keys_of = core.key_function
        for position, filled in enumerate(self._filled):
            if filled:
                continue
            key = keys_of([self._items[position]], position)[0]
            self.keys[position] = key
            if key in first:
                self.results[position] = self.results[first[key]]

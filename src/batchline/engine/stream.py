"""Streams that know their run: ``stream_batches`` and ``astream_batches`` hand back these.

They iterate like the generators they wrap (``close``/``aclose`` included) and also
expose the run's id, its statistics and its failures, counted by the engine as the
batches commit and final once the iteration ended. No caller has to recount them from
the outcomes.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Generator
from types import TracebackType
from typing import Any, Generic, TypeVar

from batchline.engine.core import RunCore
from batchline.engine.outcome import BatchFailure, BatchOutcome, RunResult, RunStats

T = TypeVar("T")

__all__ = ["AsyncBatchStream", "BatchStream"]


class _Run:
    """What both streams tell about their run."""

    _core: RunCore
    _finished: bool

    @property
    def run_id(self) -> str:
        """The run's id (generated when none was given)."""
        return self._core.run_id

    @property
    def stats(self) -> RunStats:
        """Counts and timing so far; final (``total``, ``batches``, ``duration``
        included) once the iteration ended, however it ended."""
        return self._core.stats

    @property
    def failures(self) -> list[BatchFailure]:
        """The failed items, grouped per batch and error, in commit order."""
        return list(self._core.failures)

    @property
    def finished(self) -> bool:
        """True once the run ended (completed, stopped, interrupted or closed)."""
        return self._finished

    def result(self, results: list[Any] | None = None) -> RunResult[Any]:
        """A ``RunResult`` with the engine's stats and failures (``results`` as collected
        by the caller, if any)."""
        return self._core.partial(results)


class BatchStream(_Run, Generator[BatchOutcome[T, Any], None, None], Generic[T]):
    """The iterator ``stream_batches`` returns: outcomes, then final ``stats``."""

    def __init__(self, core: RunCore, outcomes: Generator[BatchOutcome[Any, Any], None, None]):
        self._core = core
        self._outcomes = outcomes
        self._finished = False

    def __iter__(self) -> BatchStream[T]:
        return self

    def __next__(self) -> BatchOutcome[T, Any]:
        return self.send(None)

    def send(self, value: None) -> BatchOutcome[T, Any]:
        """Advance the run to its next committed batch."""
        try:
            return self._outcomes.send(value)
        except BaseException:
            self._finished = True
            raise

    def throw(
        self,
        kind: type[BaseException] | BaseException,
        value: object = None,
        trace: TracebackType | None = None,
    ) -> BatchOutcome[T, Any]:
        """Raise ``kind`` inside the run (as a generator's ``throw``)."""
        try:
            if isinstance(kind, BaseException):
                error = kind
            elif isinstance(value, BaseException):
                error = value
            else:
                error = kind() if value is None else kind(value)
            return self._outcomes.throw(error.with_traceback(trace))
        except BaseException:
            self._finished = True
            raise

    def close(self) -> None:
        """Stop the run: what is committed stays committed; the lease is released."""
        try:
            self._outcomes.close()
        finally:
            self._finished = True


class AsyncBatchStream(_Run, AsyncIterator[BatchOutcome[T, Any]], Generic[T]):
    """The async iterator ``astream_batches`` returns: outcomes, then final ``stats``."""

    def __init__(self, core: RunCore, outcomes: AsyncGenerator[BatchOutcome[Any, Any], None]):
        self._core = core
        self._outcomes = outcomes
        self._finished = False

    def __aiter__(self) -> AsyncIterator[BatchOutcome[T, Any]]:
        return self

    async def __anext__(self) -> BatchOutcome[T, Any]:
        try:
            return await self._outcomes.__anext__()
        except BaseException:
            self._finished = True
            raise

    async def aclose(self) -> None:
        """Stop the run: what is committed stays committed; the lease is released."""
        try:
            await self._outcomes.aclose()
        finally:
            self._finished = True

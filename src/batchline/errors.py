"""Every error batchline raises, under one root.

Errors say what went wrong, where, and what to do next. Whether the engine retries an
error is decided by its class (``TransientError`` / ``TerminalError``), never by parsing
messages. All errors pickle (Ray ships them between processes), so any class with a
custom constructor defines ``__reduce__``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchline.engine.outcome import RunResult


class BatchlineError(Exception):
    """Root of every error raised by batchline."""


class TransientError(BatchlineError):
    """An error worth retrying (a timeout, a rate limit, a dropped connection).

    Raise it (or a subclass) from a batch function to ask for a retry even when the
    retry policy is narrowed with ``retry_on``. ``retry_after`` (seconds), when set,
    is the least the engine waits before the next attempt.
    """

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_transient, (type(self), str(self), self.retry_after))


def _rebuild_transient(
    cls: type[TransientError], message: str, retry_after: float | None
) -> TransientError:
    return cls(message, retry_after=retry_after)


class WorkerLostError(TransientError):
    """The machine or process running a batch went away (a node died, a worker crashed,
    a result was lost with its node). Not the batch's fault: the engine runs it again, at
    least ``LOST_WORKER_ATTEMPTS`` times in all, whatever the retry policy, on every
    front door. ``cause`` names the backend's own error class (e.g. ``NodeDiedError``).
    """

    def __init__(
        self, message: str = "", *, retry_after: float | None = None, cause: str = ""
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.cause = cause

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_lost, (type(self), str(self), self.retry_after, self.cause))


def _rebuild_lost(
    cls: type[WorkerLostError], message: str, retry_after: float | None, cause: str
) -> WorkerLostError:
    return cls(message, retry_after=retry_after, cause=cause)


LOST_WORKER_ATTEMPTS = 3
"""Attempts a batch gets when its worker is lost, even under ``RetryPolicy.none()``."""

RAY_LOST_WORKER_ERRORS = frozenset(
    {
        "NodeDiedError",
        "WorkerCrashedError",
        "LocalRayletDiedError",
        "ObjectLostError",
        "OwnerDiedError",
        "ObjectFetchTimedOutError",
        "ObjectReconstructionFailedError",
        "ReferenceCountingAssertionError",
        "RayActorError",
        "ActorDiedError",
        "ActorUnavailableError",
    }
)
"""Ray's exceptions (by class) that mean lost infrastructure, not a faulty batch."""


def is_lost_worker(error: BaseException) -> bool:
    """Whether ``error`` means the worker, node or a result went away (by class, never text)."""
    if isinstance(error, WorkerLostError):
        return True
    return any(
        cls.__name__ in RAY_LOST_WORKER_ERRORS and cls.__module__.startswith("ray")
        for cls in type(error).__mro__
    )


class TerminalError(BatchlineError):
    """An error that retrying cannot fix; the engine never retries it."""


class StopRun(BatchlineError):  # noqa: N818 - a request, like StopIteration
    """Raised by a batch function to stop the run gracefully (a budget was reached, ...).

    The engine starts no new batch; the batch that raised is not recorded as failed (its
    items stay missing, so a resume runs them); the run ends with ``BatchRunError``
    carrying the message, and can be resumed.
    """


class ConfigurationError(BatchlineError, ValueError):
    """An argument or input is invalid. The message names it, what was found and what is allowed."""


class DuplicateKeyError(ConfigurationError):
    """Two items of one input have the same key."""

    def __init__(self, key: object, first: int, second: int) -> None:
        super().__init__(
            f"duplicate key {key!r}: items at positions {first} and {second} have the same key. "
            'Give every item a unique key (the `key=` argument), or pass duplicates="skip" '
            "to keep the first and skip the others."
        )
        self.key = key
        self.first = first
        self.second = second

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.key, self.first, self.second))


class BatchResultError(TerminalError):
    """A batch function returned results the engine cannot use (wrong count, not JSON)."""


class StateError(BatchlineError):
    """The state store cannot do what was asked (unknown run, newer schema, ...)."""


class RunActiveError(StateError):
    """Another process (or another call in this process) is driving the same run."""

    def __init__(self, run_id: str, pid: int, host: str, detail: str) -> None:
        super().__init__(
            f"run {run_id!r} is active in process {pid} on {host} ({detail}). "
            "Wait for it to finish, stop that process, or use another run_id."
        )
        self.run_id = run_id
        self.pid = pid
        self.host = host
        self.detail = detail

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.run_id, self.pid, self.host, self.detail))


class BatchRunError(BatchlineError):
    """A run stopped early; ``result`` holds everything finished before it stopped."""

    def __init__(self, message: str, result: RunResult[Any] | None = None) -> None:
        super().__init__(message)
        self.result = result

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.result))


class RunInterrupted(BatchRunError, KeyboardInterrupt):  # noqa: N818 - an event, like KeyboardInterrupt
    """The run was stopped by SIGINT or SIGTERM; its state is committed and it can resume.

    It is also a ``KeyboardInterrupt``, so an uncaught one ends a script the way Ctrl-C does.
    """

    def __init__(
        self, message: str, result: RunResult[Any] | None = None, signal_number: int | None = None
    ) -> None:
        super().__init__(message, result)
        self.signal_number = signal_number

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.result, self.signal_number))


__all__ = [
    "BatchResultError",
    "BatchRunError",
    "BatchlineError",
    "ConfigurationError",
    "DuplicateKeyError",
    "RunActiveError",
    "RunInterrupted",
    "StateError",
    "StopRun",
    "TerminalError",
    "TransientError",
    "WorkerLostError",
    "is_lost_worker",
]

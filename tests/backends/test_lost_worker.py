"""Lost infrastructure is transient by class, on every front door, whatever the policy."""

from __future__ import annotations

import pickle

import pytest

from batchline import RetryPolicy, TerminalError, WorkerLostError, run_batches
from batchline.errors import LOST_WORKER_ATTEMPTS, is_lost_worker


def test_lost_worker_gets_attempts_even_under_a_no_retry_policy() -> None:
    policy = RetryPolicy.none()
    lost = WorkerLostError("node gone", cause="NodeDiedError")
    assert policy.delay_for(1, lost) is not None
    assert policy.delay_for(LOST_WORKER_ATTEMPTS - 1, lost) is not None
    assert policy.delay_for(LOST_WORKER_ATTEMPTS, lost) is None
    assert policy.delay_for(1, RuntimeError("bug")) is None
    assert RetryPolicy(max_attempts=5).delay_for(4, lost) is not None


def test_lost_worker_pickles_with_its_cause() -> None:
    copy = pickle.loads(pickle.dumps(WorkerLostError("x", cause="WorkerCrashedError")))  # noqa: S301 - our own bytes
    assert (str(copy), copy.cause, isinstance(copy, WorkerLostError)) == (
        "x",
        "WorkerCrashedError",
        True,
    )


def test_ray_exceptions_are_classified_by_class() -> None:
    exceptions = pytest.importorskip("ray.exceptions")
    assert is_lost_worker(exceptions.NodeDiedError("node died"))
    assert is_lost_worker(exceptions.WorkerCrashedError())
    assert is_lost_worker(exceptions.ObjectLostError("ab" * 14, "owner", "site"))
    assert is_lost_worker(exceptions.OwnerDiedError("ab" * 14, "owner", "site"))
    assert is_lost_worker(exceptions.RayActorError())
    assert not is_lost_worker(exceptions.RayError())
    assert not is_lost_worker(TerminalError("no"))
    assert RetryPolicy.none().is_retryable(exceptions.NodeDiedError("node died"))


def test_run_batches_retries_a_lost_worker_locally_too() -> None:
    seen: list[int] = []

    def once_lost(batch: object) -> list[int]:
        seen.append(1)
        if len(seen) == 1:
            raise WorkerLostError("the worker went away")
        return [1]

    result = run_batches([1], once_lost, retry=RetryPolicy(max_attempts=1, backoff=0))
    assert result.ok
    assert result.stats.retries == 1

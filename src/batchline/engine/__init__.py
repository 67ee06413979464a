"""The batch engine: plan, run, retry, commit, stream. Every front door runs on it."""

from batchline.engine.arunner import arun_batches, astream_batches
from batchline.engine.keys import Key, canonical_key
from batchline.engine.outcome import (
    BatchFailure,
    BatchOutcome,
    ItemFailed,
    ItemNotRun,
    RunResult,
    RunStats,
)
from batchline.engine.plan import Batch
from batchline.engine.progress import BatchProgress
from batchline.engine.retry import RetryPolicy
from batchline.engine.runner import run_batches, stream_batches
from batchline.engine.signals import abandon_requested, on_abandon, stop_event, stop_requested

__all__ = [
    "Batch",
    "BatchFailure",
    "BatchOutcome",
    "BatchProgress",
    "ItemFailed",
    "ItemNotRun",
    "Key",
    "RetryPolicy",
    "RunResult",
    "RunStats",
    "abandon_requested",
    "arun_batches",
    "astream_batches",
    "canonical_key",
    "on_abandon",
    "run_batches",
    "stop_event",
    "stop_requested",
    "stream_batches",
]

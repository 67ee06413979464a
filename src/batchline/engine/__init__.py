"""The batch engine: plan, run, retry, commit, stream. Every front door runs on it."""

from batchline.engine.arunner import arun_batches, astream_batches
from batchline.engine.bridge import resolve_awaitable, run_coroutine
from batchline.engine.keys import Key, canonical_key
from batchline.engine.outcome import BatchFailure, BatchOutcome, ItemFailed, RunResult, RunStats
from batchline.engine.plan import Batch
from batchline.engine.progress import BatchProgress
from batchline.engine.retry import RetryPolicy
from batchline.engine.runner import run_batches, stream_batches

__all__ = [
    "Batch",
    "BatchFailure",
    "BatchOutcome",
    "BatchProgress",
    "ItemFailed",
    "Key",
    "RetryPolicy",
    "RunResult",
    "RunStats",
    "arun_batches",
    "astream_batches",
    "canonical_key",
    "resolve_awaitable",
    "run_batches",
    "run_coroutine",
    "stream_batches",
]

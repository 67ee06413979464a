"""The batch engine: plan, run, retry, commit, stream. Every front door runs on it.

This package's names are the engine's public contract: front doors import from
``batchline.engine`` only, never from its modules.
"""

from batchline.engine.arunner import arun_batches, astream_batches
from batchline.engine.bridge import resolve_awaitable, run_coroutine
from batchline.engine.core import new_run_id
from batchline.engine.hooks import call_hook
from batchline.engine.items import ItemResults, arun_items, item_outcome, run_items
from batchline.engine.keys import Key, KeySpec, canonical_key, content_keys
from batchline.engine.merge import merge_into, merge_outputs
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
from batchline.engine.retry import Attempts, RetryPolicy, aretry_call, retry_call
from batchline.engine.runner import run_batches, stream_batches
from batchline.engine.session import (
    RunSession,
    child_run_id,
    interruption_message,
    is_child_of,
    resume_id,
    run_label,
    split_run_id,
    status_for,
)
from batchline.engine.signals import (
    abandon_requested,
    on_abandon,
    on_stop_signal,
    stop_event,
    stop_requested,
)
from batchline.engine.stream import AsyncBatchStream, BatchStream

__all__ = [
    "AsyncBatchStream",
    "Attempts",
    "Batch",
    "BatchFailure",
    "BatchOutcome",
    "BatchProgress",
    "BatchStream",
    "ItemFailed",
    "ItemNotRun",
    "ItemResults",
    "Key",
    "KeySpec",
    "RetryPolicy",
    "RunResult",
    "RunSession",
    "RunStats",
    "abandon_requested",
    "aretry_call",
    "arun_batches",
    "arun_items",
    "astream_batches",
    "call_hook",
    "canonical_key",
    "child_run_id",
    "content_keys",
    "interruption_message",
    "is_child_of",
    "item_outcome",
    "merge_into",
    "merge_outputs",
    "new_run_id",
    "on_abandon",
    "on_stop_signal",
    "resolve_awaitable",
    "resume_id",
    "retry_call",
    "run_batches",
    "run_coroutine",
    "run_items",
    "run_label",
    "split_run_id",
    "status_for",
    "stop_event",
    "stop_requested",
    "stream_batches",
]

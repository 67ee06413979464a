"""batchline: run large collections of items through LLM and agent work in durable batches."""

import logging

from batchline.engine import (
    Batch,
    BatchFailure,
    BatchOutcome,
    BatchProgress,
    ItemFailed,
    RetryPolicy,
    RunResult,
    RunStats,
    arun_batches,
    astream_batches,
    run_batches,
    stream_batches,
)
from batchline.errors import (
    BatchlineError,
    BatchResultError,
    BatchRunError,
    ConfigurationError,
    DuplicateKeyError,
    RunActiveError,
    RunInterrupted,
    StateError,
    StopRun,
    TerminalError,
    TransientError,
    WorkerLostError,
)
from batchline.state import (
    MemoryStateStore,
    PostgresStateStore,
    RunInfo,
    SQLiteStateStore,
    StateStore,
)

# The library convention: silent unless the application configures logging.
logging.getLogger("batchline").addHandler(logging.NullHandler())

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "BatchFailure",
    "BatchOutcome",
    "BatchProgress",
    "BatchResultError",
    "BatchRunError",
    "BatchlineError",
    "ConfigurationError",
    "DuplicateKeyError",
    "ItemFailed",
    "MemoryStateStore",
    "PostgresStateStore",
    "RetryPolicy",
    "RunActiveError",
    "RunInfo",
    "RunInterrupted",
    "RunResult",
    "RunStats",
    "SQLiteStateStore",
    "StateError",
    "StateStore",
    "StopRun",
    "TerminalError",
    "TransientError",
    "WorkerLostError",
    "__version__",
    "arun_batches",
    "astream_batches",
    "run_batches",
    "stream_batches",
]

"""State stores: where a run's progress lives so that it can resume."""

from batchline.state.base import BatchCommit, ItemRecord, Lease, RunInfo, StateStore
from batchline.state.memory import MemoryStateStore
from batchline.state.sqlite import SQLiteStateStore

__all__ = [
    "BatchCommit",
    "ItemRecord",
    "Lease",
    "MemoryStateStore",
    "RunInfo",
    "SQLiteStateStore",
    "StateStore",
]

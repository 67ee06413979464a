"""State stores: where a run's progress lives so that it can resume."""

from batchline.state.base import BatchCommit, ItemRecord, Lease, RunInfo, StateStore
from batchline.state.memory import MemoryStateStore
from batchline.state.open import open_store
from batchline.state.postgres import PostgresStateStore
from batchline.state.sqlite import SQLiteStateStore

__all__ = [
    "BatchCommit",
    "ItemRecord",
    "Lease",
    "MemoryStateStore",
    "PostgresStateStore",
    "RunInfo",
    "SQLiteStateStore",
    "StateStore",
    "open_store",
]

"""State stores: where a run's progress lives so that it can resume."""

from batchline.state.base import (
    BatchCommit,
    ItemRecord,
    ItemStatus,
    Lease,
    RunInfo,
    RunStatus,
    StateStore,
)
from batchline.state.keys import Key
from batchline.state.memory import MemoryStateStore
from batchline.state.open import open_store
from batchline.state.postgres import PostgresStateStore, is_postgres_url
from batchline.state.sqlite import SQLiteStateStore

__all__ = [
    "BatchCommit",
    "ItemRecord",
    "ItemStatus",
    "Key",
    "Lease",
    "MemoryStateStore",
    "PostgresStateStore",
    "RunInfo",
    "RunStatus",
    "SQLiteStateStore",
    "StateStore",
    "is_postgres_url",
    "open_store",
]

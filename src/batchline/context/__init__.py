"""The context window array: an addressable context store, bounded implementation
contexts, near-optimal task batching, and a batch executor on the engine."""

from batchline.context.batching import (
    BatchingReport,
    TaskBatch,
    TaskBatcher,
    TaskSpec,
    first_fit_decreasing,
    lower_bound,
    next_fit,
)
from batchline.context.entries import ContextEntry, EntryType
from batchline.context.errors import (
    ContextCompressedError,
    ContextError,
    CyclicDependencyError,
    DuplicateEntryError,
    EntryBoundsError,
    MissingEntryError,
)
from batchline.context.executor import BatchExecutor, BatchResult
from batchline.context.llm_handler import context_handler
from batchline.context.store import CentralContextStore, StoreSearchResult
from batchline.context.tokens import TokenCounter, default_counter, estimate_tokens
from batchline.context.views import (
    ImplementationContext,
    ImplementationLLMContext,
    WorkingContext,
    WorkingLLMContext,
)

__all__ = [
    "BatchExecutor",
    "BatchResult",
    "BatchingReport",
    "CentralContextStore",
    "ContextCompressedError",
    "ContextEntry",
    "ContextError",
    "CyclicDependencyError",
    "DuplicateEntryError",
    "EntryBoundsError",
    "EntryType",
    "ImplementationContext",
    "ImplementationLLMContext",
    "MissingEntryError",
    "StoreSearchResult",
    "TaskBatch",
    "TaskBatcher",
    "TaskSpec",
    "TokenCounter",
    "WorkingContext",
    "WorkingLLMContext",
    "context_handler",
    "default_counter",
    "estimate_tokens",
    "first_fit_decreasing",
    "lower_bound",
    "next_fit",
]

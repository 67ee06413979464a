"""The context window array: an addressable context store, bounded implementation
contexts, near-optimal task batching, and a batch executor on the engine.

The names of the original system (``tha-hammer/silmari-Context-Engine``,
``context_window_array``) are all here and behave as there; batchline's stricter
variants carry their own names (``require``, ``pop``, ``build_strict``,
``request_strict``, ``BatchExecutor(strict=True)``).
"""

from batchline.context.batching import (
    BatchingReport,
    TaskBatch,
    TaskBatcher,
    TaskSpec,
    first_fit_decreasing,
    loaded_entries,
    lower_bound,
    next_fit,
)
from batchline.context.entries import ContextEntry, EntryType
from batchline.context.errors import (
    ContextCompressedError,
    ContextError,
    ContextWindowArrayError,
    CyclicDependencyError,
    DuplicateEntryError,
    EntryBoundsError,
    EntryFieldTypeError,
    InvalidEntryError,
    MissingEntryError,
)
from batchline.context.executor import BatchExecutor, BatchHandler, BatchHandlerError, BatchResult
from batchline.context.implementation import (
    ImplementationContext,
    ImplementationEntryView,
    ImplementationLLMContext,
)
from batchline.context.llm_handler import context_handler
from batchline.context.search import SearchResult, StoreSearchResult, VectorSearchIndex
from batchline.context.store import CentralContextStore
from batchline.context.tokens import TokenCounter, default_counter, estimate_tokens
from batchline.context.working import (
    ContextEntryView,
    SearchResultView,
    WorkingContext,
    WorkingLLMContext,
)

__all__ = [
    "BatchExecutor",
    "BatchHandler",
    "BatchHandlerError",
    "BatchResult",
    "BatchingReport",
    "CentralContextStore",
    "ContextCompressedError",
    "ContextEntry",
    "ContextEntryView",
    "ContextError",
    "ContextWindowArrayError",
    "CyclicDependencyError",
    "DuplicateEntryError",
    "EntryBoundsError",
    "EntryFieldTypeError",
    "EntryType",
    "ImplementationContext",
    "ImplementationEntryView",
    "ImplementationLLMContext",
    "InvalidEntryError",
    "MissingEntryError",
    "SearchResult",
    "SearchResultView",
    "StoreSearchResult",
    "TaskBatch",
    "TaskBatcher",
    "TaskSpec",
    "TokenCounter",
    "VectorSearchIndex",
    "WorkingContext",
    "WorkingLLMContext",
    "context_handler",
    "default_counter",
    "estimate_tokens",
    "first_fit_decreasing",
    "loaded_entries",
    "lower_bound",
    "next_fit",
]

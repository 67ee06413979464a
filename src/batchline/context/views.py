"""The two views of the store (kept for imports of ``batchline.context.views``)."""

from batchline.context.implementation import (
    ImplementationContext,
    ImplementationEntryView,
    ImplementationLLMContext,
)
from batchline.context.working import (
    ContextEntryView,
    SearchResultView,
    WorkingContext,
    WorkingLLMContext,
)

__all__ = [
    "ContextEntryView",
    "ImplementationContext",
    "ImplementationEntryView",
    "ImplementationLLMContext",
    "SearchResultView",
    "WorkingContext",
    "WorkingLLMContext",
]

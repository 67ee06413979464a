"""Provider batch APIs (OpenAI Batch, Anthropic Message Batches), durable across crashes.

``ChatModel(..., mode="batch")`` sends its requests through a ``BatchCollector``: jobs
are journaled in the run's state (``BatchJournal``) before they are polled, so a crash,
``kill -9`` or Ctrl-C never loses a submitted job or pays for it twice."""

from batchline.llm.batch.collector import BatchCollector, BatchWaitInterrupted, JobView
from batchline.llm.batch.journal import JOURNAL_CHILD, BatchJournal
from batchline.llm.batch.providers import (
    AnthropicBatches,
    BatchProvider,
    ItemResult,
    JobStatus,
    OpenAIBatches,
)
from batchline.llm.batch.setup import BATCH_DISCOUNT, request_name

__all__ = [
    "BATCH_DISCOUNT",
    "JOURNAL_CHILD",
    "AnthropicBatches",
    "BatchCollector",
    "BatchJournal",
    "BatchProvider",
    "BatchWaitInterrupted",
    "ItemResult",
    "JobStatus",
    "JobView",
    "OpenAIBatches",
    "request_name",
]

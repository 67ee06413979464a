"""The Python front door: agents chained with ``>>`` and ``|``, batching scopes on the engine."""

from batchline.pipeline.agent import Agent, AgentMeta, ends_batching, triggers_batching
from batchline.pipeline.config import BatchingConfig
from batchline.pipeline.errors import (
    BatchingConfigurationError,
    PipelineBatchError,
    PipelineInterrupted,
    PipelineWarning,
    StepError,
)
from batchline.pipeline.executor import BATCH_KEY, PipelineBatchExecutor
from batchline.pipeline.flow import Chunked, FunctionAgent, Node, Parallel, Sequence, Step
from batchline.pipeline.frozen import FrozenDict
from batchline.pipeline.llm_agent import LLMAgent
from batchline.pipeline.pipeline import Pipeline
from batchline.pipeline.progress import BatchProgressContext
from batchline.pipeline.result import (
    PipelineFailure,
    PipelineResult,
    PipelineStats,
    PipelineUpdate,
)
from batchline.pipeline.scopes import BatchingScope, BatchingScopeManager

__all__ = [
    "BATCH_KEY",
    "Agent",
    "AgentMeta",
    "BatchProgressContext",
    "BatchingConfig",
    "BatchingConfigurationError",
    "BatchingScope",
    "BatchingScopeManager",
    "Chunked",
    "FrozenDict",
    "FunctionAgent",
    "LLMAgent",
    "Node",
    "Parallel",
    "Pipeline",
    "PipelineBatchError",
    "PipelineBatchExecutor",
    "PipelineFailure",
    "PipelineInterrupted",
    "PipelineResult",
    "PipelineStats",
    "PipelineUpdate",
    "PipelineWarning",
    "Sequence",
    "Step",
    "StepError",
    "ends_batching",
    "triggers_batching",
]

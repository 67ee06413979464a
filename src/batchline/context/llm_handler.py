"""A ready ``BatchExecutor`` handler: one LLM call per task batch, cache-friendly prompts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batchline.context.batching import TaskSpec
from batchline.context.views import ImplementationContext
from batchline.engine import run_coroutine
from batchline.llm import ChatModel, acomplete_items
from batchline.llm.batch import request_name


def context_handler(
    model: ChatModel, instructions: str, output: Any = None, *, mode: str | None = None
) -> Callable[[ImplementationContext, list[TaskSpec]], dict[str, Any]]:
    """A handler for ``BatchExecutor``: the entries' full content first, in canonical
    order (so consecutive batches share a prompt prefix and provider caches hit), then the
    batch's tasks; answers are mapped back to task ids. A task with no valid answer is
    an error for the batch (the executor retries or records it).

    ``mode="batch"`` sends each task batch's request to the provider's batch API (the
    task batches that run at the same time share jobs; see docs/llm.md "Batch mode")."""
    if mode not in (None, "online", "batch"):
        raise ValueError(f"`mode` is {mode!r}; expected 'online' or 'batch'")
    if mode == "batch":
        model = model.batched()

    def handle(context: ImplementationContext, tasks: list[TaskSpec]) -> dict[str, Any]:
        system = f"{instructions}\n\n# Context\n{context.render()}"

        async def ask() -> dict[str, Any]:
            try:
                with request_name(tasks[0].id if len(tasks) == 1 else None):
                    return await acomplete_items(
                        model,
                        {task.id: task.description for task in tasks},
                        instructions=system,
                        output=output,
                    )
            finally:
                await model.aclose()

        answers: dict[str, Any] = run_coroutine(ask())
        failed = [key for key, value in answers.items() if isinstance(value, Exception)]
        if failed:
            raise answers[failed[0]]
        return {
            key: value.model_dump() if hasattr(value, "model_dump") else value
            for key, value in answers.items()
        }

    return handle

"""A ready ``BatchExecutor`` handler: one LLM call per task batch, cache-friendly prompts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from batchline.context.batching import TaskSpec
from batchline.context.views import ImplementationContext
from batchline.engine import run_coroutine
from batchline.llm import ChatModel, acomplete_items


def context_handler(
    model: ChatModel, instructions: str, output: Any = None
) -> Callable[[ImplementationContext, list[TaskSpec]], dict[str, Any]]:
    """A handler for ``BatchExecutor``: the entries' full content first, in canonical
    order (so consecutive batches share a prompt prefix and provider caches hit), then the
    batch's tasks; answers are mapped back to task ids. A task with no valid answer is
    an error for the batch (the executor retries or records it)."""

    def handle(context: ImplementationContext, tasks: list[TaskSpec]) -> dict[str, Any]:
        system = f"{instructions}\n\n# Context\n{context.render()}"

        async def ask() -> dict[str, Any]:
            try:
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

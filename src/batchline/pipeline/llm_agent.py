"""``LLMAgent``: an LLM step in a pipeline, per item or per batch."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from batchline.llm import ChatModel, acomplete_items
from batchline.llm.batch import request_name
from batchline.pipeline.agent import Agent


class LLMAgent(Agent):
    """Ask a model about each item of a list field (or about the whole context).

    Args:
        model: a ``ChatModel``.
        instructions: the system prompt.
        output: a pydantic model (or JSON schema) for structured answers.
        input_field: the list field to answer item by item (None: one call on the context).
        output_field: where answers go (default ``"answers"``).
        per_batch: pack the items of the field into one request (batch prompt) instead of
            one request per item.
        prompt: how an item becomes a prompt (default: its JSON).
        mode: ``"online"`` (the model's own mode) or ``"batch"``: the items' requests go
            to the provider's batch API as jobs (half the price; answers within hours;
            jobs survive crashes, see docs/llm.md "Batch mode").
    """

    def __init__(
        self,
        model: ChatModel,
        instructions: str,
        output: Any = None,
        *,
        input_field: str | None = None,
        output_field: str = "answers",
        per_batch: bool = False,
        prompt: Any = None,
        name: str | None = None,
        mode: str | None = None,
    ) -> None:
        if mode not in (None, "online", "batch"):
            raise ValueError(f"`mode` is {mode!r}; expected 'online' or 'batch'")
        self.model = model.batched() if mode == "batch" else model
        self.mode = mode or getattr(model, "mode", "online")
        self.instructions = instructions
        self.output = output
        self.input_field = input_field
        self.output_field = output_field
        self.per_batch = per_batch
        self.prompt = prompt or _as_text
        self.requires = (input_field,) if input_field else ()
        self.provides = (output_field,)
        self._name = name or "LLMAgent"

    @property
    def name(self) -> str:
        """The agent's name."""
        return self._name

    async def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """Answers for the items (in order), or one answer for the whole context."""
        try:
            if self.input_field is None:
                completion = await self.model.acomplete(
                    self.prompt(dict(context)), system=self.instructions, output=self.output
                )
                return {self.output_field: _value(completion)}
            items = list(context[self.input_field])
            if self.per_batch:
                keyed = {str(i): self.prompt(item) for i, item in enumerate(items)}
                # packed: one request for the batch (in batch mode, one job request)
                answers = await acomplete_items(
                    self.model, keyed, instructions=self.instructions, output=self.output
                )
                failed = [k for k, v in answers.items() if isinstance(v, Exception)]
                if failed:
                    raise answers[failed[0]]
                values = [_plain(answers[str(i)]) for i in range(len(items))]
            else:
                completions = await asyncio.gather(
                    *(self._ask(item, index) for index, item in enumerate(items))
                )
                values = [_value(c) for c in completions]
            return {self.output_field: values}
        finally:
            await self.model.aclose()

    async def _ask(self, item: Any, index: int) -> Any:
        """One item's call; in batch mode its request is named after the item."""
        with request_name(f"item-{index}" if self.mode == "batch" else None):
            return await self.model.acomplete(
                self.prompt(item), system=self.instructions, output=self.output
            )


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _plain(value: Any) -> Any:
    return value.model_dump() if hasattr(value, "model_dump") else value


def _value(completion: Any) -> Any:
    return _plain(completion.parsed) if completion.parsed is not None else completion.text

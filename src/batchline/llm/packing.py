"""Batch prompts: N items in one request, N answers parsed back by item key.

Only the items whose answers are missing or invalid are asked again, up to
``max_rounds`` requests; what is still missing then is reported per item.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from batchline.llm.errors import LLMTruncatedError, StructuredOutputError
from batchline.llm.model import ChatModel
from batchline.llm.schema import output_spec

_PACK_INSTRUCTIONS = (
    "You get several items, each under its key. Answer every item on its own. Reply with "
    'only a JSON object {"answers": {KEY: ANSWER, ...}} with one answer per key.'
)


def _item_schema(output: Any) -> dict[str, Any]:
    if output is None:
        return {"type": "string"}
    if isinstance(output, Mapping):
        return dict(output)
    schema: dict[str, Any] = output.model_json_schema()
    return schema


async def acomplete_items(
    model: ChatModel,
    items: Mapping[str, str],
    *,
    instructions: str,
    output: Any = None,
    max_rounds: int = 3,
) -> dict[str, Any]:
    """Answers by key; a key whose answer never came (or was invalid) maps to an Exception."""
    remaining = dict(items)
    answers: dict[str, Any] = {}
    errors: dict[str, Exception] = {}
    for _ in range(max_rounds):
        if not remaining:
            break
        keys = list(remaining)
        item_schema = _item_schema(output)
        schema = {
            "title": "answers",
            "type": "object",
            "properties": {
                "answers": {
                    "type": "object",
                    "properties": dict.fromkeys(keys, item_schema),
                    "required": keys,
                }
            },
            "required": ["answers"],
        }
        prompt = "\n\n".join(f"[{key}]\n{text}" for key, text in remaining.items())
        try:
            completion = await model.acomplete(
                prompt,
                system=f"{instructions}\n\n{_PACK_INSTRUCTIONS}",
                output=schema_relaxed(schema),
            )
        except (StructuredOutputError, LLMTruncatedError) as exc:
            errors = dict.fromkeys(keys, exc)  # a truncated pack: smaller rounds may fit
            continue
        got = completion.parsed.get("answers", {}) if isinstance(completion.parsed, dict) else {}
        for key in keys:
            if key not in got:
                errors[key] = StructuredOutputError(f"no answer for item {key!r}")
                continue
            value = got[key]
            try:
                answers[key] = _validate(value, output)
            except ValueError as exc:
                errors[key] = StructuredOutputError(f"invalid answer for item {key!r}: {exc}")
                continue
            remaining.pop(key)
            errors.pop(key, None)
    return {**{key: errors[key] for key in remaining}, **answers}


def schema_relaxed(schema: dict[str, Any]) -> dict[str, Any]:
    """The packed schema without ``required`` on answers: missing keys are retried, not
    rejected as a whole."""
    relaxed: dict[str, Any] = json.loads(json.dumps(schema))
    relaxed["properties"]["answers"].pop("required", None)
    return relaxed


def _validate(value: Any, output: Any) -> Any:
    if output is None:
        return value
    if isinstance(output, Mapping):
        return output_spec(output)[1](json.dumps(value))  # type: ignore[misc]
    return output.model_validate(value)

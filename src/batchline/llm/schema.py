"""Structured output: the JSON schema sent to the server, and the validator of answers.

A pydantic model validates with pydantic; a JSON-schema dict validates with the
``jsonschema`` package (every keyword: ``enum``, ``pattern``, ``minimum``, ``$ref``, ...).
The validator's message is what the repair loop feeds back to the model.

Some servers reject ``response_format: json_schema`` (llama.cpp's server answers
``Input should be 'text' or 'json_object'``); ``json_object_fallback`` asks them for
``json_object`` instead, with the schema in the prompt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

Validator = Callable[[str], Any]

_REJECTS_SCHEMA = re.compile(
    r"json_schema|response_format|'text' or 'json_object'|json_object|structured output",
    re.IGNORECASE,
)


def output_spec(output: Any) -> tuple[dict[str, Any] | None, Validator | None]:
    """The JSON schema for a response format, and a validator ``text -> value``.

    Raises:
        TypeError: ``output`` is neither a pydantic model class nor a schema dict.
        jsonschema.SchemaError: the dict is not a valid JSON schema.
    """
    if output is None:
        return None, None
    if isinstance(output, Mapping):
        return dict(output), _jsonschema_validator(dict(output))
    if isinstance(output, type) and hasattr(output, "model_validate_json"):
        model: Any = output
        schema: dict[str, Any] = model.model_json_schema()
        return schema, model.model_validate_json
    raise TypeError(
        f"`output` must be a pydantic model class or a JSON schema dict, not {output!r}"
    )


def _jsonschema_validator(schema: dict[str, Any]) -> Validator:
    import jsonschema  # type: ignore[import-untyped]  # noqa: PLC0415 - no stubs; dict schemas only

    cls: Any = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    checker = cls(schema, format_checker=cls.FORMAT_CHECKER)

    def validate(text: str) -> Any:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON: {exc}") from None
        errors = sorted(checker.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            raise ValueError("; ".join(_describe(error) for error in errors[:5]))
        return value

    return validate


def _describe(error: Any) -> str:
    path = "$" + "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path
    )
    return f"at {path}: {error.message}"


def response_format(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The ``json_schema`` response format for ``schema``."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title", "output")))[:64] or "output"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": dict(schema)}}


def rejects_json_schema(status: int, message: str) -> bool:
    """Whether an error answer says the server does not take ``json_schema`` formats."""
    return status in (400, 415, 422, 500, 501) and bool(_REJECTS_SCHEMA.search(message))


def json_object_fallback(body: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` asking for ``json_object``, with the schema in the system prompt."""
    instruction = "Answer with only a JSON object that matches this JSON schema:\n" + json.dumps(
        schema, ensure_ascii=False
    )
    messages = [dict(m) for m in body.get("messages", [])]
    if messages and messages[0].get("role") == "system":
        messages[0]["content"] = f"{messages[0].get('content', '')}\n\n{instruction}"
    else:
        messages.insert(0, {"role": "system", "content": instruction})
    return {**body, "messages": messages, "response_format": {"type": "json_object"}}


__all__ = [
    "json_object_fallback",
    "output_spec",
    "rejects_json_schema",
    "response_format",
]

"""Anthropic's native Messages API: requests and answers translated both ways.

``ChatModel`` builds OpenAI-shaped chat bodies (messages, ``response_format``,
``max_tokens``); for ``provider="anthropic"`` they become Messages API requests:
the system messages go to the top-level ``system``, ``max_tokens`` is always sent (the
API requires it), and a JSON schema becomes a forced tool (``tools`` + ``tool_choice``)
whose ``input`` is the structured answer. Answers come back in the chat-completion shape
the rest of the client reads (``choices[0].message.content``, ``usage``,
``finish_reason``), so the cache, validation, repairs and cost accounting are shared.

Headers: ``x-api-key``, ``anthropic-version``. Endpoint: ``ANTHROPIC_BASE_URL`` (default
``https://api.anthropic.com``), key ``ANTHROPIC_API_KEY``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = [
    "ANTHROPIC_URL",
    "ANTHROPIC_VERSION",
    "DEFAULT_MAX_TOKENS",
    "AnthropicTransport",
    "anthropic_headers",
    "from_anthropic",
    "to_anthropic",
]

ANTHROPIC_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
"""``max_tokens`` sent when the caller gives none (Anthropic requires one)."""

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
}
_SAMPLING = ("temperature", "top_p", "top_k", "stop_sequences", "metadata")


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) if isinstance(part, Mapping) else str(part)
            for part in content
        )
    return "" if content is None else str(content)


def to_anthropic(
    body: Mapping[str, Any], default_max_tokens: int = DEFAULT_MAX_TOKENS
) -> dict[str, Any]:
    """A Messages API request for an OpenAI-shaped chat ``body``."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    for message in body.get("messages", []):
        role = message.get("role")
        if role in ("system", "developer"):
            system.append(_text(message.get("content")))
            continue
        role = "assistant" if role == "assistant" else "user"
        text = _text(message.get("content"))
        if messages and messages[-1]["role"] == role:  # Anthropic wants turns to alternate
            messages[-1]["content"] += "\n\n" + text
        else:
            messages.append({"role": role, "content": text})
    params: dict[str, Any] = {
        "model": body["model"],
        "max_tokens": int(
            body.get("max_tokens") or body.get("max_completion_tokens") or default_max_tokens
        ),
        "messages": messages,
    }
    if system:
        params["system"] = "\n\n".join(system)
    for name in _SAMPLING:
        if body.get(name) is not None:
            params[name] = body[name]
    if body.get("stop") is not None:
        stop = body["stop"]
        params["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        name = _tool_name(str(spec.get("name") or "output"))
        schema = dict(spec.get("schema") or {"type": "object"})
        params["tools"] = [
            {
                "name": name,
                "description": "Give the answer through this tool's input.",
                "input_schema": schema,
            }
        ]
        params["tool_choice"] = {"type": "tool", "name": name}
    elif fmt.get("type") == "json_object":
        params["system"] = (
            params.get("system", "") + "\n\nAnswer with only a JSON object."
        ).strip()
    return params


def _tool_name(name: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in name)[:64]
    return cleaned or "output"


def from_anthropic(message: Mapping[str, Any]) -> dict[str, Any]:
    """A chat-completion-shaped answer for an Anthropic ``message``."""
    content = message.get("content") or []
    tool = next(
        (b for b in content if isinstance(b, Mapping) and b.get("type") == "tool_use"), None
    )
    if tool is not None:
        text = json.dumps(tool.get("input"), ensure_ascii=False)
    else:
        text = "".join(
            str(b.get("text", ""))
            for b in content
            if isinstance(b, Mapping) and b.get("type") == "text"
        )
    usage = message.get("usage") or {}
    fresh = int(usage.get("input_tokens") or 0)
    read = int(usage.get("cache_read_input_tokens") or 0)
    written = int(usage.get("cache_creation_input_tokens") or 0)
    prompt = fresh + read + written
    output = int(usage.get("output_tokens") or 0)
    stop = str(message.get("stop_reason") or "end_turn")
    return {
        "id": message.get("id"),
        "object": "chat.completion",
        "model": message.get("model"),
        "choices": [
            {
                "index": 0,
                "finish_reason": _STOP_REASONS.get(stop, stop),
                "message": {"role": "assistant", "content": text},
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": output,
            "total_tokens": prompt + output,
            "prompt_tokens_details": {"cached_tokens": read},
        },
        "provider": "anthropic",
        "stop_reason": stop,
    }


def anthropic_headers(api_key: str, version: str = ANTHROPIC_VERSION) -> dict[str, str]:
    """The headers of every Anthropic request."""
    return {
        "x-api-key": api_key,
        "anthropic-version": version,
        "content-type": "application/json",
    }


class AnthropicTransport:
    """Online Messages API calls over a lean HTTP transport (``post(url, headers, body)``
    of ``ChatModel``'s aiohttp path), with the translation both ways.

    Args:
        http: the transport that POSTs JSON (``ChatModel``'s aiohttp transport).
        base_url: the API root (no ``/v1``).
        api_key: the key sent as ``x-api-key``.
        default_max_tokens: sent when a request gives no ``max_tokens``.
    """

    def __init__(
        self, http: Any, base_url: str, api_key: str, default_max_tokens: int = DEFAULT_MAX_TOKENS
    ) -> None:
        self.http = http
        self.url = f"{base_url.rstrip('/')}/v1/messages"
        self.headers = anthropic_headers(api_key)
        self.default_max_tokens = default_max_tokens

    async def post(
        self, url: str, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, float | None, Any]:
        """One call: ``(status, retry_after, chat-shaped payload or the error payload)``."""
        del url, headers
        params = to_anthropic(body, self.default_max_tokens)
        status, retry_after, payload = await self.http.post(self.url, self.headers, params)
        if status != 200:
            return status, retry_after, _error_payload(payload)
        return status, retry_after, from_anthropic(payload)

    async def close(self) -> None:
        """Close this event loop's connections."""
        await self.http.close()


def _error_payload(payload: Any) -> dict[str, Any]:
    """Anthropic's ``{"type": "error", "error": {...}}`` in the OpenAI error shape."""
    if isinstance(payload, Mapping) and isinstance(payload.get("error"), Mapping):
        error = payload["error"]
        return {"error": {"message": str(error.get("message", "")), "type": error.get("type")}}
    return {"error": {"message": str(payload)}}

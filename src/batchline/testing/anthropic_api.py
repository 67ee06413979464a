"""Anthropic's Messages API on the local test server (``POST /v1/messages``).

Requests are checked as Anthropic checks them (an API key and the ``anthropic-version``
header, ``model``, ``max_tokens`` and ``messages`` required, ``system`` top-level, roles
``user``/``assistant`` only) and answered by the server's own content function, so the
official ``anthropic`` client works against it. Structured output: a ``tool_choice`` that
names a tool is answered with a ``tool_use`` block filling the tool's ``input_schema``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

__all__ = [
    "AnthropicAPI",
    "anthropic_message",
    "check_anthropic_headers",
    "request_problem",
    "to_chat_body",
]

Answer = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


def check_anthropic_headers(request: web.Request) -> web.Response | None:
    """A 401/400 answer when Anthropic's required headers are missing, else None (the key
    comes as ``x-api-key``, or as ``Authorization: Bearer`` from newer official clients)."""
    bearer = request.headers.get("authorization", "").startswith("Bearer ")
    if not request.headers.get("x-api-key") and not bearer:
        return _error(401, "authentication_error", "x-api-key header is required")
    if not request.headers.get("anthropic-version"):
        return _error(400, "invalid_request_error", "anthropic-version header is required")
    return None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(block.get("text", "")) if isinstance(block, dict) else str(block)
            for block in content
        )
    return str(content)


def request_problem(params: Any) -> str | None:
    if not isinstance(params, dict):
        return "the request body must be a JSON object"
    for name in ("model", "max_tokens", "messages"):
        if name not in params:
            return f"{name}: Field required"
    if not isinstance(params["max_tokens"], int) or params["max_tokens"] < 1:
        return "max_tokens: must be a positive integer"
    for message in params["messages"]:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return "messages: roles must be 'user' or 'assistant' (use top-level `system`)"
    return None


def to_chat_body(params: dict[str, Any]) -> dict[str, Any]:
    """An Anthropic request as the equivalent OpenAI chat body (to reuse the answerer)."""
    messages: list[dict[str, Any]] = []
    if params.get("system"):
        messages.append({"role": "system", "content": _text(params["system"])})
    for message in params.get("messages", []):
        messages.append({"role": message["role"], "content": _text(message.get("content"))})
    body: dict[str, Any] = {"model": params.get("model"), "messages": messages}
    choice = params.get("tool_choice") or {}
    if choice.get("type") == "tool":
        tool = next((t for t in params.get("tools", []) if t.get("name") == choice["name"]), None)
        if tool is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": tool["name"], "schema": tool.get("input_schema", {})},
            }
    return body


def anthropic_message(params: dict[str, Any], answer: Answer) -> dict[str, Any]:
    """The Anthropic ``message`` answering ``params`` (through the OpenAI answerer)."""
    body = to_chat_body(params)
    status, completion = answer(body)
    if status != 200:
        raise ValueError(str(completion))
    text = completion["choices"][0]["message"]["content"]
    usage = completion.get("usage", {})
    content: list[dict[str, Any]]
    if "response_format" in body:
        name = body["response_format"]["json_schema"]["name"]
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = {"raw": text}
        content = [
            {
                "type": "tool_use",
                "id": f"toolu_{uuid.uuid4().hex[:20]}",
                "name": name,
                "input": value,
            }
        ]
        stop = "tool_use"
    else:
        content = [{"type": "text", "text": text}]
        stop = "end_turn"
    return {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": params["model"],
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {
            "input_tokens": int(usage.get("prompt_tokens", 1)),
            "output_tokens": int(usage.get("completion_tokens", 1)),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }


class AnthropicAPI:
    """``POST /v1/messages`` (online), answered by ``answer``; counts requests."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests = 0

    def register(self, app: web.Application) -> None:
        """Add the route to ``app``."""
        app.router.add_post("/v1/messages", self._messages)

    async def _messages(self, request: web.Request) -> web.Response:
        problem = check_anthropic_headers(request)
        if problem is not None:
            return problem
        try:
            params = await request.json()
        except json.JSONDecodeError:
            return _error(400, "invalid_request_error", "the body is not JSON")
        reason = request_problem(params)
        if reason is not None:
            return _error(400, "invalid_request_error", reason)
        self.requests += 1
        return web.json_response(anthropic_message(params, self.answer))


def _error(status: int, kind: str, message: str) -> web.Response:
    return web.json_response(
        {"type": "error", "error": {"type": kind, "message": message}}, status=status
    )

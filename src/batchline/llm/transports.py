"""How a request reaches the server: lean aiohttp, or the official ``openai`` client.

Each transport answers ``post(url, headers, body) -> (status, response headers, payload)``
and raises ``LLMTransientError`` for timeouts and dropped connections; everything else
(limits, retries, cache, accounting) is ``ChatModel``'s.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
from typing import Any

from batchline.llm.errors import LLMTransientError

Posted = tuple[int, dict[str, str], Any]
OPENAI_AIOHTTP_HINT = "pip install 'openai[aiohttp]>=1.88' (or 'batchline[openai-aiohttp]')"


class AiohttpTransport:
    """Lean HTTP: one session (and connection pool) per event loop."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()

    async def post(self, url: str, headers: dict[str, str], body: dict[str, Any]) -> Posted:
        """Send one request."""
        import aiohttp  # noqa: PLC0415 - heavy; only when calls are made

        loop_id = id(asyncio.get_running_loop())
        with self._lock:
            session = self._sessions.get(loop_id)
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                json_serialize=json.dumps,
            )
            with self._lock:
                self._sessions[loop_id] = session
        try:
            data = json.dumps(body, ensure_ascii=False).encode()
            async with session.post(url, data=data, headers=headers) as response:
                text = await response.read()
                answer_headers = {k.lower(): v for k, v in response.headers.items()}
                status = response.status
        except TimeoutError:
            raise LLMTransientError(f"no answer within {self.timeout}s from {url}") from None
        except aiohttp.ClientError as exc:
            raise LLMTransientError(f"connection to {url} failed: {exc}") from None
        try:
            payload = json.loads(text) if text else {}
        except json.JSONDecodeError:
            if status == 200:
                raise LLMTransientError(f"{url} answered with a body that is not JSON") from None
            payload = {"error": {"message": text[:500].decode(errors="replace")}}
        return status, answer_headers, payload

    async def close(self) -> None:
        """Close this event loop's session."""
        loop_id = id(asyncio.get_running_loop())
        with self._lock:
            session = self._sessions.pop(loop_id, None)
        if session is not None:
            await session.close()


def openai_aiohttp_problem() -> str | None:
    """Why the installed ``openai`` cannot use its aiohttp transport, or None if it can."""
    try:
        import openai  # noqa: PLC0415
    except ImportError:  # pragma: no cover - a declared dependency
        return f"the `openai` package is not installed: {OPENAI_AIOHTTP_HINT}"
    version = getattr(openai, "__version__", "?")
    if not hasattr(openai, "DefaultAioHttpClient"):
        return (
            f"openai {version} has no aiohttp transport (`DefaultAioHttpClient` came in 1.88): "
            f"{OPENAI_AIOHTTP_HINT}, or use transport='aiohttp' (batchline's own, no extra)"
        )
    vendored = _has_module("openai._vendor.httpx_aiohttp")
    if not (vendored or _has_module("httpx_aiohttp")) or not _has_module("aiohttp"):
        return (
            f"openai {version} needs its `aiohttp` extra for transport='openai-aiohttp' "
            f"(the `httpx_aiohttp` package is missing): {OPENAI_AIOHTTP_HINT}, or use "
            "transport='aiohttp'"
        )
    return None


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


class OpenAISDKTransport:
    """The official client (``AsyncOpenAI``), retries off: ``ChatModel`` retries."""

    def __init__(self, base_url: str, api_key: str, timeout: float, aiohttp: bool) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.timeout = timeout
        self.aiohttp = aiohttp
        self._clients: dict[int, Any] = {}

    async def post(self, url: str, headers: dict[str, str], body: dict[str, Any]) -> Posted:
        """Send one request through ``AsyncOpenAI``."""
        del url, headers
        import openai  # noqa: PLC0415

        loop_id = id(asyncio.get_running_loop())
        client = self._clients.get(loop_id)
        if client is None:
            options: dict[str, Any] = {}
            if self.aiohttp:
                options["http_client"] = openai.DefaultAioHttpClient()
            client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=self.api_key,
                max_retries=0,
                timeout=self.timeout,
                **options,
            )
            self._clients[loop_id] = client
        try:
            raw = await client.chat.completions.with_raw_response.create(**body)
        except openai.APIStatusError as exc:
            answer_headers = {k.lower(): v for k, v in exc.response.headers.items()}
            return exc.status_code, answer_headers, {"error": {"message": str(exc)}}
        except openai.APITimeoutError:
            raise LLMTransientError(f"no answer within {self.timeout}s") from None
        except openai.APIConnectionError as exc:
            raise LLMTransientError(f"connection failed: {exc}") from None
        answer_headers = {k.lower(): v for k, v in raw.headers.items()}
        return 200, answer_headers, raw.parse().model_dump()

    async def close(self) -> None:
        """Close this event loop's client."""
        client = self._clients.pop(id(asyncio.get_running_loop()), None)
        if client is not None:
            await client.close()


__all__ = ["AiohttpTransport", "OpenAISDKTransport", "openai_aiohttp_problem"]

"""A real OpenAI-compatible HTTP server on 127.0.0.1, for tests and benchmarks.

It answers ``POST /v1/chat/completions`` and ``GET /v1/models`` deterministically:
it echoes the last user message, or fills the requested JSON schema, and honours
``max_tokens`` (a longer answer is cut, ``finish_reason: "length"``). It can inject
the faults real providers have: latency, 429s, 500s, requests that hang past the client's
timeout, malformed JSON, and requests- and tokens-per-window limits it enforces over a
sliding window (a minute by default). Its 429s say how long to wait in any of the header
styles found in the wild (``retry_style``), it can advertise its limits
(``x-ratelimit-limit-*`` / ``-remaining-*`` / ``-reset-*``), report a proxy's cost
(LiteLLM's ``x-litellm-response-cost``), and reject ``json_schema`` response formats the
way llama.cpp's server does.

    with OpenAICompatibleServer(latency=0.05) as server:
        model = ChatModel("test-model", base_url=server.base_url, api_key="test")

    python -m batchline.testing.server --port 8000 --latency 0.05   # as a process
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import json
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from batchline.testing.anthropic_api import AnthropicAPI
from batchline.testing.batch_api import BatchAPI, chat_answer

Responder = Callable[[list[dict[str, Any]], dict[str, Any]], str | None]
RETRY_STYLES = ("retry-after", "http-date", "retry-after-ms", "reset", "proxy", "none")


def go_duration(seconds: float) -> str:
    """``seconds`` the way OpenAI writes ``x-ratelimit-reset-*``: ``250ms``, ``1.2s``,
    ``6m0s``."""
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.3g}s"


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


def fill_schema(schema: dict[str, Any], seed_text: str, defs: dict[str, Any] | None = None) -> Any:
    """A deterministic value that satisfies a (simple) JSON schema."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return fill_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], seed_text, defs)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return fill_schema(schema[key][0], seed_text, defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: fill_schema(sub, f"{seed_text}:{name}", defs) for name, sub in props.items()}
    if kind == "array":
        return [fill_schema(schema.get("items", {"type": "string"}), seed_text, defs)]
    if kind == "integer":
        return len(seed_text) % 100
    if kind == "number":
        return (len(seed_text) % 100) / 10
    if kind == "boolean":
        return len(seed_text) % 2 == 0
    if kind == "null":
        return None
    return seed_text[-60:]


class OpenAICompatibleServer:
    """The server, run on its own thread and event loop.

    Args:
        latency: seconds before each answer.
        rate_limit_rate: share of requests answered 429 with ``Retry-After: retry_after``.
        error_rate: share answered 500.
        timeout_rate: share that hang for ``hang_seconds`` (past a client's timeout).
        malformed_rate: share answered with broken JSON in the message content.
        rpm_limit, tpm_limit: enforced per sliding ``rate_window`` (429 with a wait).
        rate_window: seconds of the sliding window (60: per minute).
        retry_style: how a 429 says how long to wait: ``retry-after`` (seconds),
            ``http-date`` (``Retry-After`` as an HTTP date), ``retry-after-ms``, ``reset``
            (only ``x-ratelimit-reset-requests`` / ``-tokens`` as ``1.2s`` durations, with
            ``remaining`` 0), ``proxy`` (``x-litellm-retry-after``), or ``none``.
        ratelimit_headers: advertise ``x-ratelimit-limit-*``, ``-remaining-*`` and
            ``-reset-*`` on every answer (the limits only when the window is a minute).
        cost_per_call: send LiteLLM's ``x-litellm-response-cost`` with this value.
        rate_limit_first: answer the first N requests 429 (waiting ``retry_after``).
        reject_json_schema: answer a ``json_schema`` response format with HTTP 500
            ``Input should be 'text' or 'json_object'`` (as llama.cpp's server does).
        responder: ``fn(messages, body) -> content`` to script answers (None: default).
        seed: for the fault injection.
        batch: options of the provider batch APIs (``BatchAPI``: ``completion_time``,
            ``error_ids``, ``expire_ids``, ``fail_jobs``); Anthropic's Messages API is
            served too (``batch_api``, ``anthropic_api``).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        rate_limit_rate: float = 0.0,
        retry_after: float = 1.0,
        error_rate: float = 0.0,
        timeout_rate: float = 0.0,
        hang_seconds: float = 30.0,
        malformed_rate: float = 0.0,
        rpm_limit: int | None = None,
        tpm_limit: int | None = None,
        rate_window: float = 60.0,
        retry_style: str = "retry-after",
        ratelimit_headers: bool = False,
        cost_per_call: float | None = None,
        reject_json_schema: bool = False,
        rate_limit_first: int = 0,
        responder: Responder | None = None,
        seed: int = 0,
        batch: Mapping[str, Any] | None = None,
    ) -> None:
        if retry_style not in RETRY_STYLES:
            raise ValueError(f"`retry_style` is {retry_style!r}; expected one of {RETRY_STYLES}")
        self.host = host
        self.port = port
        self.latency = latency
        self.rate_limit_rate = rate_limit_rate
        self.retry_after = retry_after
        self.error_rate = error_rate
        self.timeout_rate = timeout_rate
        self.hang_seconds = hang_seconds
        self.malformed_rate = malformed_rate
        self.rpm_limit = rpm_limit
        self.tpm_limit = tpm_limit
        self.rate_window = rate_window
        self.retry_style = retry_style
        self.ratelimit_headers = ratelimit_headers
        self.cost_per_call = cost_per_call
        self.reject_json_schema = reject_json_schema
        self.rate_limit_first = rate_limit_first
        self.accepted_at: list[float] = []  # monotonic times of the answers given (200s)
        self.log: list[tuple[float, int]] = []  # (monotonic arrival time, status) per request
        self.responder = responder
        self._rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections: set[Any] = set()  # the clients' (host, port): connections opened
        self._window: deque[tuple[float, int]] = deque()
        self._window_tokens = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self.batches = BatchAPI(chat_answer(self._content), **dict(batch or {}))
        self.anthropic = AnthropicAPI(chat_answer(self._content))

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    def __enter__(self) -> OpenAICompatibleServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> OpenAICompatibleServer:
        """Start serving on a background thread; returns once the port is open."""
        self._thread = threading.Thread(target=self._serve, name="openai-test-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the test server did not start within 10 s")
        return self

    def stop(self) -> None:
        """Stop serving."""
        loop = self._loop
        if loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        future.result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._startup())
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _startup(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        self.batches.register(app)
        self.anthropic.register(app)
        # stopping cancels answers still pending (a client that went away) after 1 s
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=1024)
        await site.start()
        server: Any = site._server  # the bound port, when 0 was asked for
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        del request
        return web.json_response(
            {
                "object": "list",
                "data": [{"id": "test-model", "object": "model", "owned_by": "batchline"}],
            }
        )

    def _limited(self, tokens: int) -> tuple[float | None, dict[str, str]]:
        """Seconds to wait if this request would break the window's limits (else None),
        and the ``x-ratelimit-*`` headers that describe the window."""
        if self.rpm_limit is None and self.tpm_limit is None:
            return None, {}
        now = time.monotonic()
        window = self.rate_window
        with self._lock:
            while self._window and now - self._window[0][0] >= window:
                self._window_tokens -= self._window.popleft()[1]
            requests = len(self._window)
            used = self._window_tokens
            over_rpm = self.rpm_limit is not None and requests + 1 > self.rpm_limit
            over_tpm = self.tpm_limit is not None and used + tokens > self.tpm_limit
            wait = None
            if over_rpm or over_tpm:
                oldest = self._window[0][0] if self._window else now
                wait = max(0.05, window - (now - oldest))
            else:
                self._window.append((now, tokens))
                self._window_tokens += tokens
                requests += 1
                used += tokens
            # OpenAI's meaning: the time until the window is whole again (its newest expires)
            reset = window - (now - self._window[-1][0]) if self._window else 0.0
        headers: dict[str, str] = {}
        if self.ratelimit_headers or (wait is not None and self.retry_style == "reset"):
            if self.rpm_limit is not None:
                if window == 60 and self.ratelimit_headers:
                    headers["x-ratelimit-limit-requests"] = str(self.rpm_limit)
                headers["x-ratelimit-remaining-requests"] = str(
                    0 if over_rpm else max(0, self.rpm_limit - requests)
                )
                headers["x-ratelimit-reset-requests"] = go_duration(max(0.001, reset))
            if self.tpm_limit is not None:
                if window == 60 and self.ratelimit_headers:
                    headers["x-ratelimit-limit-tokens"] = str(self.tpm_limit)
                headers["x-ratelimit-remaining-tokens"] = str(
                    0 if over_tpm else max(0, self.tpm_limit - used)
                )
                headers["x-ratelimit-reset-tokens"] = go_duration(max(0.001, reset))
        return wait, headers

    def _wait_headers(self, wait: float) -> dict[str, str]:
        """How a 429 says "wait ``wait`` seconds", in the configured style."""
        style = self.retry_style
        if style == "retry-after":
            return {"Retry-After": f"{wait:.2f}"}
        if style == "http-date":  # whole seconds, rounded up (a date has no fractions)
            return {"Retry-After": email.utils.formatdate(time.time() + wait + 1, usegmt=True)}
        if style == "retry-after-ms":
            return {"retry-after-ms": str(max(1, round(wait * 1000)))}
        if style == "proxy":
            return {"x-litellm-retry-after": f"{wait:.2f}"}
        if style == "reset":
            return {
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": go_duration(wait),
            }
        return {}

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.counts["requests"] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if request.transport is not None:
            self.connections.add(request.transport.get_extra_info("peername"))
        arrived = time.monotonic()
        status = 500
        try:
            response = await self._answer(body)
            status = response.status
            return response
        finally:
            self.in_flight -= 1
            self.log.append((arrived, status))

    async def _answer(self, body: dict[str, Any]) -> web.StreamResponse:
        messages: list[dict[str, Any]] = body.get("messages", [])
        problem = None
        if not messages or "model" not in body:
            problem = "`model` and `messages` are required"
        elif body.get("max_tokens") is not None and int(body["max_tokens"]) < 1:
            problem = "`max_tokens` must be at least 1"
        if problem is not None:
            self.counts["400"] += 1
            return web.json_response(
                {"error": {"message": problem, "type": "invalid_request_error"}}, status=400
            )
        prompt = " ".join(str(m.get("content", "")) for m in messages)
        prompt_tokens = _tokens(prompt)
        fmt = body.get("response_format") or {}
        if self.reject_json_schema and fmt.get("type") == "json_schema":
            self.counts["rejected_schema"] += 1
            return web.json_response(  # what llama.cpp's server says
                {
                    "error": {
                        "code": 500,
                        "message": 'response_format type must be one of "text" or '
                        "\"json_object\": Input should be 'text' or 'json_object'",
                        "type": "server_error",
                    }
                },
                status=500,
            )
        roll = self._rng.random()
        first = self.counts["requests"] <= self.rate_limit_first
        if first or roll < self.rate_limit_rate:
            self.counts["429"] += 1
            return web.json_response(
                {"error": {"message": "Rate limit reached (injected)", "type": "rate_limit_error"}},
                status=429,
                headers=self._wait_headers(self.retry_after),
            )
        roll -= self.rate_limit_rate
        wait, limit_headers = self._limited(prompt_tokens + int(body.get("max_tokens") or 16))
        if wait is not None:
            self.counts["429"] += 1
            return web.json_response(
                {
                    "error": {
                        "message": "Rate limit reached for requests or tokens per "
                        f"{self.rate_window:g}s",
                        "type": "rate_limit_error",
                    }
                },
                status=429,
                headers={**limit_headers, **self._wait_headers(wait)},
            )
        if roll < self.error_rate:
            self.counts["500"] += 1
            return web.json_response({"error": {"message": "injected server error"}}, status=500)
        roll -= self.error_rate
        if roll < self.timeout_rate:
            self.counts["hang"] += 1
            await asyncio.sleep(self.hang_seconds)
        roll -= self.timeout_rate
        if self.latency:
            await asyncio.sleep(self.latency)
        content = self._content(messages, body)
        if roll < self.malformed_rate:
            self.counts["malformed"] += 1
            content = content[: max(1, len(content) // 2)] + "{{not json"
        finish_reason = "stop"
        limit = body.get("max_tokens")
        if limit is not None and _tokens(content) > int(limit):
            content = content[: int(limit) * 4]  # cut where max_tokens ends, as servers do
            finish_reason = "length"
            self.counts["truncated"] += 1
        self.counts["200"] += 1
        self.accepted_at.append(time.monotonic())
        completion_tokens = _tokens(content)
        headers = dict(limit_headers)
        if self.cost_per_call is not None:
            headers["x-litellm-response-cost"] = repr(self.cost_per_call)
        return web.json_response(
            {
                "id": f"chatcmpl-{self.counts['requests']}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": finish_reason,
                        "message": {"role": "assistant", "content": content},
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                    "prompt_tokens_details": {"cached_tokens": 0},
                },
            },
            headers=headers,
        )

    def _content(self, messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
        if self.responder is not None:
            scripted = self.responder(messages, body)
            if scripted is not None:
                return scripted
        last = next(
            (str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), ""
        )
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            schema = fmt.get("json_schema", {}).get("schema", {})
            return json.dumps(fill_schema(schema, last))
        if fmt.get("type") == "json_object":
            schema = _schema_in_prompt(messages)  # a fallback client put it there
            return json.dumps(fill_schema(schema, last) if schema else {"echo": last})
        return f"echo: {last}"


def _schema_in_prompt(messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A JSON schema given in a system prompt after ``JSON schema:``, as a model reads it."""
    for message in messages:
        text = str(message.get("content", ""))
        marker = text.find("JSON schema:")
        if message.get("role") == "system" and marker >= 0:
            try:
                schema, _ = json.JSONDecoder().raw_decode(text[marker + 12 :].lstrip())
            except json.JSONDecodeError:
                return None
            return schema if isinstance(schema, dict) else None
    return None


def main() -> None:
    """Run the server in the foreground: ``python -m batchline.testing.server``."""
    parser = argparse.ArgumentParser(
        description="An OpenAI-compatible test server on 127.0.0.1, with fault injection"
    )
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--rpm-limit", type=int, default=None, help="requests per window")
    parser.add_argument("--tpm-limit", type=int, default=None, help="tokens per window")
    parser.add_argument("--rate-window", type=float, default=60.0, help="window, in seconds")
    parser.add_argument(
        "--rate-limit-rate", type=float, default=0.0, help="share of requests answered 429"
    )
    parser.add_argument(
        "--retry-after", type=float, default=1.0, help="seconds a 429 asks the client to wait"
    )
    parser.add_argument(
        "--rate-limit-first", type=int, default=0, help="answer the first N requests 429"
    )
    parser.add_argument("--error-rate", type=float, default=0.0, help="share answered 500")
    parser.add_argument(
        "--timeout-rate", type=float, default=0.0, help="share that hang for --hang-seconds"
    )
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument(
        "--malformed-rate", type=float, default=0.0, help="share answered with broken JSON"
    )
    parser.add_argument("--retry-style", choices=RETRY_STYLES, default="retry-after")
    parser.add_argument("--ratelimit-headers", action="store_true")
    parser.add_argument(
        "--cost-per-call", type=float, default=None, help="send x-litellm-response-cost"
    )
    parser.add_argument(
        "--reject-json-schema", action="store_true", help="refuse json_schema, as llama.cpp"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault injection")
    args = parser.parse_args()
    server = OpenAICompatibleServer(
        port=args.port,
        latency=args.latency,
        rpm_limit=args.rpm_limit,
        tpm_limit=args.tpm_limit,
        rate_limit_rate=args.rate_limit_rate,
        retry_after=args.retry_after,
        rate_limit_first=args.rate_limit_first,
        error_rate=args.error_rate,
        timeout_rate=args.timeout_rate,
        hang_seconds=args.hang_seconds,
        malformed_rate=args.malformed_rate,
        rate_window=args.rate_window,
        retry_style=args.retry_style,
        ratelimit_headers=args.ratelimit_headers,
        cost_per_call=args.cost_per_call,
        reject_json_schema=args.reject_json_schema,
        seed=args.seed,
    ).start()
    print(f"serving on {server.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()

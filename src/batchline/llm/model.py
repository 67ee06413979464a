"""``ChatModel``: the one client under every LLM step of batchline.

It speaks the OpenAI Chat Completions API, so it works with OpenAI and with any
compatible server (vLLM, Ollama, llama.cpp, LiteLLM). Two transports:

- ``"aiohttp"`` (default): a lean HTTP path on aiohttp, built for fan-out (64+ requests
  in flight on 2 cores at >85% of the theoretical rate);
- ``"openai"``: the official ``openai`` package's ``AsyncOpenAI`` (``"openai-aiohttp"``
  for its aiohttp transport), for full SDK behaviour.

Every call goes through the response cache, the budget, the RPM/TPM limiters and the
adaptive concurrency limiter, and is retried with jitter on 429 (honouring
``Retry-After``), 5xx, timeouts and connection errors; never on other 4xx.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchline.engine.retry import RetryPolicy, aretry_call
from batchline.llm.cache import ResponseCache, request_key
from batchline.llm.errors import (
    BudgetExceededError,
    LLMRequestError,
    LLMTransientError,
    RateLimitedError,
    StructuredOutputError,
)
from batchline.llm.limits import AdaptiveLimiter, TokenBucket
from batchline.llm.prices import DEFAULT_PRICES, Usage, cost

OPENAI_URL = "https://api.openai.com/v1"
TRANSPORTS = ("aiohttp", "openai", "openai-aiohttp")


@dataclass(frozen=True)
class Completion:
    """One answer.

    Attributes:
        text: the message content.
        parsed: the validated structured output (a pydantic instance or a dict), if asked.
        usage: tokens and cost of this call (zero when ``cached``).
        cached: served from the response cache.
        model: the model that answered.
    """

    text: str
    parsed: Any = None
    usage: Usage = field(default_factory=Usage)
    cached: bool = False
    model: str = ""


def _schema_of(output: Any) -> tuple[dict[str, Any] | None, Any]:
    """The JSON schema for a response format, and a validator ``text -> value``."""
    if output is None:
        return None, None
    if isinstance(output, Mapping):
        schema = dict(output)

        def validate_dict(text: str) -> Any:
            value = json.loads(text)
            _check_schema(value, schema, "$")
            return value

        return schema, validate_dict
    if isinstance(output, type) and hasattr(output, "model_validate_json"):
        model: Any = output
        schema = model.model_json_schema()
        return schema, model.model_validate_json
    raise TypeError(
        f"`output` must be a pydantic model class or a JSON schema dict, not {output!r}"
    )


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def _check_schema(value: Any, schema: Mapping[str, Any], path: str) -> None:
    """A light JSON-schema check: types, required properties, items (enough to catch
    the usual model mistakes; use a pydantic model for full validation)."""
    kind = schema.get("type")
    if isinstance(kind, str) and kind in _JSON_TYPES:
        ok = isinstance(value, _JSON_TYPES[kind]) and not (
            kind in ("integer", "number") and isinstance(value, bool)
        )
        if not ok:
            raise ValueError(f"{path}: expected {kind}, found {type(value).__name__}")
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                raise ValueError(f"{path}: missing required property {name!r}")
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                _check_schema(value[name], sub, f"{path}.{name}")
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            _check_schema(item, schema["items"], f"{path}[{index}]")


class _Aiohttp:
    """Lean HTTP: one session (and connection pool) per event loop."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()

    async def post(
        self, url: str, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, float | None, Any]:
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
                retry_after = _seconds(response.headers.get("Retry-After"))
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
        return status, retry_after, payload

    async def close(self) -> None:
        loop_id = id(asyncio.get_running_loop())
        with self._lock:
            session = self._sessions.pop(loop_id, None)
        if session is not None:
            await session.close()


class _OpenAISDK:
    """The official client (``AsyncOpenAI``), retries off: ``ChatModel`` retries."""

    def __init__(self, base_url: str, api_key: str, timeout: float, aiohttp: bool) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.timeout = timeout
        self.aiohttp = aiohttp
        self._clients: dict[int, Any] = {}

    async def post(
        self, url: str, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, float | None, Any]:
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
            response = await client.chat.completions.create(**body)
        except openai.APIStatusError as exc:
            retry_after = _seconds(exc.response.headers.get("retry-after"))
            return exc.status_code, retry_after, {"error": {"message": str(exc)}}
        except openai.APITimeoutError:
            raise LLMTransientError(f"no answer within {self.timeout}s") from None
        except openai.APIConnectionError as exc:
            raise LLMTransientError(f"connection failed: {exc}") from None
        return 200, None, response.model_dump()

    async def close(self) -> None:
        client = self._clients.pop(id(asyncio.get_running_loop()), None)
        if client is not None:
            await client.close()


def _seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class ChatModel:
    """An OpenAI-compatible chat model with limits, retries, a cache and cost accounting.

    Args:
        model: the model name (``gpt-4o-mini``, or what your server serves).
        base_url: the API root; default ``OPENAI_BASE_URL`` or OpenAI's.
        api_key: default ``OPENAI_API_KEY``; required for OpenAI's endpoint only.
        transport: ``"aiohttp"`` (fast, default), ``"openai"`` or ``"openai-aiohttp"``.
        max_concurrency: requests in flight at most (lowered adaptively on 429s).
        rpm, tpm: client-side requests and tokens per minute (None: unlimited).
        timeout: seconds per request.
        retry: how failed requests are retried (default: 6 attempts, 0.5 s backoff).
        cache: True (a SQLite cache in ``cache_dir``), False, or a ``ResponseCache``.
        cache_dir: where the cache file lives (default ``.batchline``).
        prices: USD per 1M tokens ``{model_prefix: (input, cached_input, output)}``,
            merged over ``DEFAULT_PRICES``.
        max_cost_usd: stop making calls once this much was spent (``BudgetExceededError``:
            the engine stops the run, keeps its state, and a resume goes on).
        max_repairs: re-asks after an invalid structured answer.
        adaptive: lower concurrency on 429s (AIMD).
        provider: ``"openai"`` (default; any server speaking OpenAI's API) or
            ``"anthropic"`` (the native Messages API; ``ANTHROPIC_BASE_URL`` /
            ``ANTHROPIC_API_KEY``).
        mode: ``"online"`` (one HTTP call per request) or ``"batch"`` (the provider's batch
            API: half the price, answers within hours; see ``batchline.llm.batch``).
        poll_interval: seconds between polls of a batch job.
        batch_prices: USD per 1M tokens for batch jobs (default: half the online prices).
        batch_journal: where batch job ids are kept (default: ``llm-batches.db`` in
            ``cache_dir``; front doors pass the run's own state).
        cancel_jobs: on Ctrl-C, cancel the batch jobs instead of leaving them running
            (default: the ``BATCHLINE_CANCEL_JOBS`` variable, set by ``--cancel-jobs``).

    Raises:
        MissingAPIKeyError: no key for the provider's own endpoint (at construction).
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        transport: str = "aiohttp",
        max_concurrency: int = 64,
        rpm: int | None = None,
        tpm: int | None = None,
        timeout: float = 60.0,
        retry: RetryPolicy | None = None,
        cache: bool | ResponseCache = True,
        cache_dir: str | Path = ".batchline",
        prices: Mapping[str, tuple[float, float, float]] | None = None,
        max_cost_usd: float | None = None,
        max_repairs: int = 2,
        adaptive: bool = True,
        provider: str = "openai",
        mode: str = "online",
        poll_interval: float = 30.0,
        batch_prices: Mapping[str, tuple[float, float, float]] | None = None,
        batch_journal: Any = None,
        cancel_jobs: bool | None = None,
    ) -> None:
        from batchline.llm.batch import setup  # noqa: PLC0415 - providers and batch mode

        if transport not in TRANSPORTS:
            raise ValueError(f"`transport` is {transport!r}; expected one of {TRANSPORTS}")
        self.model = model
        self.provider = setup.check_choice("provider", provider, setup.PROVIDERS)
        self.mode = setup.check_choice("mode", mode, setup.MODES)
        self.base_url, self.api_key = setup.endpoint(provider, base_url, api_key)
        self.timeout = timeout
        self.retry = retry or RetryPolicy(
            max_attempts=6, backoff=0.5, max_backoff=30.0, retry_on=(LLMTransientError,)
        )
        self.limiter = AdaptiveLimiter(max_concurrency, adaptive=adaptive)
        self.rpm = TokenBucket(rpm) if rpm else None
        self.tpm = TokenBucket(tpm) if tpm else None
        if isinstance(cache, ResponseCache):
            self.cache: ResponseCache | None = cache
        else:
            self.cache = ResponseCache(Path(cache_dir) / "llm-cache.db") if cache else None
        self.prices = {**DEFAULT_PRICES, **(prices or {})}
        self.max_cost_usd = max_cost_usd
        self.max_repairs = max_repairs
        self.usage = Usage()
        self._url = f"{self.base_url}/chat/completions"
        self._headers = {
            "Authorization": f"Bearer {self.api_key}",
            "Content-Type": "application/json",
        }
        if transport == "aiohttp":
            self._transport: Any = _Aiohttp(timeout)
        else:
            self._transport = _OpenAISDK(
                self.base_url, self.api_key, timeout, transport == "openai-aiohttp"
            )
        if provider == "anthropic":
            self._transport = setup.AnthropicTransport(
                _Aiohttp(timeout), self.base_url, self.api_key
            )
        self.cache_dir = Path(cache_dir)
        self.batch = None
        if mode == "batch":
            self.batch = setup.batch_collector(
                self,
                usage_of=lambda response: _usage(response, self),
                journal=batch_journal,
                poll_interval=poll_interval,
                batch_prices=batch_prices,
                cancel_jobs=cancel_jobs,
                cache_dir=cache_dir,
                max_attempts=self.retry.max_attempts,
            )

    def __repr__(self) -> str:
        extra = "" if self.provider == "openai" else f", provider={self.provider!r}"
        extra += "" if self.mode == "online" else f", mode={self.mode!r}"
        return f"ChatModel({self.model!r}, base_url={self.base_url!r}{extra})"

    # -- calls ------------------------------------------------------------------------

    async def acomplete(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, Any]] | None = None,
        system: str | None = None,
        output: Any = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        cache: bool | None = None,
        **params: Any,
    ) -> Completion:
        """Ask once; ``output`` (a pydantic model or JSON schema) asks for structured output,
        validated and repaired (the error fed back) up to ``max_repairs`` times."""
        history: list[dict[str, Any]] = [dict(m) for m in messages or ()]
        if system is not None:
            history.insert(0, {"role": "system", "content": system})
        if prompt is not None:
            history.append({"role": "user", "content": prompt})
        if not history:
            raise ValueError("give a `prompt` or `messages`")
        schema, validate = _schema_of(output)
        body: dict[str, Any] = {"model": self.model, "messages": history, **params}
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": str(schema.get("title", "output"))[:64] or "output",
                    "schema": schema,
                },
            }
        use_cache = self.cache is not None and (cache if cache is not None else True)
        for repair in range(self.max_repairs + 1):
            answer = await self._request(body, use_cache, validate)
            text = _content(answer.response)
            if answer.invalid is None:
                return self._completion(answer, text)
            if repair == self.max_repairs:
                raise StructuredOutputError(
                    f"the answer was not valid for the schema after {repair + 1} "
                    f"attempt(s): {answer.invalid}"
                )
            body = {
                **body,
                "messages": [
                    *body["messages"],
                    {"role": "assistant", "content": text},
                    {
                        "role": "user",
                        "content": f"That answer is invalid: {answer.invalid}. Answer again "
                        "with only JSON that matches the schema.",
                    },
                ],
            }
        raise AssertionError("unreachable")  # pragma: no cover

    def batched(self, **options: Any) -> ChatModel:
        """This model in ``mode="batch"`` (itself if it already is): the same endpoint,
        cache, limits, budget and usage totals, its requests sent as provider batch jobs.
        ``options``: ``poll_interval``, ``batch_prices``, ``batch_journal``, ``cancel_jobs``.
        """
        from batchline.llm.batch.setup import batch_twin  # noqa: PLC0415

        if self.batch is not None and not options:
            return self
        twin: ChatModel = batch_twin(self, lambda response: _usage(response, twin), options)
        return twin

    def complete(self, prompt: str | None = None, **options: Any) -> Completion:
        """``acomplete`` from synchronous code."""
        from batchline.engine.bridge import run_coroutine  # noqa: PLC0415

        async def call() -> Completion:
            try:
                return await self.acomplete(prompt, **options)
            finally:
                await self.aclose()

        result: Completion = run_coroutine(call())
        return result

    async def aclose(self) -> None:
        """Close this event loop's connections."""
        await self._transport.close()

    # -- internals --------------------------------------------------------------------

    def _completion(self, answer: _Answer, text: str) -> Completion:
        usage = answer.usage
        if usage is None:  # from the cache: counted, free
            usage = Usage(calls=1, cached_calls=1)
            self.usage.add(usage)
        model = str(answer.response.get("model", self.model))
        return Completion(text, answer.parsed, usage, answer.usage is None, model)

    async def _request(self, body: dict[str, Any], use_cache: bool, validate: Any) -> _Answer:
        """An answer from the cache, an identical request in flight, or the server;
        validated once. Only valid answers are cached."""
        if not use_cache or self.cache is None:
            return _Answer(*await self._send(body)).check(validate)
        cache = self.cache
        key = request_key(body)
        hit = cache.get(key)
        if hit is not None:
            return _Answer(hit, None).check(validate)
        pending = cache.claim(key)
        if pending is not None:
            try:
                return _Answer(await cache.wait(pending), None).check(validate)
            except Exception:  # the first caller failed: try on our own
                return _Answer(*await self._send(body)).check(validate)
        try:
            answer = _Answer(*await self._send(body)).check(validate)
        except Exception as exc:
            cache.settle(key, None, exc)
            raise
        if answer.invalid is not None:
            cache.settle(key, None, answer.invalid)  # invalid: not cached; the caller repairs
            return answer
        cache.put(key, self.model, answer.response)
        cache.settle(key, answer.response, None)
        return answer

    async def _send(self, body: dict[str, Any]) -> tuple[dict[str, Any], Usage]:
        """One request, retried by the engine's retry driver; a 429 also lowers concurrency."""
        if self.batch is not None:  # batch mode: a provider job answers it
            from batchline.llm.batch.setup import current_request_name  # noqa: PLC0415

            answer: tuple[dict[str, Any], Usage] = await self.batch.request(
                body, current_request_name()
            )
            return answer
        estimate = _estimate(body)

        async def attempt() -> tuple[dict[str, Any], Usage]:
            if self.max_cost_usd is not None and self.usage.cost_usd >= self.max_cost_usd:
                raise BudgetExceededError(
                    f"the budget of ${self.max_cost_usd:.2f} is spent "
                    f"(${self.usage.cost_usd:.4f} over {self.usage.calls} calls); raise "
                    "max_cost_usd to go on"
                )
            if self.rpm is not None:
                await self.rpm.acquire(1)
            if self.tpm is not None:
                await self.tpm.acquire(estimate)
            await self.limiter.acquire()
            success = False
            try:
                status, retry_after, payload = await self._transport.post(
                    self._url, self._headers, body
                )
                error = _error(status, retry_after, payload)
                success = error is None
            finally:
                self.limiter.release(success=success)
            if error is not None:
                raise error
            usage = _usage(payload, self)
            self.usage.add(usage)
            return dict(payload), usage

        done = await aretry_call(attempt, self.retry, on_retry=self._backed_off)
        if done.error is not None:
            raise done.error
        result: tuple[dict[str, Any], Usage] = done.value
        return result

    def _backed_off(self, attempt: int, error: BaseException, delay: float) -> None:
        """Before a retry: on a 429, halve concurrency and pause the request bucket."""
        del attempt, delay
        if isinstance(error, RateLimitedError):
            self.limiter.rate_limited()
            if error.retry_after and self.rpm is not None:
                self.rpm.pause(error.retry_after)


@dataclass(slots=True)
class _Answer:
    """A response, its usage (None when it came from the cache), and its validation."""

    response: dict[str, Any]
    usage: Usage | None
    parsed: Any = None
    invalid: ValueError | None = None

    def check(self, validate: Any) -> _Answer:
        if validate is not None:
            try:
                self.parsed = validate(_content(self.response))
            except ValueError as exc:
                self.invalid = exc
        return self


def _content(response: Mapping[str, Any]) -> str:
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise LLMTransientError("the answer has no choices[0].message.content") from None
    return content if isinstance(content, str) else json.dumps(content)


def _estimate(body: Mapping[str, Any]) -> int:
    text = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
    return text // 4 + int(body.get("max_tokens") or 256)


def _error(status: int, retry_after: float | None, payload: Any) -> Exception | None:
    if status == 200:
        return None
    message = ""
    if isinstance(payload, Mapping):
        error = payload.get("error")
        message = error.get("message", "") if isinstance(error, Mapping) else str(error or "")
    if status == 429:
        return RateLimitedError(
            f"429 rate limited: {message}", retry_after=retry_after, status=status
        )
    if status >= 500 or status in (408, 409):
        return LLMTransientError(
            f"{status} server error: {message}", retry_after=retry_after, status=status
        )
    return LLMRequestError(f"{status}: {message} (not retried: fix the request)", status)


def _usage(response: Mapping[str, Any], model: ChatModel) -> Usage:
    raw = response.get("usage") or {}
    prompt = int(raw.get("prompt_tokens") or 0)
    completion = int(raw.get("completion_tokens") or 0)
    details = raw.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, Mapping) else 0
    return Usage(
        calls=1,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cost_usd=cost(model.model, prompt, completion, cached, model.prices),
    )

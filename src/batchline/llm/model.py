"""``ChatModel``: the one client under every LLM step of batchline.

It speaks the OpenAI Chat Completions API, so it works with OpenAI and with any
compatible server (vLLM, Ollama, llama.cpp, LiteLLM). Two transports:

- ``"aiohttp"`` (default): a lean HTTP path on aiohttp, built for fan-out (64+ requests
  in flight on 2 cores at >85% of the theoretical rate);
- ``"openai"``: the official ``openai`` package's ``AsyncOpenAI`` (``"openai-aiohttp"``
  for its aiohttp transport), for full SDK behaviour.

Every call goes through the response cache, the endpoint's rate governor (cool-downs,
adaptive rate, advertised limits), the RPM/TPM buckets, the adaptive concurrency limiter
and the budget (a reservation before sending). 429s are waited out on their own budget
(``max_wait``) and never use up attempts; 5xx, timeouts and connection errors are retried
with jitter (``retry``); other 4xx never.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchline.engine.retry import RetryPolicy, aretry_call
from batchline.errors import ConfigurationError, TerminalError
from batchline.llm.budget import Budget
from batchline.llm.cache import ResponseCache, request_key
from batchline.llm.errors import (
    LLMRequestError,
    LLMTransientError,
    LLMTruncatedError,
    RateLimitedError,
    RateLimitTimeoutError,
    StructuredOutputError,
)
from batchline.llm.limits import AdaptiveLimiter, TokenBucket
from batchline.llm.prices import PriceBook, PriceTable, Usage
from batchline.llm.ratelimit import RateGovernor, governor_for
from batchline.llm.ratelimit_headers import read_headers
from batchline.llm.schema import (
    json_object_fallback,
    output_spec,
    rejects_json_schema,
    response_format,
)
from batchline.llm.transports import AiohttpTransport, OpenAISDKTransport, openai_aiohttp_problem
from batchline.observe.meters import add_cost_source

OPENAI_URL = "https://api.openai.com/v1"
TRANSPORTS = ("aiohttp", "openai", "openai-aiohttp")

# Every call of every model in this process: what the progress display shows as cost.
PROCESS_USAGE = Usage()

# (base URL, model) of servers that rejected `json_schema` formats: json_object from then on
_JSON_OBJECT_ONLY: set[tuple[str, str]] = set()
_MODES_LOCK = threading.Lock()


@dataclass(frozen=True)
class Completion:
    """One answer.

    Attributes:
        text: the message content.
        parsed: the validated structured output (a pydantic instance or a dict), if asked.
        usage: tokens and cost of this call (zero when ``cached``).
        cached: served from the response cache.
        model: the model that answered.
        finish_reason: why the answer ended (``"stop"``; ``"length"``: cut at ``max_tokens``).
        retries: requests repeated for this answer (5xx, timeouts, 429s waited out).
    """

    text: str
    parsed: Any = None
    usage: Usage = field(default_factory=Usage)
    cached: bool = False
    model: str = ""
    finish_reason: str | None = None
    retries: int = 0


class _SchemaRejected(TerminalError):  # noqa: N818 - internal signal, never escapes acomplete
    """The server refused our ``json_schema`` response format."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class ChatModel:
    """An OpenAI-compatible chat model with limits, retries, a cache and cost accounting.

    Args:
        model: the model name (``gpt-4o-mini``, or what your server serves).
        base_url: the API root; default ``OPENAI_BASE_URL`` or OpenAI's.
        api_key: default ``OPENAI_API_KEY``; required for OpenAI's endpoint only.
        transport: ``"aiohttp"`` (fast, default), ``"openai"`` or ``"openai-aiohttp"``.
        max_concurrency: requests in flight at most (lowered adaptively on 429s).
        rpm, tpm: client-side requests and tokens per minute (None: learnt from the server).
        timeout: seconds per request.
        retry: how 5xx, timeouts and dropped connections are retried (default: 6 attempts,
            0.5 s backoff). 429s are not attempts: they are waited out, up to ``max_wait``.
        max_wait: seconds one call may spend waiting out 429s before it fails
            (``RateLimitTimeoutError``).
        cache: True (a SQLite cache in ``cache_dir``), False, or a ``ResponseCache``.
        cache_dir: where the cache file lives (default ``.batchline``).
        prices: USD per 1M tokens ``{model_prefix: (input, cached_input, output)}``, over
            the genai-prices table.
        max_cost_usd: the budget: a call is sent only if its estimated cost fits beside
            what was spent and what the calls in flight hold (``BudgetExceededError``: the
            engine stops the run, keeps its state, and a resume goes on).
        max_repairs: re-asks after an invalid structured answer.
        adaptive: adapt concurrency and the request rate to 429s.
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
        UnknownPriceError: ``max_cost_usd`` for a model with no known price.
        ConfigurationError: ``transport="openai-aiohttp"`` with an ``openai`` that lacks it.
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
        max_wait: float = 900.0,
        cache: bool | ResponseCache = True,
        cache_dir: str | Path = ".batchline",
        prices: PriceTable | None = None,
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
        if transport == "openai-aiohttp":
            problem = openai_aiohttp_problem()
            if problem is not None:
                raise ConfigurationError(f"transport='openai-aiohttp': {problem}")
        self.model = model
        self.provider = setup.check_choice("provider", provider, setup.PROVIDERS)
        self.mode = setup.check_choice("mode", mode, setup.MODES)
        self.base_url, self.api_key = setup.endpoint(provider, base_url, api_key)
        self.timeout = timeout
        self.retry = retry or RetryPolicy(
            max_attempts=6, backoff=0.5, max_backoff=30.0, retry_on=(LLMTransientError,)
        )
        self.max_wait = max_wait
        self.adaptive = adaptive
        self.governor: RateGovernor = governor_for(self.base_url, self.api_key, adaptive=adaptive)
        if isinstance(cache, ResponseCache):
            self.cache: ResponseCache | None = cache
        else:
            self.cache = ResponseCache(Path(cache_dir) / "llm-cache.db") if cache else None
        self.max_repairs = max_repairs
        self._url = f"{self.base_url}/chat/completions"
        self._headers = {
            "Authorization": f"Bearer {self.api_key}",
            "Content-Type": "application/json",
        }
        if transport == "aiohttp":
            self._transport: Any = AiohttpTransport(timeout)
        else:
            self._transport = OpenAISDKTransport(
                self.base_url, self.api_key, timeout, transport == "openai-aiohttp"
            )
        self._set_limits(max_concurrency, rpm, tpm, max_cost_usd, prices)
        add_cost_source("batchline.llm", _process_cost)
        if provider == "anthropic":
            self._transport = setup.AnthropicTransport(
                AiohttpTransport(timeout), self.base_url, self.api_key
            )
        self.cache_dir = Path(cache_dir)
        self._batch_prices = batch_prices
        self.batch = None
        if mode == "batch":
            self.batch = setup.batch_collector(
                self,
                usage_of=lambda response: _usage(response, self.price_book, None),
                journal=batch_journal,
                poll_interval=poll_interval,
                batch_prices=batch_prices,
                cancel_jobs=cancel_jobs,
                cache_dir=cache_dir,
                max_attempts=self.retry.max_attempts,
            )

    def _set_limits(
        self,
        max_concurrency: int,
        rpm: int | None,
        tpm: int | None,
        max_cost_usd: float | None,
        prices: PriceTable | None,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.limiter = AdaptiveLimiter(max_concurrency, adaptive=self.adaptive)
        self.rpm = TokenBucket(rpm) if rpm else None
        self.tpm = TokenBucket(tpm) if tpm else None
        self.prices = dict(prices or {})
        self.price_book = PriceBook(self.model, self.prices)
        self.max_cost_usd = max_cost_usd
        if max_cost_usd is not None:
            self.price_book.require_known(max_cost_usd)
        self.budget = Budget(max_cost_usd)
        self.usage = Usage()
        self._most_completion = 0

    def with_limits(
        self,
        *,
        max_concurrency: int | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        max_cost_usd: float | None = None,
        prices: PriceTable | None = None,
    ) -> ChatModel:
        """A model with its own limits, budget and usage that shares this one's connections,
        cache and endpoint governor (a server's 429 still pauses both). One per workflow
        step: each step's ``rpm``, ``tpm`` and ``max_cost_usd`` apply to that step."""
        twin = copy.copy(self)
        twin._set_limits(
            max_concurrency or self.max_concurrency,
            rpm,
            tpm,
            max_cost_usd,
            self.prices if prices is None else {**self.prices, **prices},
        )
        if self.batch is not None:  # batch mode: the twin's own collector, the same journal
            twin.batch = None
            twin = twin.batched(
                poll_interval=self.batch.poll_interval,
                batch_journal=self.batch.journal,
                cancel_jobs=self.batch.cancel_on_interrupt,
                batch_prices=self._batch_prices,
            )
        return twin

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
        allow_truncated: bool = True,
        **params: Any,
    ) -> Completion:
        """Ask once; ``output`` (a pydantic model or JSON schema) asks for structured output,
        validated and repaired (the error fed back) up to ``max_repairs`` times.

        A truncated answer (``finish_reason == "length"``) is never cached; it is an
        ``LLMTruncatedError`` for structured output, or when ``allow_truncated=False``.
        A ``response_format`` passed in ``params`` is sent as given, never replaced.
        """
        history: list[dict[str, Any]] = [dict(m) for m in messages or ()]
        if system is not None:
            history.insert(0, {"role": "system", "content": system})
        if prompt is not None:
            history.append({"role": "user", "content": prompt})
        if not history:
            raise ValueError("give a `prompt` or `messages`")
        schema, validate = output_spec(output)
        body: dict[str, Any] = {"model": self.model, "messages": history, **params}
        if temperature is not None:
            body["temperature"] = temperature
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        ours = schema is not None and "response_format" not in params
        fell_back = False
        if ours and schema is not None:
            if self._json_object_only():
                body, fell_back = json_object_fallback(body, schema), True
            else:
                body["response_format"] = response_format(schema)
        use_cache = self.cache is not None and (cache if cache is not None else True)
        repair = 0
        while True:
            try:
                answer = await self._request(body, use_cache, validate, ours and not fell_back)
            except _SchemaRejected as rejected:
                if fell_back or schema is None:  # pragma: no cover - only when ours
                    raise rejected.error from None
                with _MODES_LOCK:
                    _JSON_OBJECT_ONLY.add((self.base_url, self.model))
                body, fell_back = json_object_fallback(body, schema), True
                continue
            text = _content(answer.response)
            if answer.finish_reason == "length" and (schema is not None or not allow_truncated):
                raise LLMTruncatedError(_truncated_message(body), body.get("max_tokens"), text)
            if answer.invalid is None:
                return self._completion(answer, text)
            if repair == self.max_repairs:
                raise StructuredOutputError(
                    f"the answer was not valid for the schema after {repair + 1} "
                    f"attempt(s): {answer.invalid}"
                )
            repair += 1
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

    def batched(self, **options: Any) -> ChatModel:
        """This model in ``mode="batch"`` (itself if it already is): the same endpoint,
        cache, limits, budget and usage totals, its requests sent as provider batch jobs.
        ``options``: ``poll_interval``, ``batch_prices``, ``batch_journal``, ``cancel_jobs``.
        """
        from batchline.llm.batch.setup import batch_twin  # noqa: PLC0415

        if self.batch is not None and not options:
            return self
        twin: ChatModel = batch_twin(
            self, lambda response: _usage(response, twin.price_book, None), options
        )
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

    def _json_object_only(self) -> bool:
        with _MODES_LOCK:
            return (self.base_url, self.model) in _JSON_OBJECT_ONLY

    def _completion(self, answer: _Answer, text: str) -> Completion:
        usage = answer.usage
        if usage is None:  # from the cache: counted, free
            usage = Usage(calls=1, cached_calls=1)
            self.usage.add(usage)
        model = str(answer.response.get("model", self.model))
        return Completion(
            text,
            answer.parsed,
            usage,
            answer.usage is None,
            model,
            answer.finish_reason,
            usage.retries + usage.rate_limited,
        )

    async def _request(
        self, body: dict[str, Any], use_cache: bool, validate: Any, detect: bool
    ) -> _Answer:
        """An answer from the cache, an identical request in flight, or the server;
        validated once. Only complete, valid answers are cached."""
        if not use_cache or self.cache is None:
            return _Answer(*await self._send(body, detect)).check(validate)
        cache = self.cache
        key = request_key({"endpoint": self.base_url, "body": body})
        hit = cache.get(key)
        if hit is not None:
            return _Answer(hit, None).check(validate)
        pending = cache.claim(key)
        if pending is not None:
            try:
                return _Answer(await cache.wait(pending), None).check(validate)
            except Exception:  # the first caller failed: try on our own
                return _Answer(*await self._send(body, detect)).check(validate)
        try:
            answer = _Answer(*await self._send(body, detect)).check(validate)
        except BaseException as exc:
            cache.settle(key, None, exc)
            raise
        if answer.invalid is not None:
            cache.settle(key, None, answer.invalid)  # invalid: not cached; the caller repairs
            return answer
        if answer.finish_reason != "length":  # a truncated answer is never cached
            cache.put(key, self.model, answer.response)
        cache.settle(key, answer.response, None)
        return answer

    def _estimate_cost(self, body: Mapping[str, Any]) -> tuple[int, float]:
        """Tokens and USD this request may use: a token per 2 characters of prompt, and
        ``max_tokens`` (or the longest answer seen, at least 256) for the answer."""
        text = sum(len(json.dumps(m.get("content", ""))) for m in body.get("messages", []))
        prompt = text // 2 + 8  # generous: common tokenizers make fewer tokens than this
        answer = int(body.get("max_tokens") or max(256, self._most_completion))
        return prompt + answer, self.price_book.cost(prompt, answer)

    async def _send(self, body: dict[str, Any], detect: bool) -> tuple[dict[str, Any], Usage]:
        """One answer: 429s waited out on the endpoint's cool-down (not attempts, up to
        ``max_wait``); other transient errors retried by the engine's retry driver."""
        if self.batch is not None:  # batch mode: a provider job answers it
            from batchline.llm.batch.setup import current_request_name  # noqa: PLC0415

            answer: tuple[dict[str, Any], Usage] = await self.batch.request(
                body, current_request_name()
            )
            return answer
        tokens, estimate = self._estimate_cost(body)
        bounded = body.get("max_tokens") is not None
        asked = body.get("response_format")
        schema_format = isinstance(asked, Mapping) and asked.get("type") == "json_schema"
        counts = _CallCounts()
        rate_policy = RetryPolicy(
            max_attempts=1_000_000_000, backoff=0.0, max_backoff=0.0, jitter=0.0
        )

        async def once() -> Any:
            """One request. A 429 raises (the rate loop waits and sends again); every
            other outcome, errors included, is returned for the attempt loop."""
            await self.limiter.acquire()  # a slot first: the waits below are the last ones
            try:
                await self.governor.wait_turn(tokens)
                if self.rpm is not None:
                    await self.rpm.acquire(1)
                if self.tpm is not None:
                    await self.tpm.acquire(tokens)
                held = await self.budget.areserve(estimate, bounded=bounded)
            except BaseException:
                self.limiter.release(success=False)
                raise
            charged = 0.0
            try:
                status, headers, payload = await self._transport.post(
                    self._url, self._headers, body
                )
            except LLMTransientError as exc:
                self.limiter.release(success=False)
                self.budget.cancel(held)
                return exc
            except BaseException:
                self.limiter.release(success=False)
                self.budget.cancel(held)
                raise
            try:
                info = read_headers(headers)
                self.governor.observe(info)
                error = _error(
                    status, info.wait_hint if status == 429 else info.retry_after, payload
                )
                self.limiter.release(success=error is None)
                if isinstance(error, RateLimitedError):
                    return self._rate_limited(error, counts)
                if error is not None:
                    if schema_format and rejects_json_schema(status, str(error)):
                        return _schema_rejected(error, ours=detect)
                    return error
                self.governor.succeeded()
                usage = _usage(payload, self.price_book, info.cost_usd)
                charged = usage.cost_usd
                self._most_completion = max(self._most_completion, usage.completion_tokens)
                return dict(payload), usage
            finally:
                self.budget.settle(held, charged)

        async def attempt() -> tuple[dict[str, Any], Usage]:
            done = await aretry_call(once, rate_policy)
            if done.error is not None:
                raise done.error
            if isinstance(done.value, BaseException):
                raise done.value
            result: tuple[dict[str, Any], Usage] = done.value
            return result

        def retried(attempt: int, error: BaseException, delay: float) -> None:
            del attempt, delay, error
            counts.retries += 1

        done = await aretry_call(attempt, self.retry, on_retry=retried)
        self.usage.add(Usage(retries=counts.retries, rate_limited=counts.rate_limited))
        if done.error is not None:
            raise done.error
        payload, usage = done.value
        usage.retries, usage.rate_limited = counts.retries, counts.rate_limited
        tokens_and_cost = Usage(
            calls=usage.calls,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            cost_usd=usage.cost_usd,
        )
        self.usage.add(tokens_and_cost)
        PROCESS_USAGE.add(tokens_and_cost)
        return payload, usage

    def _rate_limited(self, error: RateLimitedError, counts: _CallCounts) -> Exception:
        """A 429: pause the endpoint; raise to wait and send again, or give up after
        ``max_wait`` seconds of waiting."""
        counts.rate_limited += 1
        left = self.governor.limited(error.retry_after)
        self.limiter.rate_limited()
        now = time.monotonic()
        if counts.first_429 is None:
            counts.first_429 = now
        waiting = counts.first_429
        if now - waiting + left > self.max_wait:
            return RateLimitTimeoutError(
                f"`{self.model}` at {self.base_url} kept answering 429 (rate limited) for "
                f"{now - waiting:.0f}s, and asks to wait {left:.0f}s more, past `max_wait` of "
                f"{self.max_wait:g}s: raise max_wait, or set rpm=/tpm= below the server's "
                f"limits. Last answer: {error}"
            )
        raise RateLimitedError(str(error), status=429)  # the rate loop sends it again


def _schema_rejected(error: Exception, *, ours: bool) -> Exception:
    """A refused ``json_schema`` format: ours falls back to ``json_object``; the user's is a
    request error (never retried, never replaced)."""
    if ours:
        return _SchemaRejected(error)
    return LLMRequestError(
        f"the server does not accept `response_format` type json_schema ({error}); pass "
        "`output=` without `response_format` to let batchline fall back to json_object "
        "with the schema in the prompt, or pass response_format={'type': 'json_object'}",
        getattr(error, "status", None),
    )


def _process_cost() -> float:
    return PROCESS_USAGE.cost_usd


@dataclass(slots=True)
class _CallCounts:
    """One call's retries and 429s, and when its first 429 came."""

    retries: int = 0
    rate_limited: int = 0
    first_429: float | None = None


@dataclass(slots=True)
class _Answer:
    """A response, its usage (None when it came from the cache), and its validation."""

    response: dict[str, Any]
    usage: Usage | None
    parsed: Any = None
    invalid: ValueError | None = None
    finish_reason: str | None = None

    def check(self, validate: Any) -> _Answer:
        self.finish_reason = _finish_reason(self.response)
        if validate is not None:
            try:
                self.parsed = validate(_content(self.response))
            except ValueError as exc:
                self.invalid = exc
        return self


def _finish_reason(response: Mapping[str, Any]) -> str | None:
    try:
        reason = response["choices"][0].get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    return str(reason) if reason is not None else None


def _truncated_message(body: Mapping[str, Any]) -> str:
    limit = body.get("max_tokens")
    said = f"`max_tokens` of {limit}" if limit is not None else "the server's default `max_tokens`"
    return (
        f"the answer of `{body.get('model')}` was cut off at {said} (finish_reason "
        "'length'); it was not cached. Raise `max_tokens`, or ask for a shorter answer."
    )


def _content(response: Mapping[str, Any]) -> str:
    try:
        content = response["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise LLMTransientError("the answer has no choices[0].message.content") from None
    if content is None:
        return ""
    return content if isinstance(content, str) else json.dumps(content)


def _error(status: int, retry_after: float | None, payload: Any) -> Exception | None:
    if status == 200:
        return None
    message = ""
    if isinstance(payload, Mapping):
        error = payload.get("error")
        if isinstance(error, Mapping):
            message = str(error.get("message", ""))
        else:
            message = str(error or payload.get("detail") or "")
    if status == 429:
        return RateLimitedError(
            f"429 rate limited: {message}", retry_after=retry_after, status=status
        )
    if status >= 500 or status in (408, 409):
        return LLMTransientError(
            f"{status} server error: {message}", retry_after=retry_after, status=status
        )
    return LLMRequestError(f"{status}: {message} (not retried: fix the request)", status)


def _usage(response: Mapping[str, Any], prices: PriceBook, reported: float | None) -> Usage:
    raw = response.get("usage") or {}
    prompt = int(raw.get("prompt_tokens") or 0)
    completion = int(raw.get("completion_tokens") or 0)
    details = raw.get("prompt_tokens_details") or {}
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, Mapping) else 0
    if reported is None and not prices.known:
        prices.warn_if_unknown()
    return Usage(
        calls=1,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        cost_usd=reported if reported is not None else prices.cost(prompt, completion, cached),
    )

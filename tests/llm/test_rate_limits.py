"""Rate limits without `rpm=`: nothing lost, 429s never use attempts, one 429 pauses the
endpoint, every header style understood. Against the real local server."""

from __future__ import annotations

import asyncio
import email.utils
import time
from pathlib import Path
from typing import Any

import pytest

from batchline.engine.retry import RetryPolicy
from batchline.llm import ChatModel, RateLimitTimeoutError, parse_duration, read_headers
from batchline.testing import OpenAICompatibleServer


def model_for(server: OpenAICompatibleServer, tmp_path: Path, **options: Any) -> ChatModel:
    options.setdefault("cache", False)
    return ChatModel(
        "test-model", base_url=server.base_url, api_key="test", cache_dir=tmp_path, **options
    )


def gather(model: ChatModel, count: int, prefix: str = "q") -> list[Any]:
    async def many() -> list[Any]:
        try:
            return await asyncio.gather(
                *(model.acomplete(f"{prefix}{i}") for i in range(count)), return_exceptions=True
            )
        finally:
            await model.aclose()

    return asyncio.run(many())


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1.2s", 1.2),
        ("6m0s", 360.0),
        ("250ms", 0.25),
        ("1h2m3.5s", 3723.5),
        ("20", 20.0),
        ("0.5", 0.5),
        ("soon", None),
        ("", None),
        ("5x", None),
    ],
)
def test_durations_in_every_style(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_every_retry_and_limit_header_is_read() -> None:
    now = time.time()
    assert read_headers({"Retry-After": "2"}).retry_after == 2.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert read_headers({"retry-after": date}, now=now).retry_after == pytest.approx(30, abs=1)
    assert read_headers({"retry-after-ms": "1500", "Retry-After": "9"}).retry_after == 1.5
    assert read_headers({"x-ms-retry-after-ms": "250"}).retry_after == 0.25
    assert read_headers({"x-litellm-retry-after": "3"}).retry_after == 3.0
    info = read_headers(
        {
            "X-RateLimit-Limit-Requests": "300",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "6m0s",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-tokens": "149000",
            "x-ratelimit-reset-tokens": "250ms",
            "x-litellm-response-cost": "0.00123",
        }
    )
    assert (info.limit_requests, info.remaining_requests, info.reset_requests) == (300, 0, 360)
    assert (info.limit_tokens, info.reset_tokens) == (150000, 0.25)
    assert info.exhausted_for == 360.0 / 300  # one request back; tokens are not used up
    alone = read_headers(
        {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "2s"}
    )
    assert alone.exhausted_for == 2.0  # no limit given: wait for the whole reset
    assert info.cost_usd == 0.00123
    anthropic = read_headers(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 10)
            ),
        },
        now=now,
    )
    assert anthropic.limit_requests == 50
    assert anthropic.exhausted_for == pytest.approx(10 / 50, abs=0.05)  # one request back


@pytest.mark.parametrize("style", ["retry-after", "http-date", "retry-after-ms", "reset", "proxy"])
def test_a_rate_limited_server_without_rpm_loses_nothing(
    make_server: Any, tmp_path: Path, style: str
) -> None:
    # 12 requests per 1 s window, 40 requests at once, and NO retries allowed: every 429
    # must be waited out on the rate budget, never counted as an attempt.
    server = make_server(rpm_limit=12, rate_window=1.0, retry_style=style, latency=0.01)
    model = model_for(server, tmp_path, max_concurrency=16, retry=RetryPolicy(max_attempts=1))
    results = gather(model, 40)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == []
    assert [r.text for r in results] == [f"echo: q{i}" for i in range(40)]
    assert server.counts["200"] == 40
    assert server.counts["429"] > 0  # the limit was really hit
    assert model.usage.rate_limited == server.counts["429"]
    assert model.usage.retries == 0


def test_one_429_pauses_every_request_to_the_endpoint(make_server: Any, tmp_path: Path) -> None:
    server = make_server(rate_limit_first=1, retry_after=0.6)
    first = model_for(server, tmp_path)
    other = model_for(server, tmp_path)  # another step's model: same endpoint, own limits

    async def both() -> list[Any]:
        async def later() -> Any:
            await asyncio.sleep(0.15)  # after the first call's 429 came back
            return await other.acomplete("second")

        try:
            return await asyncio.gather(first.acomplete("first"), later())
        finally:
            await first.aclose()

    answers = asyncio.run(both())
    assert [a.text for a in answers] == ["echo: first", "echo: second"]
    (limited_at,) = [at for at, status in server.log if status == 429]
    after = [at for at, status in server.log if status == 200]
    assert len(after) == 2
    # `other` never got a 429 itself, yet it waited for the endpoint's cool-down.
    assert min(after) >= limited_at + 0.55
    assert first.governor is other.governor


def test_used_up_limits_in_headers_pause_before_any_429(make_server: Any, tmp_path: Path) -> None:
    server = make_server(rpm_limit=5, rate_window=1.0, ratelimit_headers=True)
    model = model_for(server, tmp_path, max_concurrency=1)
    results = gather(model, 12)
    assert all(not isinstance(r, BaseException) for r in results)
    # one request at a time: `remaining: 0` + its reset paused the client, so the server
    # hardly ever had to say 429
    assert server.counts["429"] <= 2


def test_advertised_per_minute_limits_become_buckets(make_server: Any, tmp_path: Path) -> None:
    server = make_server(rpm_limit=6000, tpm_limit=900_000, ratelimit_headers=True)
    model = model_for(server, tmp_path)
    model.complete("hello")
    assert model.governor.advertised_rpm is not None
    assert model.governor.advertised_rpm.rate == pytest.approx(6000 * 0.98 / 60)
    assert model.governor.advertised_rpm.capacity == 6000  # a minute's worth may burst
    assert model.governor.advertised_tpm is not None


def test_adaptive_rate_follows_a_server_that_never_says_how_long(
    make_server: Any, tmp_path: Path
) -> None:
    server = make_server(rpm_limit=10, rate_window=1.0, retry_style="none")
    model = model_for(server, tmp_path, max_concurrency=8, retry=RetryPolicy(max_attempts=1))
    results = gather(model, 30)
    assert all(not isinstance(r, BaseException) for r in results)
    assert server.counts["200"] == 30
    assert model.governor.rate is not None  # a request rate was learnt, not just concurrency
    assert model.governor.cooldowns >= 1


def test_waiting_past_max_wait_fails_the_call_clearly(make_server: Any, tmp_path: Path) -> None:
    server = make_server(rate_limit_rate=1.0, retry_after=5.0)
    model = model_for(server, tmp_path, max_wait=1.0)
    with pytest.raises(RateLimitTimeoutError, match="max_wait"):
        model.complete("never")
    assert server.counts["requests"] == 1  # it did not hammer the server while waiting

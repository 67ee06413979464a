"""ChatModel against a real local server: answers, structure, retries, limits, cache, cost."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from batchline import BatchRunError, MemoryStateStore, run_batches
from batchline.llm import (
    BudgetExceededError,
    ChatModel,
    LLMRequestError,
    MissingAPIKeyError,
    StructuredOutputError,
    acomplete_items,
)
from batchline.testing import OpenAICompatibleServer


class Company(BaseModel):
    name: str
    employees: int


def model_for(server: OpenAICompatibleServer, tmp_path: Path, **options: Any) -> ChatModel:
    options.setdefault("cache", False)
    return ChatModel(
        "test-model", base_url=server.base_url, api_key="test", cache_dir=tmp_path, **options
    )


@pytest.mark.parametrize("transport", ["aiohttp", "openai", "openai-aiohttp"])
def test_answers_usage_and_cost_on_every_transport(
    server: OpenAICompatibleServer, tmp_path: Path, transport: str
) -> None:
    model = model_for(server, tmp_path, transport=transport)
    completion = model.complete("hello there", system="be brief")
    assert completion.text == "echo: hello there"
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0
    assert completion.usage.cost_usd > 0  # test-model has a price in the table
    assert model.usage.calls == 1
    structured = model.complete("acme", output=Company)
    assert isinstance(structured.parsed, Company)


def test_missing_key_against_openai_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # the default cache folder, .batchline, is made here
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY"):
        ChatModel("gpt-4o-mini")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    assert ChatModel("local").base_url == "http://127.0.0.1:9/v1"  # no key needed there


def test_invalid_structured_answers_are_repaired_with_the_error_fed_back(
    make_server: Any, tmp_path: Path
) -> None:
    seen: list[list[dict[str, Any]]] = []

    def responder(messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
        seen.append(messages)
        if len(seen) == 1:
            return '{"name": "acme"}'  # employees missing
        return json.dumps({"name": "acme", "employees": 12})

    server = make_server(responder=responder)
    parsed = model_for(server, tmp_path).complete("acme?", output=Company).parsed
    assert parsed == Company(name="acme", employees=12)
    assert "invalid" in seen[1][-1]["content"]
    assert "employees" in seen[1][-1]["content"]

    broken = make_server(responder=lambda m, b: "not json at all")
    with pytest.raises(StructuredOutputError, match="after 3 attempt"):
        model_for(broken, tmp_path, max_repairs=2).complete("x", output=Company)
    assert broken.counts["requests"] == 3


def test_429_honours_retry_after_and_lowers_concurrency(make_server: Any, tmp_path: Path) -> None:
    server = make_server(rate_limit_rate=0.3, retry_after=0.2, seed=3)
    model = model_for(server, tmp_path, max_concurrency=16)

    async def many() -> list[Any]:
        try:
            return await asyncio.gather(*(model.acomplete(f"q{i}") for i in range(60)))
        finally:
            await model.aclose()

    started = time.perf_counter()
    results = asyncio.run(many())
    assert len(results) == 60
    assert server.counts["429"] > 0
    assert server.counts["200"] == 60
    assert model.limiter.limit < 16  # multiplicative decrease happened
    assert time.perf_counter() - started >= 0.2  # Retry-After was waited


def test_5xx_and_timeouts_are_retried_other_4xx_never(make_server: Any, tmp_path: Path) -> None:
    flaky = make_server(error_rate=0.5, seed=1)
    assert model_for(flaky, tmp_path).complete("ok?").text == "echo: ok?"
    assert flaky.counts["500"] >= 1
    hanging = make_server(timeout_rate=0.5, hang_seconds=5, seed=2)
    assert model_for(hanging, tmp_path, timeout=0.3).complete("x").text == "echo: x"
    bad = make_server()
    model = model_for(bad, tmp_path)
    with pytest.raises(LLMRequestError, match="400: `max_tokens` must be at least 1"):
        model.complete("x", max_tokens=0)
    assert bad.counts["requests"] == 1  # a 4xx other than 429 is never retried


def test_cache_pays_once_never_caches_failures_and_dedupes_in_flight(
    make_server: Any, tmp_path: Path
) -> None:
    server = make_server(latency=0.05)
    model = model_for(server, tmp_path, cache=True)
    first = model.complete("same question")
    again = model.complete("same question")
    assert not first.cached
    assert again.cached
    assert again.text == first.text
    assert server.counts["requests"] == 1
    other_run = ChatModel("test-model", base_url=server.base_url, api_key="t", cache_dir=tmp_path)
    assert other_run.complete("same question").cached  # shared by every run of the workspace
    assert model.complete("same question", cache=False).cached is False
    assert server.counts["requests"] == 2

    async def together() -> list[Any]:
        try:
            return await asyncio.gather(*(model.acomplete("concurrent") for _ in range(10)))
        finally:
            await model.aclose()

    answers = asyncio.run(together())
    assert {a.text for a in answers} == {"echo: concurrent"}
    assert server.counts["requests"] == 3  # ten identical requests in flight, sent once

    broken = make_server(responder=lambda m, b: "nope")
    failing = ChatModel(
        "test-model", base_url=broken.base_url, api_key="t", cache_dir=tmp_path, max_repairs=0
    )
    for _ in range(2):
        with pytest.raises(StructuredOutputError):
            failing.complete("q", output=Company)
    assert broken.counts["requests"] == 2  # the invalid answer was not cached


def test_budget_stops_the_run_and_it_resumes(make_server: Any, tmp_path: Path) -> None:
    server = make_server()
    model = model_for(server, tmp_path, max_cost_usd=0.00002)

    def spend() -> None:
        for i in range(100):
            model.complete(f"spend {i}")

    with pytest.raises(BudgetExceededError):
        spend()
    store = MemoryStateStore()
    fresh = model_for(server, tmp_path, max_cost_usd=0.00002)

    def ask(batch: Any) -> list[str]:
        return [fresh.complete(f"item {item}").text for item in batch.items]

    with pytest.raises(BatchRunError, match="budget") as caught:
        run_batches(range(40), ask, chunk_size=2, store=store, run_id="b")
    done = caught.value.result
    assert done is not None
    assert 0 < done.stats.succeeded < 40
    resumed = run_batches(
        range(40),
        lambda b: [f"echo: item {i}" for i in b.items],
        chunk_size=2,
        store=store,
        run_id="b",
    )
    assert resumed.ok
    assert resumed.stats.resumed == done.stats.succeeded


def test_batch_prompts_retry_only_missing_answers(make_server: Any, tmp_path: Path) -> None:
    asked: list[list[str]] = []

    def responder(messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
        keys = list(
            body["response_format"]["json_schema"]["schema"]["properties"]["answers"]["properties"]
        )
        asked.append(keys)
        answers = {k: f"answer {k}" for k in keys if not (len(asked) == 1 and k == "b")}
        return json.dumps({"answers": answers})

    server = make_server(responder=responder)
    model = model_for(server, tmp_path)

    async def ask() -> dict[str, Any]:
        try:
            return await acomplete_items(
                model, {"a": "one", "b": "two", "c": "three"}, instructions="answer"
            )
        finally:
            await model.aclose()

    answers = asyncio.run(ask())
    assert answers == {"a": "answer a", "b": "answer b", "c": "answer c"}
    assert asked == [["a", "b", "c"], ["b"]]

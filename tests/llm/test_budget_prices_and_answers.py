"""Budget reservations, price sources, the cache key, truncation, JSON-schema validation,
the json_object fallback and the openai-aiohttp check, against the real local server."""

from __future__ import annotations

import asyncio
import json
import traceback
import warnings
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from batchline.errors import ConfigurationError
from batchline.llm import (
    BudgetExceededError,
    ChatModel,
    LLMRequestError,
    LLMTruncatedError,
    StructuredOutputError,
    UnknownPriceError,
)
from batchline.llm.prices import PriceBook
from batchline.pipeline import LLMAgent, Pipeline
from batchline.testing import OpenAICompatibleServer


class Company(BaseModel):
    name: str
    employees: int


def model_for(
    server: OpenAICompatibleServer, tmp_path: Path, name: str = "test-model", **options: Any
) -> ChatModel:
    options.setdefault("cache", False)
    return ChatModel(name, base_url=server.base_url, api_key="t", cache_dir=tmp_path, **options)


def gather(model: ChatModel, count: int, **options: Any) -> list[Any]:
    async def many() -> list[Any]:
        try:
            return await asyncio.gather(
                *(model.acomplete(f"question number {i}", **options) for i in range(count)),
                return_exceptions=True,
            )
        finally:
            await model.aclose()

    return asyncio.run(many())


# -- budget ------------------------------------------------------------------------------


def test_200_gathered_calls_never_overspend_a_budget_with_max_tokens(
    make_server: Any, tmp_path: Path
) -> None:
    server = make_server(latency=0.05)
    one_call = model_for(server, tmp_path).complete("question number 0", max_tokens=50)
    budget = one_call.usage.cost_usd * 20.5
    model = model_for(server, tmp_path, max_cost_usd=budget, max_concurrency=64)
    results = gather(model, 200, max_tokens=50)
    answered = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BudgetExceededError)]
    assert len(answered) + len(refused) == 200
    assert 0 < len(answered) < 200
    # max_tokens bounds each answer, so the reservations are upper bounds: never over
    assert model.usage.cost_usd <= budget
    assert server.counts["requests"] == 1 + len(answered)  # refused calls were never sent
    assert "max_cost_usd" in str(refused[0])


def test_without_max_tokens_only_calls_in_flight_can_pass_the_budget(
    make_server: Any, tmp_path: Path
) -> None:
    server = make_server(latency=0.05)
    costs = [model_for(server, tmp_path).complete(f"question number {i}") for i in range(3)]
    most = max(c.usage.cost_usd for c in costs)
    budget = most * 10
    model = model_for(server, tmp_path, max_cost_usd=budget, max_concurrency=64)
    results = gather(model, 200)
    answered = [r for r in results if not isinstance(r, BaseException)]
    assert 0 < len(answered) < 200
    assert all(isinstance(r, BudgetExceededError) for r in results if isinstance(r, Exception))
    # at most one call (the one sent alone, when nothing else fit) passes it, by its cost
    # (answers differ in length by question, so the bound is the dearest answer here)
    dearest = max(r.usage.cost_usd for r in answered)
    assert model.usage.cost_usd <= budget + dearest + 1e-12  # (float sums)


def test_budget_errors_print_amounts_with_four_significant_digits(
    make_server: Any, tmp_path: Path
) -> None:
    server = make_server()
    model = model_for(server, tmp_path, max_cost_usd=0.00001234)
    model.complete("spend 1")
    model.complete("spend 2")  # alone, with something left: sent, and passes the budget
    with pytest.raises(BudgetExceededError, match=r"\$0\.00001234") as caught:
        model.complete("spend 3")
    assert caught.value.max_cost_usd == 0.00001234
    assert f"${caught.value.spent_usd:.8f} spent".rstrip("0") in str(caught.value)
    assert caught.value.spent_usd < 0.00001234 + 0.00001  # by no more than one call


# -- prices ------------------------------------------------------------------------------


def test_prices_come_from_genai_prices_with_overrides(make_server: Any, tmp_path: Path) -> None:
    server = make_server()
    known = model_for(server, tmp_path, "gpt-4o-mini").complete("hello")
    usage = known.usage
    expected = (usage.prompt_tokens * 0.15 + usage.completion_tokens * 0.60) / 1e6
    assert usage.cost_usd == pytest.approx(expected)
    assert PriceBook("openai/gpt-4o-mini").source == "genai-prices"  # provider prefixes too
    assert PriceBook("claude-3-5-haiku-latest").known
    assert PriceBook("gemini-1.5-flash").known
    mine = model_for(server, tmp_path, "gpt-4o-mini", prices={"gpt-4o-mini": (10.0, 5.0, 20.0)})
    again = mine.complete("hello")
    assert again.usage.cost_usd == pytest.approx(
        (usage.prompt_tokens * 10 + usage.completion_tokens * 20) / 1e6
    )


def test_a_model_without_a_price_warns_once_and_refuses_a_budget(
    make_server: Any, tmp_path: Path
) -> None:
    server = make_server()
    model = model_for(server, tmp_path, "house-model-7b")
    with pytest.warns(UserWarning, match="`house-model-7b` has no known price"):
        assert model.complete("a").usage.cost_usd == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second warning would raise
        model.complete("b")
    with pytest.raises(UnknownPriceError, match=r"`house-model-7b`.*prices="):
        model_for(server, tmp_path, "house-model-7b", max_cost_usd=1.0)
    assert server.counts["requests"] == 2  # refused before any call
    priced = model_for(
        server, tmp_path, "house-model-7b", max_cost_usd=1.0, prices={"house-": (1, 1, 1)}
    )
    assert priced.complete("c").usage.cost_usd > 0


def test_a_proxys_cost_header_is_believed(make_server: Any, tmp_path: Path) -> None:
    server = make_server(cost_per_call=0.0123)
    model = model_for(server, tmp_path, "house-model-7b")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the proxy priced it: no warning
        completion = model.complete("priced by the proxy")
    assert completion.usage.cost_usd == pytest.approx(0.0123)
    assert model.usage.cost_usd == pytest.approx(0.0123)


# -- cache -------------------------------------------------------------------------------


def test_the_cache_key_covers_the_endpoint_and_every_parameter(
    make_server: Any, tmp_path: Path
) -> None:
    first = make_server(responder=lambda m, b: "from the first server")
    second = make_server(responder=lambda m, b: "from the second server")
    a = model_for(first, tmp_path, cache=True)
    b = model_for(second, tmp_path, cache=True)
    assert a.complete("same question").text == "from the first server"
    answer = b.complete("same question")
    assert (answer.text, answer.cached) == ("from the second server", False)
    assert a.complete("same question").cached
    assert not a.complete("same question", temperature=0.3).cached
    assert not a.complete("same question", top_p=0.5).cached
    assert a.complete("same question", top_p=0.5).cached
    assert first.counts["requests"] == 3


# -- truncation --------------------------------------------------------------------------


def test_truncated_answers_are_reported_and_never_cached(make_server: Any, tmp_path: Path) -> None:
    server = make_server()
    model = model_for(server, tmp_path, cache=True)
    long_prompt = "tell me everything " * 20
    cut = model.complete(long_prompt, max_tokens=3)
    assert cut.finish_reason == "length"
    assert not model.complete(long_prompt, max_tokens=3).cached  # never cached
    assert server.counts["requests"] == 2
    whole = model.complete("short", max_tokens=100)
    assert whole.finish_reason == "stop"
    with pytest.raises(LLMTruncatedError, match="`max_tokens` of 3") as caught:
        model.complete(long_prompt, max_tokens=3, allow_truncated=False)
    assert caught.value.max_tokens == 3
    with pytest.raises(LLMTruncatedError, match="max_tokens"):
        model.complete("acme", output=Company, max_tokens=2)  # structured: a failure


# -- structured output -------------------------------------------------------------------


def test_json_schema_dicts_are_validated_fully_and_repaired_with_the_message(
    make_server: Any, tmp_path: Path
) -> None:
    seen: list[list[dict[str, Any]]] = []

    def responder(messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
        seen.append(messages)
        return json.dumps({"label": "other" if len(seen) == 1 else "b"})

    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": ["a", "b"]}},
        "required": ["label"],
    }
    server = make_server(responder=responder)
    assert model_for(server, tmp_path).complete("x", output=schema).parsed == {"label": "b"}
    assert "'other' is not one of ['a', 'b']" in seen[1][-1]["content"]
    assert "$.label" in seen[1][-1]["content"]
    never = make_server(responder=lambda m, b: json.dumps({"label": "c"}))
    with pytest.raises(StructuredOutputError, match="is not one of"):
        model_for(never, tmp_path, max_repairs=1).complete("x", output=schema)


def test_a_server_rejecting_json_schema_falls_back_once_and_remembers(
    make_server: Any, tmp_path: Path
) -> None:
    server = make_server(reject_json_schema=True)
    model = model_for(server, tmp_path)
    first = model.complete("acme", output=Company)
    assert isinstance(first.parsed, Company)
    assert model.complete("globex", output=Company).parsed is not None
    assert server.counts["rejected_schema"] == 1  # remembered for the endpoint
    assert server.counts["requests"] == 3  # not retried 6 times


def test_a_users_response_format_is_never_overwritten(make_server: Any, tmp_path: Path) -> None:
    sent: list[Any] = []

    def responder(messages: list[dict[str, Any]], body: dict[str, Any]) -> str:
        sent.append(body.get("response_format"))
        return json.dumps({"name": "acme", "employees": 3})

    server = make_server(responder=responder)
    mine = {"type": "json_object"}
    parsed = model_for(server, tmp_path).complete("x", output=Company, response_format=mine)
    assert parsed.parsed == Company(name="acme", employees=3)
    assert sent == [mine]
    rejecting = make_server(reject_json_schema=True)
    schema_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
    with pytest.raises(LLMRequestError):  # theirs: not replaced, not retried 6 times
        model_for(rejecting, tmp_path, retry=None).complete(
            "x", response_format=schema_format, max_tokens=10
        )


def test_openai_aiohttp_transport_is_checked_at_construction(
    monkeypatch: pytest.MonkeyPatch, server: OpenAICompatibleServer
) -> None:
    import openai

    monkeypatch.delattr(openai, "DefaultAioHttpClient")
    with pytest.raises(ConfigurationError, match=r"openai\[aiohttp\]"):
        ChatModel("test-model", base_url=server.base_url, transport="openai-aiohttp")


# -- errors ------------------------------------------------------------------------------


def test_agent_errors_carry_no_misleading_event_loop_error(
    make_server: Any, tmp_path: Path
) -> None:
    server = make_server(responder=lambda m, b: "not json")
    model = model_for(server, tmp_path, max_repairs=0)
    agent = LLMAgent(model, "answer", Company, input_field="items", output_field="out")
    with pytest.raises(Exception) as caught:  # noqa: PT011 - any error: its chain matters
        Pipeline(agent).run({"items": ["x"]})
    chain = "".join(traceback.format_exception(caught.value))
    assert "StructuredOutputError" in chain
    assert "no running event loop" not in chain


# -- progress ----------------------------------------------------------------------------


def test_the_terminal_progress_bar_shows_cost_so_far_and_projected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from batchline.engine import BatchProgress
    from batchline.observe import progress as display_module

    spent = [1.0]
    monkeypatch.setattr(display_module, "total_cost", lambda: spent[0])
    display = display_module.RichDisplay("run")
    try:
        spent[0] = 1.0 + 0.00012345  # what this run's LLM calls cost so far
        progress = BatchProgress(
            run_id="run",
            batch_number=1,
            total_batches=4,
            batch_size=25,
            completed_items=25,
            total_items=100,
            percentage=25.0,
            elapsed=2.0,
            is_first=True,
            is_last=False,
        )
        display.complete(progress, None)  # type: ignore[arg-type]
        cost = display._progress.tasks[0].fields["cost"]
    finally:
        display._progress.stop()
    assert cost == "$0.0001235 (~$0.0004938 projected)"

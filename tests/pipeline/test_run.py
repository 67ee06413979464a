"""Running pipelines: scopes on the engine, merges, failures, skipping, hooks, streaming."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from batchline import RetryPolicy, SQLiteStateStore
from batchline.pipeline import (
    BATCH_KEY,
    Agent,
    BatchProgressContext,
    Pipeline,
    PipelineBatchError,
    PipelineWarning,
    StepError,
)

Context = Mapping[str, Any]


def companies(n: int) -> list[dict[str, Any]]:
    return [{"name": f"c{i}", "employees": i * 10} for i in range(n)]


def make(name: str, run: Any, **attrs: Any) -> type[Agent]:
    return type(name, (Agent,), {"run": lambda self, ctx: run(ctx), **attrs})


def discover(n: int) -> type[Agent]:
    return make("Discover", lambda ctx: {"companies": companies(n)}, provides=("companies",))


def enrich_agent(chunk: int = 5, **options: Any) -> type[Agent]:
    calls: list[int] = []

    def run(ctx: Context) -> dict[str, Any]:
        calls.append(len(ctx["companies"]))
        return {"companies": [{**c, "big": c["employees"] >= 100} for c in ctx["companies"]]}

    cls = make("Enrich", run, requires=("companies",), provides=("companies",))
    cls.calls = calls  # type: ignore[attr-defined]
    return cls.triggers_batching(chunk_size=chunk, over="companies", **options)


def score_agent() -> type[Agent]:
    def run(ctx: Context) -> dict[str, Any]:
        info = ctx[BATCH_KEY]
        return {
            "scores": {c["name"]: c["employees"] for c in ctx["companies"]},
            "batches_seen": [info["number"]],
            "last_total": info["total"],
        }

    return make("Score", run, requires=("companies",), provides=("scores",)).ends_batching()


def test_scope_runs_in_batches_and_merges_fields() -> None:
    Enrich = enrich_agent(chunk=5)
    result = Pipeline(discover(23) >> Enrich >> score_agent()).run({"query": "fintech"})
    assert result.ok
    assert Enrich.calls == [5, 5, 5, 5, 3]  # type: ignore[attr-defined]
    ctx = result.context
    assert ctx["query"] == "fintech"
    assert [c["name"] for c in ctx["companies"]] == [f"c{i}" for i in range(23)]
    assert all("big" in c for c in ctx["companies"])
    assert len(ctx["scores"]) == 23  # dicts deep-merged
    assert ctx["batches_seen"] == [1, 2, 3, 4, 5]  # lists concatenated in batch order
    assert ctx["last_total"] == 5
    assert BATCH_KEY not in ctx
    assert result.stats.batches == 5
    assert result.stats.items == 23


def test_order_is_kept_with_concurrency() -> None:
    import time

    def slow(ctx: Context) -> dict[str, Any]:
        time.sleep(0.01 * (5 - ctx[BATCH_KEY]["number"] % 5))
        return {"companies": [c["name"] for c in ctx["companies"]]}

    Slow = make("Slow", slow).triggers_batching(chunk_size=3, over="companies")
    result = Pipeline(discover(30) >> Slow, max_concurrency=4).run()
    assert result.context["companies"] == [f"c{i}" for i in range(30)]


def test_scalar_conflicts_last_wins_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    Count = make("Count", lambda ctx: {"count": len(ctx["companies"])})
    Count = Count.triggers_batching(chunk_size=4, over="companies")
    with caplog.at_level(logging.WARNING):
        result = Pipeline(discover(10) >> Count).run()
    assert result.context["count"] == 2
    assert "'count'" in caplog.text
    assert "last one wins" in caplog.text


def test_over_detected_when_exactly_one_list_field() -> None:
    Auto = make("Auto", lambda ctx: {"seen": [len(ctx["companies"])]}).triggers_batching(
        chunk_size=4
    )
    assert Pipeline(discover(9) >> Auto).run().context["seen"] == [4, 4, 1]


@pytest.mark.parametrize(
    ("initial", "over", "needle"),
    [
        ({}, "companies", "does not have"),
        ({"companies": "x"}, "companies", "not a list"),
        ({"a": [1], "b": [2]}, None, r"2 list fields \('a', 'b'\)"),
        ({"a": 1}, None, "no list fields"),
    ],
)
def test_over_problems_name_the_field_and_the_lists_present(
    initial: dict[str, Any], over: str | None, needle: str
) -> None:
    Bad = make("Bad", lambda ctx: {}).triggers_batching(chunk_size=2, over=over)
    with pytest.raises(StepError, match=needle) as caught:
        Pipeline(Bad).run(initial)
    assert "Bad" in str(caught.value)


def test_empty_array_runs_no_batches_and_fires_no_hooks() -> None:
    Enrich = enrich_agent()
    fired: list[Any] = []
    Enrich.on_batch_start(fired.append)
    result = Pipeline(discover(0) >> Enrich >> score_agent()).run()
    assert result.context["companies"] == []
    assert fired == []
    assert Enrich.calls == []  # type: ignore[attr-defined]
    assert result.stats.batches == 0


def test_failed_batch_is_recorded_and_left_out() -> None:
    def flaky(ctx: Context) -> dict[str, Any]:
        if ctx[BATCH_KEY]["number"] == 2:
            raise ValueError("enrichment API said no")
        return {"companies": [c["name"] for c in ctx["companies"]]}

    Enrich = make("Enrich", flaky).triggers_batching(chunk_size=3, over="companies")
    Score = make("Score", lambda ctx: {"n": [len(ctx["companies"])]}).ends_batching()
    result = Pipeline(discover(9) >> Enrich >> Score).run()
    assert not result.ok
    assert result.context["companies"] == ["c0", "c1", "c2", "c6", "c7", "c8"]
    (failure,) = result.failures
    assert failure.batch_number == 2
    assert failure.agent == "Enrich"
    assert [c["name"] for c in failure.items] == ["c3", "c4", "c5"]
    assert failure.error_type == "ValueError"
    assert "said no" in failure.message
    assert result.stats.failed == 3


def test_failure_names_the_agent_inside_the_scope() -> None:
    Enrich = enrich_agent(chunk=2)
    Score = make("Score", lambda ctx: 1 / 0).ends_batching()
    result = Pipeline(discover(2) >> Enrich >> Score).run()
    assert result.failures[0].agent == "Score"
    assert result.failures[0].error_type == "ZeroDivisionError"


def test_stop_raises_with_the_partial_result() -> None:
    def fail_two(ctx: Context) -> dict[str, Any]:
        if ctx[BATCH_KEY]["number"] == 2:
            raise RuntimeError("stop here")
        return {"companies": [c["name"] for c in ctx["companies"]]}

    Enrich = make("Enrich", fail_two).triggers_batching(chunk_size=2, over="companies")
    Enrich.ends_batching()  # a one-agent scope: After runs once, after it
    After = make("After", lambda ctx: {"after": True})
    with pytest.raises(PipelineBatchError) as caught:
        Pipeline(discover(10) >> Enrich >> After, on_error="stop").run()
    partial = caught.value.result
    assert partial is not None
    assert partial.context["companies"] == ["c0", "c1"]
    assert "after" not in partial.context
    assert partial.failures[0].batch_number == 2


def test_transient_errors_are_retried_by_default() -> None:
    attempts: list[int] = []

    def flaky(ctx: Context) -> dict[str, Any]:
        attempts.append(ctx[BATCH_KEY]["number"])
        if len(attempts) == 1:
            raise TimeoutError("slow upstream")
        return {}

    Enrich = make("Enrich", flaky).triggers_batching(chunk_size=5, over="companies")
    result = Pipeline(discover(5) >> Enrich, retry=RetryPolicy(max_attempts=2, backoff=0)).run()
    assert result.ok
    assert attempts == [1, 1]


def test_skip_load_existing_and_persist() -> None:
    persisted: list[list[Any]] = []
    done = {"c1": {"name": "c1", "cached": True}, "c4": None}

    def enrich(ctx: Context) -> dict[str, Any]:
        return {"companies": [{"name": c["name"], "fresh": True} for c in ctx["companies"]]}

    Enrich = make("Enrich", enrich).triggers_batching(
        chunk_size=3,
        over="companies",
        skip_if=lambda item, ctx: item["name"] in done,
        load_existing=lambda item, ctx: done[item["name"]],
        persist_batch=lambda results, ctx: persisted.append(list(results)),
    )
    result = Pipeline(discover(6) >> Enrich).run()
    names = [c["name"] for c in result.context["companies"]]
    assert names == ["c0", "c1", "c2", "c3", "c5"]  # c4 skipped without a result: left out
    assert result.context["companies"][1] == {"name": "c1", "cached": True}
    assert result.stats.skipped == 1
    # Issue #13: persist_batch gets only the newly computed items (it got [3, 2] before,
    # the loaded c1 included): c0, c2 | c3, c5.
    assert [len(batch) for batch in persisted] == [2, 2]


def test_hooks_get_an_immutable_progress_context() -> None:
    events: list[tuple[str, BatchProgressContext, Any]] = []
    Enrich = enrich_agent(chunk=4)
    Enrich.on_batch_start(lambda p: events.append(("start", p, None)))
    Enrich.on_batch_complete(lambda p, r: events.append(("complete", p, r)))
    Pipeline(discover(10) >> Enrich).run()
    starts = [p for kind, p, _ in events if kind == "start"]
    assert [p.batch_number for p in starts] == [1, 2, 3]
    assert [p.batch_size for p in starts] == [4, 4, 2]
    assert [p.is_first for p in starts] == [True, False, False]
    assert [p.is_last for p in starts] == [False, False, True]
    assert all(p.total_batches == 3 and p.total_items == 10 for p in starts)
    assert [c["name"] for c in starts[2].items] == ["c8", "c9"]
    completes = [(p, r) for kind, p, r in events if kind == "complete"]
    assert completes[-1][0].completed_items == 10
    assert completes[-1][0].percentage == 100.0
    assert len(completes[0][1]["companies"]) == 4
    with pytest.raises(AttributeError):
        starts[0].batch_number = 7  # type: ignore[misc]


def test_error_hook_and_broken_hooks() -> None:
    errors: list[Any] = []
    Enrich = make("Enrich", lambda ctx: 1 / 0).triggers_batching(chunk_size=5, over="companies")
    Enrich.on_batch_error(lambda p, e: errors.append((p.batch_number, type(e).__name__)))
    Enrich.on_batch_start(lambda p: 1 / 0)  # a broken hook must not break the run
    result = Pipeline(discover(10) >> Enrich).run()
    assert errors == [(1, "ZeroDivisionError"), (2, "ZeroDivisionError")]
    assert len(result.failures) == 2


def test_pipeline_progress_callable() -> None:
    seen: list[int] = []
    Enrich = enrich_agent(chunk=3)
    Pipeline(discover(7) >> Enrich, progress=lambda p: seen.append(p.completed_items)).run()
    assert seen == [3, 6, 7]


def test_async_agents_and_plain_functions() -> None:
    class Fetch(Agent):
        async def run(self, context: Context) -> dict[str, Any]:
            await asyncio.sleep(0)
            return {"fetched": [c["name"].upper() for c in context["companies"]]}

    # runs_to_end: `count` runs per batch, as this test was written (issue #13 made a
    # trigger followed by agents without a terminator a build error unless opted in).
    Fetch.triggers_batching(chunk_size=2, over="companies", runs_to_end=True)

    def count(context: Context) -> dict[str, Any]:
        return {"count": len(context["fetched"])}

    result = Pipeline(discover(5) >> Fetch >> count).run()
    assert result.context["fetched"] == ["C0", "C1", "C2", "C3", "C4"]


def test_parallel_branches_run_on_copies_and_conflicts_warn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    barrier = threading.Barrier(2, timeout=5)

    def left(ctx: Context) -> dict[str, Any]:
        barrier.wait()  # both branches run at the same time
        return {"left": 1, "shared": "left"}

    def right(ctx: Context) -> dict[str, Any]:
        barrier.wait()
        return {"right": 2, "shared": "right"}

    with caplog.at_level(logging.WARNING), pytest.warns(PipelineWarning, match="'shared'"):
        result = Pipeline(discover(1) >> (make("Left", left) | right)).run()
    assert result.context["left"] == 1
    assert result.context["right"] == 2
    assert result.context["shared"] == "right"
    assert "'shared'" in caplog.text


def test_in_chunks_of_is_agent_level_batching() -> None:
    calls: list[int] = []

    class Tag(Agent):
        def run(self, context: Context) -> dict[str, Any]:
            calls.append(len(context["companies"]))
            return {"enriched": [c["name"] + "!" for c in context["companies"]]}

    result = Pipeline(
        discover(7) >> Tag.in_chunks_of(3, input_field="companies", output_field="enriched")
    ).run()
    assert calls == [3, 3, 1]
    assert result.context["enriched"] == [f"c{i}!" for i in range(7)]


def test_disable_batching_runs_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCHLINE_DISABLE_BATCHING", "1")
    Enrich = enrich_agent(chunk=2)
    Pipeline(discover(7) >> Enrich).run()
    assert Enrich.calls == [7]  # type: ignore[attr-defined]


def test_debug_logs_batches_and_merges(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("BATCHLINE_DEBUG", "1")
    with caplog.at_level(logging.DEBUG, logger="batchline"):
        Pipeline(discover(4) >> enrich_agent(chunk=2)).run()
    assert "batch 1/2 starts" in caplog.text
    assert "merged 2 batches" in caplog.text
    logging.getLogger("batchline").handlers.clear()
    logging.getLogger("batchline").setLevel(logging.NOTSET)


def test_stream_yields_after_every_batch_with_results_so_far() -> None:
    updates = list(Pipeline(discover(7) >> enrich_agent(chunk=3) >> score_agent()).stream({}))
    assert [u.batch_number for u in updates] == [1, 2, 3, 0]
    assert [len(u.context["scores"]) for u in updates[:3]] == [3, 6, 7]
    assert [len(u.results["companies"]) for u in updates[:3]] == [3, 3, 1]
    assert updates[-1].done
    assert updates[-1].result is not None
    assert updates[-1].result.ok


def test_resume_loads_committed_batches(tmp_path: Path) -> None:
    store = SQLiteStateStore(tmp_path / "p.db")
    fail = {"on": True}
    calls: list[int] = []

    def enrich(ctx: Context) -> dict[str, Any]:
        number = ctx[BATCH_KEY]["number"]
        calls.append(number)
        if fail["on"] and number == 3:
            raise RuntimeError("down")
        return {"companies": [c["name"] for c in ctx["companies"]]}

    Enrich = make("Enrich", enrich).triggers_batching(chunk_size=2, over="companies")
    first = Pipeline(discover(8) >> Enrich, store=store, run_id="nov").run()
    assert not first.ok
    assert calls == [1, 2, 3, 4]
    fail["on"] = False
    calls.clear()
    second = Pipeline(discover(8) >> Enrich, store=store, run_id="nov").run()
    assert calls == [3]
    assert second.ok
    assert second.context["companies"] == [f"c{i}" for i in range(8)]
    assert second.stats.resumed == 6


def test_store_without_run_id_is_refused(tmp_path: Path) -> None:
    from batchline import ConfigurationError

    with pytest.raises(ConfigurationError, match="run_id"):
        Pipeline(discover(1), store=SQLiteStateStore(tmp_path / "x.db"))


def test_agent_contract_errors() -> None:
    Needs = make("Needs", lambda ctx: {}, requires=("missing",))
    with pytest.raises(StepError, match="requires 'missing'") as caught:
        Pipeline(Needs).run({"present": 1})
    assert caught.value.step_name == "Needs"
    assert "present" in str(caught.value)
    Bad = make("Bad", lambda ctx: [1, 2])
    with pytest.raises(StepError, match="returned list; expected a dict"):
        Pipeline(Bad).run()
    with pytest.raises(Exception, match="initial context"):
        Pipeline(Bad).run([1])  # type: ignore[arg-type]

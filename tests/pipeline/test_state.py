"""Scopes and state: keys, resume after the list changed, skipping, persisting, failures."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from batchline import ConfigurationError, MemoryStateStore, SQLiteStateStore
from batchline.pipeline import (
    BATCH_KEY,
    Agent,
    Pipeline,
    PipelineBatchError,
    PipelineWarning,
)

Context = Mapping[str, Any]


def make(name: str, run: Any) -> type[Agent]:
    return type(name, (Agent,), {"run": lambda self, ctx: run(ctx)})


def ids(values: list[Any]) -> list[Any]:
    return [value["id"] for value in values]


# -- resume after the upstream list changed (issue #10) ------------------------------


@pytest.mark.parametrize("key", [None, "id"])
def test_a_changed_upstream_list_resumes_by_item_not_position(
    tmp_path: Path, key: str | None
) -> None:
    lists = [
        [{"id": i, "name": f"c{i}"} for i in range(8)],
        [{"id": i, "name": f"c{i}"} for i in (9, 1, 2, 3, 7, 8, 5, 0)],  # 4, 6 removed
    ]
    runs: list[int] = []
    fail = {"batch": 2}

    def discover(ctx: Context) -> dict[str, Any]:
        return {"companies": lists.pop(0)}

    def enrich(ctx: Context) -> dict[str, Any]:
        if ctx[BATCH_KEY]["number"] == fail["batch"]:
            raise RuntimeError("enrichment down")
        runs.extend(ids(ctx["companies"]))
        return {"companies": [{**c, "enriched": True} for c in ctx["companies"]]}

    def score(ctx: Context) -> dict[str, Any]:
        return {"scores": {c["name"]: c["id"] for c in ctx["companies"]}}

    Enrich = make("Enrich", enrich).triggers_batching(chunk_size=3, over="companies", key=key)
    Score = make("Score", score).ends_batching()
    store = SQLiteStateStore(tmp_path / "state.db")
    first = Pipeline(make("Discover", discover) >> Enrich >> Score, store=store, run_id="nov")
    done = first.run()
    assert not done.ok
    assert ids(done.context["companies"]) == [0, 1, 2, 6, 7]
    assert runs == [0, 1, 2, 6, 7]
    runs.clear()
    fail["batch"] = 0
    again = Pipeline(make("Discover", discover) >> Enrich >> Score, store=store, run_id="nov")
    with pytest.warns(PipelineWarning, match="covered items that are no longer in it"):
        result = again.run()
    assert result.ok
    assert ids(result.context["companies"]) == [9, 1, 2, 3, 7, 8, 5, 0]  # the new list
    assert all(c["enriched"] for c in result.context["companies"])
    assert sorted(runs) == [3, 5, 8, 9]  # new and never-finished items only, once each
    # `scores` is computed per batch, not per item: every item of the new list has its
    # score (c7's comes from a batch whose first item, c6, was removed), and the removed
    # items' scores computed with them are kept, with the warning above.
    scores = result.context["scores"]
    assert {f"c{i}": i for i in (9, 1, 2, 3, 7, 8, 5, 0)}.items() <= scores.items()
    assert result.stats.resumed == 4
    assert result.stats.items == 8


def test_identical_items_are_kept_apart_by_content_keys(tmp_path: Path) -> None:
    Enrich = make("Enrich", lambda ctx: {"xs": [x * 2 for x in ctx["xs"]]})
    Enrich.triggers_batching(chunk_size=2, over="xs")
    store = SQLiteStateStore(tmp_path / "s.db")
    result = Pipeline(Enrich, store=store, run_id="r").run({"xs": [1, 1, 2, 1]})
    assert result.context["xs"] == [2, 2, 4, 2]
    again = Pipeline(Enrich, store=store, run_id="r").run({"xs": [1, 1, 2, 1]})
    assert again.context["xs"] == [2, 2, 4, 2]
    assert again.stats.resumed == 4


def test_a_repeated_declared_key_is_a_clear_error() -> None:
    Enrich = make("Enrich", lambda ctx: {}).triggers_batching(chunk_size=2, over="xs", key="id")
    with pytest.raises(ConfigurationError, match="key 7 is shared by the items at positions 0"):
        Pipeline(Enrich).run({"xs": [{"id": 7}, {"id": 8}, {"id": 7}]})
    with pytest.raises(ConfigurationError, match="keys items by 'id'"):
        Pipeline(Enrich).run({"xs": [{"name": "no id"}]})


def test_filtering_agents_resume_exactly_with_a_key_field(tmp_path: Path) -> None:
    runs: list[int] = []

    def keep_even(ctx: Context) -> dict[str, Any]:
        runs.extend(ids(ctx["xs"]))
        return {"xs": [x for x in ctx["xs"] if x["id"] % 2 == 0]}

    Filter = make("Filter", keep_even).triggers_batching(chunk_size=3, over="xs", key="id")
    store = SQLiteStateStore(tmp_path / "s.db")
    first = Pipeline(Filter, store=store, run_id="r").run({"xs": [{"id": i} for i in range(6)]})
    assert ids(first.context["xs"]) == [0, 2, 4]
    runs.clear()
    changed = [{"id": i} for i in (4, 5, 6, 1, 2)]
    result = Pipeline(Filter, store=store, run_id="r").run({"xs": changed})
    assert ids(result.context["xs"]) == [4, 6, 2]
    assert runs == [6]


# -- skip_if / load_existing / persist_batch ------------------------------------------------


def test_loaded_results_are_visible_to_later_agents_of_the_batch() -> None:
    cache = {1: {"id": 1, "score": 10}, 3: {"id": 3, "score": 30}}
    seen: list[list[int]] = []

    def analyze(ctx: Context) -> dict[str, Any]:
        assert all(c["id"] not in cache for c in ctx["xs"])
        return {"xs": [{**c, "score": c["id"] * 100} for c in ctx["xs"]]}

    def summarize(ctx: Context) -> dict[str, Any]:
        seen.append(ids(ctx["xs"]))
        return {"best": [max(c["score"] for c in ctx["xs"])]}

    Analyze = make("Analyze", analyze).triggers_batching(
        chunk_size=3,
        over="xs",
        skip_if=lambda item, ctx: item["id"] in cache,
        load_existing=lambda item, ctx: cache[item["id"]],
    )
    Summarize = make("Summarize", summarize).ends_batching()
    result = Pipeline(Analyze >> Summarize).run({"xs": [{"id": i} for i in range(6)]})
    assert seen == [[0, 1, 2], [3, 4, 5]]
    assert [c["score"] for c in result.context["xs"]] == [0, 10, 200, 30, 400, 500]
    assert result.context["best"] == [200, 500]


def test_persist_gets_only_new_items_and_is_not_called_when_all_were_skipped() -> None:
    persisted: list[list[int]] = []
    Enrich = make("Enrich", lambda ctx: {"xs": [{**c, "new": True} for c in ctx["xs"]]})
    Enrich.triggers_batching(
        chunk_size=2,
        over="xs",
        skip_if=lambda item, ctx: item["id"] < 2,
        load_existing=lambda item, ctx: {**item, "old": True},
        persist_batch=lambda results, ctx: persisted.append(ids(results)),
    )
    result = Pipeline(Enrich).run({"xs": [{"id": i} for i in range(5)]})
    assert persisted == [[2, 3], [4]]  # batch 1 (ids 0, 1) was all skipped: no call
    assert [("new" in c, "old" in c) for c in result.context["xs"]] == [
        (False, True),
        (False, True),
        (True, False),
        (True, False),
        (True, False),
    ]


def test_force_reprocess_in_the_context_reruns_skipped_items_as_in_raaf() -> None:
    runs: list[int] = []

    def enrich(ctx: Context) -> dict[str, Any]:
        runs.extend(ctx["xs"])
        return {}

    Enrich = make("Enrich", enrich).triggers_batching(
        chunk_size=2, over="xs", skip_if=lambda item, ctx: item < 3
    )
    Pipeline(Enrich).run({"xs": [1, 2, 3]})
    assert runs == [3]
    Pipeline(Enrich).run({"xs": [1, 2, 3], "force_reprocess": True})
    assert runs == [3, 1, 2, 3]


def test_force_reprocess_reruns_skipped_items() -> None:
    runs: list[int] = []

    def enrich(ctx: Context) -> dict[str, Any]:
        runs.extend(ctx["xs"])
        return {}

    Enrich = make("Enrich", enrich).triggers_batching(
        chunk_size=2, over="xs", skip_if=lambda item, ctx: True, force_reprocess=True
    )
    result = Pipeline(Enrich).run({"xs": [1, 2, 3]})
    assert runs == [1, 2, 3]
    assert result.stats.skipped == 0


@pytest.mark.parametrize("on_error", ["continue", "stop"])
def test_a_failing_persist_fails_the_batch_and_a_resume_persists_it(
    tmp_path: Path, on_error: str
) -> None:
    persisted: list[list[int]] = []
    down = {"on": True}

    def persist(results: list[Any], ctx: Context) -> None:
        if down["on"] and ctx[BATCH_KEY]["number"] == 2:
            raise OSError("database is down")
        persisted.append(list(results))

    Enrich = make("Enrich", lambda ctx: {"xs": [x + 100 for x in ctx["xs"]]})
    Enrich.triggers_batching(chunk_size=2, over="xs", persist_batch=persist)
    store = SQLiteStateStore(tmp_path / "s.db")
    pipeline = Pipeline(Enrich, store=store, run_id="nov", on_error=on_error)
    if on_error == "stop":
        with pytest.raises(PipelineBatchError, match="OSError: database is down") as caught:
            pipeline.run({"xs": [1, 2, 3, 4, 5, 6]})
        assert isinstance(caught.value.__cause__, OSError)
        assert "Enrich.persist_batch" in str(caught.value)
        assert caught.value.result is not None
        assert not caught.value.result.ok
    else:
        result = pipeline.run({"xs": [1, 2, 3, 4, 5, 6]})
        assert not result.ok
        assert result.failures[0].agent == "Enrich.persist_batch"
        assert result.context["xs"] == [101, 102, 105, 106]
    assert [103, 104] not in persisted
    down["on"] = False
    result = Pipeline(Enrich, store=store, run_id="nov").run({"xs": [1, 2, 3, 4, 5, 6]})
    assert result.ok
    assert result.context["xs"] == [101, 102, 103, 104, 105, 106]
    assert persisted.count([103, 104]) == 1


# -- failures, stops, conflicts, branches -----------------------------------------------


def failing_scope() -> tuple[type[Agent], type[Agent]]:
    Enrich = make("Enrich", lambda ctx: {"xs": ctx["xs"]})
    Enrich.triggers_batching(chunk_size=2, over="xs")

    def score(ctx: Context) -> dict[str, Any]:
        if ctx[BATCH_KEY]["number"] == 2:
            raise ValueError("score model rejected the batch")
        return {}

    return Enrich, make("Score", score).ends_batching()


def test_stop_names_scope_and_agent_and_keeps_the_original_error() -> None:
    Enrich, Score = failing_scope()
    with pytest.raises(PipelineBatchError) as caught:
        Pipeline(Enrich >> Score, on_error="stop").run({"xs": [1, 2, 3, 4, 5]})
    error = caught.value
    message = str(error)
    assert "batch 2 of scope `Enrich` failed in agent `Score`" in message
    assert "ValueError: score model rejected the batch" in message
    assert "resume" not in message  # no store: nothing to resume
    assert "/scope-" not in message
    assert isinstance(error.__cause__, ValueError)
    assert str(error.__cause__) == "score model rejected the batch"
    assert error.result is not None
    assert error.result.context["xs"] == [1, 2]


def test_stop_with_a_store_says_how_to_resume(tmp_path: Path) -> None:
    Enrich, Score = failing_scope()
    store = SQLiteStateStore(tmp_path / "s.db")
    with pytest.raises(PipelineBatchError) as caught:
        Pipeline(Enrich >> Score, on_error="stop", store=store, run_id="nov").run(
            {"xs": [1, 2, 3, 4, 5]}
        )
    message = str(caught.value)
    assert "pipeline run 'nov' stopped" in message
    assert "same store and run_id='nov': it resumes" in message
    assert "nov/scope" not in message


def test_a_counter_overwritten_across_batches_warns_even_nested() -> None:
    def tally(ctx: Context) -> dict[str, Any]:
        return {"total": len(ctx["xs"]), "tier_counts": {"A": len(ctx["xs"]), "seen": True}}

    Tally = make("Tally", tally).triggers_batching(chunk_size=2, over="xs")
    with pytest.warns(PipelineWarning) as caught:
        result = Pipeline(Tally).run({"xs": [1, 2, 3]})
    messages = [str(w.message) for w in caught if issubclass(w.category, PipelineWarning)]
    assert any("field 'total'" in m and "after the scope" in m for m in messages)
    assert any("field 'tier_counts.A'" in m for m in messages)
    assert not any("tier_counts.seen" in m for m in messages)  # equal values: no warning
    assert len(messages) == 2  # once per field, not once per batch
    assert result.context["tier_counts"] == {"A": 1, "seen": True}


def test_a_scope_inside_a_parallel_branch_keeps_what_it_produced() -> None:
    Enrich = make("Enrich", lambda ctx: {"xs": [x * 10 for x in ctx["xs"]], "n": [1]})
    Enrich.triggers_batching(chunk_size=2, over="xs")
    Enrich.ends_batching()
    Other = make("Other", lambda ctx: {"other": len(ctx["xs"])})
    result = Pipeline(Enrich | Other).run({"xs": [1, 2, 3]})
    assert result.context["xs"] == [10, 20, 30]
    assert result.context["n"] == [1, 1]
    assert result.context["other"] == 3
    assert result.stats.batches == 2


def test_a_failing_scope_in_a_branch_is_a_recorded_failure() -> None:
    def boom(ctx: Context) -> dict[str, Any]:
        if ctx[BATCH_KEY]["number"] == 1:
            raise KeyError("missing")
        return {"xs": ctx["xs"]}

    Enrich = make("Enrich", boom).triggers_batching(chunk_size=2, over="xs")
    result = Pipeline(Enrich | make("Other", lambda ctx: {"other": 1})).run({"xs": [1, 2, 3]})
    assert not result.ok
    assert result.failures[0].scope == "Enrich"
    assert result.context["xs"] == [3]
    assert result.context["other"] == 1


def test_memory_store_resumes_in_the_same_process() -> None:
    runs: list[int] = []

    def enrich(ctx: Context) -> dict[str, Any]:
        runs.extend(ctx["xs"])
        return {"xs": [x + 1 for x in ctx["xs"]]}

    Enrich = make("Enrich", enrich).triggers_batching(chunk_size=2, over="xs")
    store = MemoryStateStore()
    Pipeline(Enrich, store=store, run_id="m").run({"xs": [1, 2, 3]})
    again = Pipeline(Enrich, store=store, run_id="m").run({"xs": [3, 4, 1]})
    assert again.context["xs"] == [4, 5, 2]
    assert runs == [1, 2, 3, 4]


def test_a_filtering_trigger_with_loaded_results_keeps_item_order_by_key() -> None:
    cache = {1: {"id": 1, "v": "cached"}, 4: {"id": 4, "v": "cached"}}
    persisted: list[list[int]] = []

    def keep_even(ctx: Context) -> dict[str, Any]:
        return {"xs": [{**x, "v": "new"} for x in ctx["xs"] if x["id"] % 2 == 0]}

    Filter = make("Filter", keep_even).triggers_batching(
        chunk_size=3,
        over="xs",
        key="id",
        skip_if=lambda item, ctx: item["id"] in cache,
        load_existing=lambda item, ctx: cache[item["id"]],
        persist_batch=lambda results, ctx: persisted.append(ids(results)),
    )
    Count = make("Count", lambda ctx: {"sizes": [len(ctx["xs"])]}).ends_batching()
    result = Pipeline(Filter >> Count).run({"xs": [{"id": i} for i in range(6)]})
    assert [(x["id"], x["v"]) for x in result.context["xs"]] == [
        (0, "new"),
        (1, "cached"),
        (2, "new"),
        (4, "cached"),
    ]
    assert result.context["sizes"] == [3, 1]  # Count saw the loaded results too
    assert persisted[0] == [0, 2]

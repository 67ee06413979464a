"""The RAAF batching design with Python names: scopes, manager, introspection, validation."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from batchline.pipeline import (
    Agent,
    BatchingConfig,
    BatchingConfigurationError,
    BatchingScope,
    BatchingScopeManager,
    BatchProgressContext,
    Pipeline,
    PipelineWarning,
    StepError,
    triggers_batching,
)


def agent(name: str) -> type[Agent]:
    def run(self: Agent, context: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    return type(name, (Agent,), {"run": run})


# -- BatchingScope -----------------------------------------------------------------------


def test_a_detected_scope_has_the_designs_attributes() -> None:
    T = agent("T").triggers_batching(chunk_size=100, over="companies")
    M, E, After = agent("M"), agent("E").ends_batching(), agent("After")
    (scope,) = BatchingScopeManager().detect_scopes(agent("Before") >> T >> M >> E >> After)
    assert scope.trigger_agent is T
    assert scope.scope_agents == [M, E]
    assert scope.scope_agents == (M, E)
    assert scope.terminator_agent is E
    assert (scope.chunk_size, scope.field) == (100, "companies")
    assert scope.valid()
    assert scope.is_valid
    assert scope.includes_agent(T)
    assert scope.includes_agent(M)
    assert scope.includes_agent(E)
    assert not scope.includes_agent(After)
    assert scope.to_dict() == {
        "trigger_agent": "T",
        "scope_agents": ["M", "E"],
        "terminator_agent": "E",
        "chunk_size": 100,
        "field": "companies",
    }
    json.dumps(scope.to_dict())


def test_instances_and_functions_are_reported_as_written() -> None:
    class Tagger(Agent):
        def __init__(self, tag: str) -> None:
            self.tag = tag

        def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
            return {}

    Tagger.triggers_batching(chunk_size=2, over="xs", runs_to_end=True)
    tagger = Tagger("a")

    def count(context: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    (scope,) = BatchingScopeManager().detect_scopes(tagger >> count)
    assert scope.trigger_agent is tagger
    assert scope.scope_agents == [count]
    assert scope.terminator_agent is None
    assert scope.includes_agent(tagger)
    assert scope.includes_agent(Tagger)
    assert scope.includes_agent(count)
    assert scope.to_dict()["scope_agents"] == ["count"]


@pytest.mark.parametrize(
    ("trigger", "size", "valid"),
    [("T", 100, True), (None, 100, False), ("T", None, False), ("T", 0, False), ("T", -10, False)],
)
def test_valid_needs_a_trigger_and_a_positive_chunk_size(
    trigger: str | None, size: int | None, valid: bool
) -> None:
    scope = BatchingScope(
        trigger_agent=agent(trigger) if trigger else None, scope_agents=None, chunk_size=size
    )
    assert scope.valid() is valid
    assert scope.is_valid is valid
    assert scope.scope_agents == []
    assert scope.field is None


def test_manager_validates_scopes_and_flattens_flows() -> None:
    T, M, N = agent("T").triggers_batching(chunk_size=5, over="xs"), agent("M"), agent("N")
    E = agent("E").ends_batching()
    manager = BatchingScopeManager()
    flow = T >> (M | N) >> E
    assert manager.flatten_flow_chain(flow) == [T, M, N, E]
    assert manager.flatten_flow_chain([T, [M, N]]) == [T, M, N]
    scopes = manager.detect_scopes(flow)
    assert manager.validate_scopes(scopes) == scopes
    assert scopes[0].scope_agents == [M, N, E]
    broken = BatchingScope(trigger_agent=None, scope_agents=[M], chunk_size=5)
    with pytest.raises(BatchingConfigurationError, match="invalid batching scope"):
        manager.validate_scopes([*scopes, broken])
    with pytest.raises(BatchingConfigurationError, match="no agent after it ends"):
        manager.validate_scopes([T, M])  # a flow (as a list) is detected, then checked


# -- declarations --------------------------------------------------------------------------


def test_introspection_and_to_dict() -> None:
    def skip(item: Any, context: Any) -> bool:
        return False

    Enrich = agent("Enrich").triggers_batching(
        chunk_size=50, over="companies", key="id", skip_if=skip
    )
    Score = agent("Score").ends_batching()
    assert Enrich.batching_trigger()
    assert not Enrich.batching_terminator()
    assert Score.batching_terminator()
    assert not Score.batching_trigger()
    assert Enrich().batching_config is Enrich.batching_config
    described = Enrich.batching_config.to_dict()
    assert described["chunk_size"] == 50
    assert described["over"] == "companies"
    assert described["key"] == "id"
    assert described["skip_if"].endswith("skip")
    assert described["hooks"] == {
        "on_batch_start": [],
        "on_batch_complete": [],
        "on_batch_error": [],
    }
    json.dumps(described)
    plain = dataclasses.asdict(BatchingConfig())  # raised before: a mapping proxy inside
    assert plain["trigger"] is False
    assert dataclasses.asdict(Enrich.batching_config)["chunk_size"] == 50


def test_declaring_a_trigger_twice_needs_override() -> None:
    Enrich = agent("Enrich").triggers_batching(chunk_size=100, over="xs")
    Enrich.triggers_batching(chunk_size=100, over="xs")  # the same again: harmless
    with pytest.raises(BatchingConfigurationError, match="override=True") as caught:
        Enrich.triggers_batching(chunk_size=200, over="xs")
    assert "`Enrich` already triggers batching (chunk_size=100" in str(caught.value)
    assert Enrich.batching_config.chunk_size == 100
    Enrich.triggers_batching(chunk_size=200, over="xs", override=True)
    assert Enrich.batching_config.chunk_size == 200


def test_subclasses_do_not_inherit_batching_declarations() -> None:
    @triggers_batching(chunk_size=10, over="xs")
    class Parent(Agent):
        pass

    class Child(Parent):
        pass

    assert Parent.batching_trigger()
    assert not Child.batching_trigger()
    assert Child.batching_config == BatchingConfig()
    Child.triggers_batching(chunk_size=3, over="ys")  # its own first declaration
    assert Parent.batching_config.chunk_size == 10


def test_a_config_assigned_in_the_class_body_is_that_class_s() -> None:
    class Enrich(Agent):
        batching_config = BatchingConfig(trigger=True, chunk_size=3, over="xs")

    class Child(Enrich):
        pass

    assert Enrich.batching_trigger()
    assert Enrich().batching_config.chunk_size == 3
    assert not Child.batching_trigger()
    assert not Child().batching_config.trigger


def test_concurrent_declarations_are_thread_safe() -> None:
    Enrich = agent("Enrich").triggers_batching(chunk_size=2, over="xs")
    errors: list[BaseException] = []

    def declare(size: int) -> None:
        try:
            Enrich.triggers_batching(chunk_size=size, over="xs", override=True)
            Enrich.on_batch_start(lambda progress: None)
        except BaseException as exc:  # pragma: no cover - a failure shows below
            errors.append(exc)

    threads = [threading.Thread(target=declare, args=(n,)) for n in range(1, 101)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(Enrich.batching_config.hooks["on_batch_start"]) == 100
    assert Enrich.batching_config.chunk_size in range(1, 101)


def test_hook_arity_is_checked_when_the_hook_is_declared() -> None:
    Enrich = agent("Enrich").triggers_batching(chunk_size=2, over="xs")

    def all_results(results: Any) -> None:  # RAAF's one-argument form: never called so
        pass

    with pytest.raises(BatchingConfigurationError, match=r"on_batch_complete\(progress, results\)"):
        Enrich.on_batch_complete(all_results)
    with pytest.raises(BatchingConfigurationError, match="def all_results"):
        Enrich.on_batch_complete(all_results)
    with pytest.raises(BatchingConfigurationError, match=r"on_batch_start\(progress\)"):
        Enrich.on_batch_start(lambda number, total, context: None)
    with pytest.raises(BatchingConfigurationError, match="skip_if"):
        agent("X").triggers_batching(chunk_size=2, skip_if=lambda item: True)
    Enrich.on_batch_complete(lambda progress, results: None)
    Enrich.on_batch_complete(lambda *args: None)
    Enrich.on_batch_error(lambda progress, error, extra=None, **_: None)
    Enrich.on_batch_start(print)  # a builtin without a signature is trusted
    assert len(Enrich.batching_config.hooks["on_batch_complete"]) == 2


def test_load_existing_without_skip_if_is_an_error() -> None:
    with pytest.raises(BatchingConfigurationError, match="without `skip_if`") as caught:
        agent("Enrich").triggers_batching(
            chunk_size=2, over="xs", load_existing=lambda item, ctx: item
        )
    assert "`Enrich`" in str(caught.value)
    with pytest.raises(BatchingConfigurationError, match="skip_if"):
        triggers_batching(chunk_size=2, load_existing=lambda item, ctx: item)

    class Loader(Agent):  # a config made by hand is checked when the pipeline is built
        batching_config = BatchingConfig(
            trigger=True, chunk_size=2, over="xs", load_existing=lambda item, ctx: item
        )

    with pytest.raises(BatchingConfigurationError, match="without `skip_if`"):
        Pipeline(Loader)


def test_the_decorator_form_names_the_class_in_its_errors() -> None:
    with pytest.raises(BatchingConfigurationError, match="class `Enrich`") as caught:

        @triggers_batching(chunk_size=0, over="companies")
        class Enrich(Agent):
            pass

    assert "chunk_size" in str(caught.value)

    @triggers_batching(chunk_size=5, over="companies")
    class Score(Agent):
        pass

    with pytest.raises(BatchingConfigurationError, match="`Score` already triggers"):
        triggers_batching(chunk_size=6, over="companies")(Score)


def test_hooks_on_an_agent_that_triggers_nothing_warn_at_build() -> None:
    T = agent("T").triggers_batching(chunk_size=2, over="xs")
    E = agent("E").ends_batching()
    E.on_batch_complete(lambda progress, results: None)
    with pytest.warns(PipelineWarning, match="hooks run only on a scope's trigger"):
        Pipeline(T >> E)


# -- scope placement -----------------------------------------------------------------------


def test_a_trigger_without_terminator_is_a_build_error_naming_it_and_the_fix() -> None:
    Enrich = agent("Enrich").triggers_batching(chunk_size=50, over="companies")
    Score, Report = agent("Score"), agent("Report")
    with pytest.raises(BatchingConfigurationError) as caught:
        Pipeline(agent("Discover") >> Enrich >> Score >> Report)
    message = str(caught.value)
    assert "`Enrich` triggers batching but no agent after it ends the scope" in message
    assert "`Score`, `Report` would also run once per batch" in message
    assert "Score.ends_batching()" in message
    assert "runs_to_end=True" in message


def test_runs_to_end_is_the_explicit_opt_in() -> None:
    seen: list[int] = []
    Enrich = agent("Enrich").triggers_batching(chunk_size=2, over="xs", runs_to_end=True)
    Count = type("Count", (Agent,), {"run": lambda self, ctx: seen.append(len(ctx["xs"]))})
    Pipeline(Enrich >> Count).run({"xs": [1, 2, 3]})
    assert seen == [2, 1]


def test_a_trigger_at_the_end_of_its_flow_needs_no_terminator() -> None:
    Enrich = agent("Enrich").triggers_batching(chunk_size=2, over="xs")
    assert Pipeline(agent("Discover") >> Enrich).scopes[0].terminator_agent is None


def test_nested_triggers_stay_an_error() -> None:
    T1 = agent("T1").triggers_batching(chunk_size=2, over="xs")
    T2 = agent("T2").triggers_batching(chunk_size=2, over="xs")
    with pytest.raises(BatchingConfigurationError, match="scopes cannot nest") as caught:
        Pipeline(T1 >> T2 >> agent("E").ends_batching())
    assert "`T2`" in str(caught.value)
    assert "`T1`" in str(caught.value)


def test_a_none_list_says_who_set_it_and_what_to_do() -> None:
    Discover = type("Discover", (Agent,), {"run": lambda self, ctx: {"companies": None}})
    Enrich = agent("Enrich").triggers_batching(chunk_size=2, over="companies")
    with pytest.raises(StepError) as caught:
        Pipeline(Discover >> Enrich).run()
    message = str(caught.value)
    assert "`companies` is None, not a list" in message
    assert "agent `Discover`" in message
    assert "empty list []" in message
    with pytest.raises(StepError, match="the initial context set it to None"):
        Pipeline(Enrich).run({"companies": None})


# -- the progress object -----------------------------------------------------------------


def progress(**changes: Any) -> BatchProgressContext:
    fields: dict[str, Any] = {
        "batch_number": 3,
        "total_batches": 10,
        "batch_size": 2,
        "items": [{"id": 1, "tags": ["a"]}, {"id": 2, "tags": []}],
        "completed_items": 6,
        "total_items": 20,
        "percentage": 30.0,
        "is_first": False,
        "is_last": False,
        "scope": "Enrich",
    }
    fields.update(changes)
    return BatchProgressContext(**fields)


def test_progress_is_read_only_all_the_way_down() -> None:
    source = [{"id": 1, "tags": ["a"]}]
    p = progress(items=source, batch_size=1)
    with pytest.raises(AttributeError):
        p.batch_number = 4  # type: ignore[misc]
    with pytest.raises(AttributeError):
        p.items.append({"id": 3})  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        p.items[0]["id"] = 99
    with pytest.raises(TypeError):
        p.items[0]["tags"][0] = "b"
    with pytest.raises(TypeError):
        p.items[0].update(id=5)
    source[0]["id"] = 7  # the caller's list is not the hook's
    assert p.items[0]["id"] == 1
    assert json.loads(json.dumps(p.items)) == [{"id": 1, "tags": ["a"]}]


def test_progress_to_dict_and_str() -> None:
    p = progress()
    assert p.to_dict()["batch_number"] == 3
    assert p.to_dict()["percentage"] == 30.0
    assert "items" not in p.to_dict()
    json.dumps(p.to_dict())
    assert str(p) == "scope `Enrich` batch 3/10: 2 items, 6/20 done (30.0%)"

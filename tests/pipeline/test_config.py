"""Batching declarations on agents: decorators, class methods, hooks, inheritance."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import FrozenInstanceError
from typing import Any

import pytest

from batchline.pipeline import (
    Agent,
    BatchingConfigurationError,
    ends_batching,
    triggers_batching,
)


def make_agent(name: str = "Worker") -> type[Agent]:
    def run(self: Agent, context: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    return type(name, (Agent,), {"run": run})


def test_decorators_and_class_methods_declare_the_same_config() -> None:
    @triggers_batching(chunk_size=50, over="companies")
    class Enrich(Agent):
        pass

    @ends_batching
    class Score(Agent):
        pass

    Other = make_agent().triggers_batching(chunk_size=50, over="companies")
    Done = make_agent().ends_batching()
    for trigger in (Enrich, Other):
        assert trigger.is_batching_trigger()
        assert not trigger.is_batching_terminator()
        assert trigger.batching_config.chunk_size == 50
        assert trigger.batching_config.over == "companies"
    for terminator in (Score, Done):
        assert terminator.is_batching_terminator()
        assert not terminator.is_batching_trigger()
    with pytest.raises(FrozenInstanceError):
        Enrich.batching_config.chunk_size = 5  # type: ignore[misc]


def test_ends_batching_with_parentheses() -> None:
    @ends_batching()
    class Score(Agent):
        pass

    assert Score.is_batching_terminator()


@pytest.mark.parametrize("bad", [0, -1, 2.5, "10", None, True])
def test_invalid_chunk_size_fails_at_declaration(bad: Any) -> None:
    with pytest.raises(BatchingConfigurationError, match="chunk_size") as caught:
        triggers_batching(chunk_size=bad)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(BatchingConfigurationError, match="positive integer"):
        make_agent().triggers_batching(chunk_size=bad)


@pytest.mark.parametrize("bad", ["", "  ", 5, ["x"]])
def test_invalid_over_fails_at_declaration(bad: Any) -> None:
    with pytest.raises(BatchingConfigurationError, match="`over`"):
        make_agent().triggers_batching(chunk_size=5, over=bad)


def test_hooks_register_as_decorators_and_are_kept_in_the_frozen_config() -> None:
    Enrich = make_agent().triggers_batching(chunk_size=2, over="xs")

    @Enrich.on_batch_start
    def started(progress: Any) -> None:
        pass

    @Enrich.on_batch_complete
    def completed(progress: Any, results: Any) -> None:
        pass

    Enrich.on_batch_error(print)
    hooks = Enrich.batching_config.hooks
    assert hooks["on_batch_start"] == (started,)
    assert hooks["on_batch_complete"] == (completed,)
    assert hooks["on_batch_error"] == (print,)
    assert callable(started)  # the decorator returns the function
    with pytest.raises(TypeError):
        hooks["on_batch_start"] = ()  # type: ignore[index]
    with pytest.raises(BatchingConfigurationError, match="expected a callable"):
        Enrich.on_batch_start(5)  # type: ignore[arg-type]


def test_configuration_is_not_inherited_and_subclass_changes_stay_local() -> None:
    # Issue #13: as in RAAF, a subclass does not inherit its parent's batching declaration
    # (this test asserted inheritance before; the rest of it is unchanged).
    Parent = make_agent("Parent").triggers_batching(chunk_size=10, over="xs")
    Child = type("Child", (Parent,), {})
    assert not Child.is_batching_trigger()
    assert not Child.batching_trigger()
    assert Child.batching_config.chunk_size is None
    assert Child().batching_config.chunk_size is None
    Child.triggers_batching(chunk_size=3, over="ys")
    assert Child.batching_config.chunk_size == 3
    assert Parent.batching_config.chunk_size == 10
    Child.on_batch_start(print)
    assert Parent.batching_config.hooks["on_batch_start"] == ()


def test_concurrent_hook_registration_loses_nothing() -> None:
    Agent_ = make_agent().triggers_batching(chunk_size=2, over="xs")
    hooks = [lambda p, i=i: i for i in range(200)]
    threads = [threading.Thread(target=Agent_.on_batch_start, args=(h,)) for h in hooks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(Agent_.batching_config.hooks["on_batch_start"]) == 200


def test_skip_and_persist_options_are_validated() -> None:
    with pytest.raises(BatchingConfigurationError, match="skip_if"):
        make_agent().triggers_batching(chunk_size=2, over="xs", skip_if=3)  # type: ignore[arg-type]
    Configured = make_agent().triggers_batching(
        chunk_size=2, over="xs", skip_if=lambda i, c: False, persist_batch=lambda r, c: None
    )
    assert Configured.batching_config.skip_if is not None
    assert Configured.batching_config.persist_batch is not None
    assert Configured.batching_config.load_existing is None

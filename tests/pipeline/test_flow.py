"""The flow algebra: >> and | build immutable, flattened nodes; functions join in."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchline import ConfigurationError
from batchline.pipeline import Agent, Parallel, Pipeline, Sequence, Step


class A(Agent):
    def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
        return {"a": 1}


class B(Agent):
    def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
        return {"b": context["a"] + 1}


class C(Agent):
    def run(self, context: Mapping[str, Any]) -> dict[str, Any]:
        return {"c": 3}


def plain(context: Mapping[str, Any]) -> dict[str, Any]:
    return {"plain": True}


def test_sequences_flatten_and_keep_order() -> None:
    flow = A >> B >> C
    assert isinstance(flow, Sequence)
    assert [step.name for step in flow.steps] == ["A", "B", "C"]  # type: ignore[attr-defined]
    assert repr(flow) == "A >> B >> C"
    nested = (A >> B) >> (C >> A)
    assert [s.name for s in nested.steps] == ["A", "B", "C", "A"]  # type: ignore[attr-defined]


def test_parallel_flattens_and_reprs() -> None:
    group = A | B | C
    assert isinstance(group, Parallel)
    assert len(group.branches) == 3
    flow = A >> (B | C) >> plain
    assert repr(flow) == "A >> (B | C) >> plain"


def test_operators_never_modify_operands() -> None:
    left = A >> B
    before = left.steps  # type: ignore[attr-defined]
    combined = left >> C
    assert left.steps is before  # type: ignore[attr-defined]
    assert len(left.steps) == 2  # type: ignore[attr-defined]
    assert len(combined.steps) == 3  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        left.steps = ()  # type: ignore[misc]


def test_functions_on_either_side_and_instances() -> None:
    flow = plain >> A >> B
    assert [s.name for s in flow.steps] == ["plain", "A", "B"]  # type: ignore[attr-defined]
    flow2 = A() >> plain
    assert [s.name for s in flow2.steps] == ["A", "plain"]  # type: ignore[attr-defined]
    result = Pipeline(plain >> A >> B).run()
    assert result.context == {"plain": True, "a": 1, "b": 2}


def test_bad_things_in_a_flow() -> None:
    with pytest.raises(ConfigurationError, match="cannot put 5"):
        A >> 5  # type: ignore[operator]

    class NeedsArgs(Agent):
        def __init__(self, model: str) -> None:
            self.model = model

    with pytest.raises(ConfigurationError, match="cannot be created without arguments"):
        A >> NeedsArgs


@given(st.lists(st.sampled_from([A, B, C]), min_size=2, max_size=8))
def test_any_chain_flattens_to_its_length(agents: list[type[Agent]]) -> None:
    flow: Any = agents[0]
    for agent in agents[1:]:
        flow = flow >> agent
    assert isinstance(flow, Sequence)
    assert [step.name for step in flow.steps] == [a.__name__ for a in agents]
    assert all(isinstance(step, Step) for step in flow.steps)

"""Scopes are found and misplacements are reported when the Pipeline is built."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from batchline.pipeline import (
    Agent,
    BatchingConfigurationError,
    BatchingScopeManager,
    Pipeline,
)


def agent(name: str) -> type[Agent]:
    def run(self: Agent, context: Mapping[str, Any]) -> dict[str, Any]:
        return {}

    return type(name, (Agent,), {"run": run})


def trigger(name: str = "T", chunk: int = 2, over: str | None = "xs") -> type[Agent]:
    return agent(name).triggers_batching(chunk_size=chunk, over=over)


def terminator(name: str = "E") -> type[Agent]:
    return agent(name).ends_batching()


def test_scope_from_trigger_to_terminator_inclusive() -> None:
    T, M, E, After = trigger(), agent("M"), terminator(), agent("After")
    scopes = BatchingScopeManager().validate_scopes(agent("Before") >> T >> M >> E >> After)
    assert len(scopes) == 1
    scope = scopes[0]
    assert [s.name for s in scope.steps] == ["T", "M", "E"]  # type: ignore[attr-defined]
    assert scope.trigger.name == "T"
    assert scope.terminator is not None
    assert scope.terminator.name == "E"
    assert (scope.chunk_size, scope.over) == (2, "xs")


def test_scope_without_terminator_runs_to_the_end() -> None:
    scopes = BatchingScopeManager().detect_scopes(trigger() >> agent("M") >> agent("Z"))
    assert [s.name for s in scopes[0].steps] == ["T", "M", "Z"]  # type: ignore[attr-defined]
    assert scopes[0].terminator is None


def test_two_scopes_one_after_another() -> None:
    flow = trigger("T1") >> terminator("E1") >> agent("M") >> trigger("T2") >> terminator("E2")
    assert [s.name for s in BatchingScopeManager().validate_scopes(flow)] == ["T1", "T2"]


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: trigger("T1") >> trigger("T2") >> terminator(), "cannot nest"),
        (lambda: agent("A") >> terminator("E"), "no scope is open"),
        (lambda: (trigger("T") >> agent("M")) | agent("B") >> terminator("E"), "no scope"),
        (
            lambda: agent("A") >> ((trigger("T") >> agent("M")) | agent("B")) >> terminator("E"),
            "starts inside the parallel group",
        ),
        (lambda: trigger("T") >> (agent("A") | terminator("E")), "inside a parallel group"),
    ],
)
def test_misplaced_scopes_are_reported_when_the_pipeline_is_built(build: Any, needle: str) -> None:
    flow = build()
    with pytest.raises(BatchingConfigurationError, match=needle) as caught:
        Pipeline(flow)
    assert isinstance(caught.value, ValueError)
    with pytest.raises(BatchingConfigurationError):
        BatchingScopeManager().validate_scopes(flow)


def test_every_problem_is_listed_at_once() -> None:
    flow = agent("A") >> terminator("E1") >> trigger("T1") >> trigger("T2")
    with pytest.raises(BatchingConfigurationError, match="2 batching problems") as caught:
        Pipeline(flow)
    assert "E1" in str(caught.value)
    assert "T2" in str(caught.value)


def test_scope_inside_a_branch_is_fine() -> None:
    flow = agent("A") >> ((trigger("T") >> terminator("E")) | agent("B")) >> agent("Z")
    assert [s.name for s in BatchingScopeManager().validate_scopes(flow)] == ["T"]

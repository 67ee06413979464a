"""The flow algebra: immutable nodes built with ``>>`` (sequence) and ``|`` (parallel).

``a >> b >> c`` is one ``Sequence`` of three steps and ``a | b | c`` one ``Parallel``
of three branches: chains flatten, operands are never modified, and plain functions
``def step(context) -> dict`` work on either side.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from batchline.errors import ConfigurationError
from batchline.pipeline.agent import Agent
from batchline.pipeline.config import BatchingConfig

_DEFAULT_CONFIG = BatchingConfig()


class Node:
    """A part of a flow. Combine nodes with ``>>`` and ``|``."""

    __slots__ = ()

    def __rshift__(self, other: object) -> Node:
        return Sequence.of(self, to_node(other))

    def __rrshift__(self, other: object) -> Node:
        return Sequence.of(to_node(other), self)

    def __or__(self, other: object) -> Node:
        return Parallel.of(self, to_node(other))

    def __ror__(self, other: object) -> Node:
        return Parallel.of(to_node(other), self)


class FunctionAgent(Agent):
    """A plain function ``fn(context) -> dict`` standing in a flow."""

    def __init__(self, func: Callable[[Mapping[str, Any]], Any]) -> None:
        self.func = func
        self._name = getattr(func, "__name__", type(func).__name__)

    @property
    def name(self) -> str:
        """The function's name."""
        return self._name

    def run(self, context: Mapping[str, Any]) -> Any:
        """Call the function."""
        return self.func(context)


@dataclass(frozen=True, eq=False, slots=True)
class Step(Node):
    """One agent in a flow.

    Attributes:
        agent: the agent instance that runs.
        source: what was written in the flow: the agent class, the instance, or the
            plain function (what ``BatchingScope`` reports as its agents).
    """

    agent: Agent
    source: Any = field(default=None, compare=False)
    name: str = field(init=False, repr=False)
    requires: tuple[str, ...] = field(init=False, repr=False)
    provides: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.source is None:
            object.__setattr__(self, "source", self.agent)
        object.__setattr__(self, "name", self.agent.name)
        object.__setattr__(self, "requires", tuple(getattr(self.agent, "requires", ())))
        object.__setattr__(self, "provides", tuple(getattr(self.agent, "provides", ())))

    @property
    def config(self) -> BatchingConfig:
        """The agent's batching configuration (its class's, unless the instance has one)."""
        return getattr(self.agent, "batching_config", _DEFAULT_CONFIG)

    @property
    def is_async(self) -> bool:
        """Whether the agent's ``run`` is a coroutine function."""
        return inspect.iscoroutinefunction(self.agent.run) or (
            isinstance(self.agent, FunctionAgent) and inspect.iscoroutinefunction(self.agent.func)
        )

    def __repr__(self) -> str:
        return self.name


@dataclass(frozen=True, eq=False, slots=True)
class Sequence(Node):
    """Nodes run one after another on one context."""

    steps: tuple[Node, ...]

    @classmethod
    def of(cls, *nodes: Node) -> Sequence:
        """A flattened sequence of ``nodes``."""
        flat: list[Node] = []
        for node in nodes:
            flat.extend(node.steps if isinstance(node, Sequence) else (node,))
        return cls(tuple(flat))

    def __repr__(self) -> str:
        return " >> ".join(
            f"({step!r})" if isinstance(step, Parallel) else repr(step) for step in self.steps
        )


@dataclass(frozen=True, eq=False, slots=True)
class Parallel(Node):
    """Branches run concurrently, each on a copy of the context; outputs are merged."""

    branches: tuple[Node, ...]

    @classmethod
    def of(cls, *nodes: Node) -> Parallel:
        """A flattened parallel group of ``nodes``."""
        flat: list[Node] = []
        for node in nodes:
            flat.extend(node.branches if isinstance(node, Parallel) else (node,))
        return cls(tuple(flat))

    def __repr__(self) -> str:
        return " | ".join(f"({b!r})" if isinstance(b, Sequence) else repr(b) for b in self.branches)


@dataclass(frozen=True, eq=False, slots=True)
class Chunked(Node):
    """One agent run over a list field in chunks (``Agent.in_chunks_of``)."""

    step: Step
    chunk_size: int
    input_field: str
    output_field: str

    @property
    def name(self) -> str:
        """The wrapped agent's name."""
        return self.step.name

    def __repr__(self) -> str:
        return f"{self.step!r}.in_chunks_of({self.chunk_size})"


def to_node(value: object) -> Node:
    """A flow node from a node, an agent class or instance, or a plain function."""
    if isinstance(value, Node):
        return value
    if isinstance(value, type) and issubclass(value, Agent):
        try:
            return Step(value(), value)
        except TypeError as exc:
            raise ConfigurationError(
                f"agent class {value.__name__} cannot be created without arguments ({exc}); "
                f"put an instance in the flow instead, e.g. {value.__name__}(...)."
            ) from exc
    if isinstance(value, Agent):
        return Step(value, value)
    if callable(value):
        return Step(FunctionAgent(value), value)
    raise ConfigurationError(
        f"cannot put {value!r} ({type(value).__name__}) in a flow; expected an Agent class or "
        "instance, a function context -> dict, or a flow built with >> and |."
    )


def iter_steps(node: Node) -> list[Step]:
    """Every step of a flow, depth first."""
    if isinstance(node, Step):
        return [node]
    if isinstance(node, Chunked):
        return [node.step]
    children = node.steps if isinstance(node, Sequence) else node.branches  # type: ignore[attr-defined]
    return [step for child in children for step in iter_steps(child)]
